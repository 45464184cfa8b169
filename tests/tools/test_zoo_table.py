"""benchmarks/zoo_table.py end to end on a small model-zoo graph the onnx package ships
(SqueezeNet, IR 3, opset 9: onnxruntime-int8 runs only because the harness prepares such files
for its quantizer): one row with every engine's time and both ratios."""
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "zoo_table.py"


def test_squeezenet_row():
    pytest.importorskip("onnxruntime")
    r = subprocess.run([sys.executable, str(SCRIPT), "--models", "squeezenet", "--rounds", "1",
                        "--markdown"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines()
            if line.startswith("| squeezenet")]
    assert len(rows) == 1, r.stdout
    cells = [c.strip() for c in rows[0]]
    assert all(float(c) > 0 for c in cells[3:8]), cells      # times and ratios


def test_unknown_model_is_one_clear_error():
    r = subprocess.run([sys.executable, str(SCRIPT), "--models", "nosuchnet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nosuchnet" in r.stderr and "squeezenet" in r.stderr
