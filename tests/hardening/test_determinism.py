"""Determinism: every model the tests build (the builders of tests/models.py, the single-op
units of tests/pipeline/test_units.py, the bundled demo model) gives identical int8 codes at
every quantized tensor, and identical outputs, under every kernel path this CPU has and with 1
or 2 threads; selected through set_isa() in process and through QENGINE_ISA /
QENGINE_NUM_THREADS in fresh interpreters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import _kernels as K
from qengine.runtime.executor import Executor

from conftest import ISAS
from models import ALL_BUILDERS, random_input

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))
from test_units import CASES  # noqa: E402


# every quantizable node in int8: no fidelity fallback to float, no float detector heads
FULL_INT8 = dict(progress=False, target_sqnr=None, output_aware=False)


def _demo():
    from qengine.demo import MODEL_PATH, load_demo_data
    data = load_demo_data()
    q = qengine.quantize(str(MODEL_PATH), data["calib"][:32], **FULL_INT8)
    return q, {"input": data["test"][:3]}


def _build(name):
    """(quantized model, feeds) for one model the tests build."""
    if name == "demo_digits":
        q, feeds = _demo()
        return q, {q.input_names[0]: feeds["input"]}
    if name.startswith("unit_"):
        m, _ = CASES[name[5:]]
    else:
        m = ALL_BUILDERS[name]()
    calib = [random_input(m, batch=2, seed=s) for s in range(2)]
    feeds = random_input(m, batch=2, seed=7)
    return qengine.quantize(m.SerializeToString(), calib, **FULL_INT8), feeds


MODELS = sorted(ALL_BUILDERS) + ["demo_digits"] + [f"unit_{n}" for n in sorted(CASES)]
_CACHE: dict = {}


def _model(name):
    if name not in _CACHE:
        _CACHE[name] = _build(name)
    return _CACHE[name]


def _every_code(graph, feeds) -> dict:
    """The model's outputs and every QuantizeLinear output (the int8 codes of every quantized
    tensor), compiled for the active ISA with its own freshly packed weights."""
    g = graph.copy()
    qs = [n.outputs[0] for n in g.nodes if n.op_type == "QuantizeLinear"]
    g.outputs = g.outputs + [g.value(t) for t in qs if t not in g.output_names]
    return Executor(g).run(feeds)


@pytest.mark.parametrize("name", MODELS)
def test_identical_codes_on_every_isa_and_thread_count(name):
    q, feeds = _model(name)
    before_isa, before_threads = K.get_isa(), K.get_num_threads()
    results = {}
    try:
        for isa in ISAS:
            K.set_isa(isa)
            for threads in (1, 2):
                K.set_num_threads(threads)
                results[(isa, threads)] = _every_code(q.graph, feeds)
    finally:
        K.set_isa(before_isa)
        K.set_num_threads(before_threads)
    base_key = ("ref", 1) if ("ref", 1) in results else next(iter(results))
    base = results[base_key]
    assert any(a.dtype in (np.uint8, np.int8) for a in base.values()), "no quantized tensor"
    for key, res in results.items():
        for t, a in base.items():
            np.testing.assert_array_equal(res[t], a, err_msg=f"{name}: {t} under {key} "
                                                             f"differs from {base_key}")


_CHILD = """
import json, sys
import numpy as np
import qengine
m = qengine.load(sys.argv[1])
x = np.load(sys.argv[2])
out = m.run(x, raw=True)
print(json.dumps({"isa": qengine.cpu_info()["isa"], "threads": qengine.get_num_threads(),
                  "sum": int(np.asarray(out, np.int64).sum()), "codes": np.asarray(out).tolist()}))
"""


@pytest.mark.parametrize("name", ["resnet18", "demo_digits"])
def test_identical_codes_under_the_environment_variables(name, tmp_path):
    """What a deployment sets: QENGINE_ISA and QENGINE_NUM_THREADS, read at import by a fresh
    interpreter, for a saved model."""
    q, feeds = _model(name)
    path = tmp_path / "m.onnx"
    q.save(path)
    np.save(tmp_path / "x.npy", next(iter(feeds.values())))
    outs = {}
    for isa in ISAS:
        for threads in (1, 2):
            env = dict(os.environ, QENGINE_ISA=isa, QENGINE_NUM_THREADS=str(threads))
            r = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(tmp_path / "x.npy")],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
            rec = json.loads(r.stdout.strip().splitlines()[-1])
            assert (rec["isa"], rec["threads"]) == (isa, threads)
            outs[(isa, threads)] = rec["codes"]
    first = next(iter(outs.values()))
    assert all(v == first for v in outs.values()), {k: np.sum(v) for k, v in outs.items()}
    np.testing.assert_array_equal(np.asarray(first), q.run(next(iter(feeds.values())), raw=True))


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "demo_digits"])
def test_batch_of_n_equals_n_batches_of_one(name):
    """Plans per input shape differ in tiling and thread split, never in results."""
    q, feeds = _model(name)
    (k, x), = feeds.items()
    full = q.run({k: x}, raw=True)
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(q.run({k: x[i:i + 1]}, raw=True), full[i:i + 1])
