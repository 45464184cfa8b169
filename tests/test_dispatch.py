"""ISA dispatch, QENGINE_ISA and the thread settings."""
import os
import subprocess
import sys

import pytest

import qengine
from qengine import _kernels
from qengine.errors import ISAError


def test_cpu_info_reports_paths():
    info = qengine.cpu_info()
    assert "ref" in info["available_isas"]
    assert info["isa"] in info["available_isas"]
    assert info["best_isa"] == info["available_isas"][-1]
    if info["features"]["avx512vnni"] and info["features"]["avx512bw"]:
        assert "avx512vnni" in info["available_isas"]


def test_unknown_isa_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown ISA"):
        _kernels.set_isa("sse9")


def test_unavailable_isa_is_a_clear_error():
    missing = [n for n in _kernels.ISA_NAMES if n not in _kernels.available_isas()]
    if not missing:
        pytest.skip("this CPU has every path")
    with pytest.raises(ISAError, match="not available"):
        _kernels.set_isa(missing[0])


@pytest.mark.parametrize("name", ["ref"] + [n for n in ("avx2", "avx512vnni") if n in _kernels.available_isas()])
def test_environment_forces_a_path(name):
    env = dict(os.environ, QENGINE_ISA=name)
    out = subprocess.run([sys.executable, "-c", "import qengine; print(qengine.cpu_info()['isa'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == name


def test_environment_rejects_a_missing_path():
    missing = [n for n in _kernels.ISA_NAMES if n not in _kernels.available_isas()]
    if not missing:
        pytest.skip("this CPU has every path")
    env = dict(os.environ, QENGINE_ISA=missing[0])
    out = subprocess.run([sys.executable, "-c", "import qengine"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "QENGINE_ISA" in out.stderr and "Segmentation" not in out.stderr


def test_num_threads_from_environment():
    env = dict(os.environ, QENGINE_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", "import qengine; print(qengine.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


@pytest.mark.parametrize("bad", [0, -1, 2.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises((ValueError, TypeError)):
        qengine.set_num_threads(bad)
