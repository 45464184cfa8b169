"""The qengine command through subprocess, and InferenceSession as onnxruntime's drop-in."""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

import models
import qengine


def qe(*args, check=True, timeout=120):
    r = subprocess.run([sys.executable, "-m", "qengine.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"qengine {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def test_demo_prints_accuracies_that_an_independent_evaluation_reproduces():
    r = qe("demo", "--runs", "20")
    m = re.search(r"float32:\s+([\d.]+) %\s+int8:\s+([\d.]+) %", r.stdout)
    assert m, r.stdout
    printed_float, printed_int8 = float(m.group(1)), float(m.group(2))
    from qengine.demo import MODEL_PATH, load_demo_data
    data = load_demo_data()
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    float_acc = np.mean(sess.run(None, {"input": data["test"]})[0].argmax(1) == data["labels"])
    model = qengine.quantize(str(MODEL_PATH), data["calib"], progress=False)
    int8_acc = np.mean(model.run(data["test"]).argmax(1) == data["labels"])
    assert abs(printed_float - 100 * float_acc) < 0.006
    assert abs(printed_int8 - 100 * int8_acc) < 0.006
    assert "latency" in r.stdout and "faster" in r.stdout and "smaller" in r.stdout


def test_quantize_run_inspect(tmp_path):
    m = models.resnet18()
    src = tmp_path / "f.onnx"
    onnx.save(m, str(src))
    calib = np.concatenate([models.random_input(m, batch=4, seed=s)["input"] for s in range(2)])
    np.save(tmp_path / "calib.npy", calib)
    out = tmp_path / "q.onnx"
    r = qe("quantize", src, "-o", out, "--calib", tmp_path / "calib.npy", "--no-progress",
           "--keep-float", "Conv_3")
    assert out.exists() and "int8 nodes" in r.stdout
    x = models.random_input(m, batch=2, seed=5)["input"]
    np.save(tmp_path / "x.npy", x)
    qe("run", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, qengine.load(out).run(x))
    r = qe("inspect", out)
    assert "Conv_3" in r.stdout and "int8" in r.stdout and "Kernels" in r.stdout
    qe("info")


@pytest.mark.parametrize("args, msg", [
    (["quantize", "missing.onnx", "-o", "x.onnx", "--calib", "c.npy"], "error"),
    (["run", "missing.onnx", "--input", "x.npy"], "error"),
    (["inspect", "missing.onnx"], "does not exist"),
    (["quantize", "m.onnx", "-o", "x.onnx"], "--calib"),
])
def test_errors_are_one_line_and_nonzero(args, msg, tmp_path):
    onnx.save(models.resnet18(), str(tmp_path / "m.onnx"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = qe(*args, check=False)
    finally:
        os.chdir(cwd)
    assert r.returncode != 0
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", ["demo", "quantize", "run", "inspect", "bench", "report", "info"])
def test_every_command_has_help(cmd):
    r = qe(cmd, "--help")
    assert "usage: qengine" in r.stdout


def test_inference_session_is_a_drop_in(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = models.mobilenetv2()
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    x = models.random_input(m, batch=2, seed=1)["input"]

    def script(mod):
        sess = mod.InferenceSession(str(path))
        inp = sess.get_inputs()[0]
        outs = sess.get_outputs()
        y = sess.run([outs[0].name], {inp.name: x})[0]
        return inp.name, inp.type, inp.shape, outs[0].name, outs[0].type, y

    a, b = script(ort), script(qengine)
    assert a[:5] == b[:5]
    np.testing.assert_allclose(a[5], b[5], rtol=1e-4, atol=1e-5)
    with pytest.raises(qengine.InputError):
        qengine.InferenceSession(str(path)).run(["nope"], {"input": x})
