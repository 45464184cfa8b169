"""qengine.report / `qengine report`: its numbers against an independent computation
(onnxruntime for the float activations, the quantized codes dequantized here by hand), the
PNG and the JSON, sensitivity, and a foreign (onnxruntime quantize_static) model."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import fmodels
import models
from ort_quant import ort_quantize_qdq
import qengine
from qengine.runtime.executor import Executor
from test_failure_modes import sqnr

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.fixture(scope="module")
def case():
    m = fmodels.sigmoid_softmax_head()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    q = qengine.quantize(m, calib, target_sqnr=None, progress=False)
    x = models.random_input(m, batch=12, seed=5)["input"]
    return m, q, x


def _float_activations(m, x, names):
    """Every named tensor of the float model, run by onnxruntime."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    have = {o.name for o in m2.graph.output}
    for n in names:
        if n not in have:
            m2.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    return dict(zip(outs, sess.run(None, {"input": x})))


def _cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_report_numbers_agree_with_an_independent_computation(case):
    m, q, x = case
    rep = qengine.report(m, q, x)
    g = q.graph
    init = g.initializers
    qs = [n for n in g.nodes if n.op_type == "QuantizeLinear"]
    # int8 activations: the compiled model's codes, dequantized here
    g2 = g.copy()
    g2.outputs = g2.outputs + [g2.value(n.outputs[0]) for n in qs]
    codes = Executor(g2).run({"input": x})
    deq = {}
    for n in qs:
        name = n.inputs[0]
        if name.endswith("_float"):                       # a graph output keeps its name
            name = name[:-len("_float")]
        s, z = init[n.inputs[1]].astype(np.float64), init[n.inputs[2]].astype(np.float64)
        deq[name] = (codes[n.outputs[0]].astype(np.float64) - z) * s
    fl = _float_activations(m, x, list(deq))
    rows = {r["tensor"]: r for r in rep.activations}
    assert set(rows) == set(deq)
    for name, d in deq.items():
        assert rows[name]["sqnr_db"] == pytest.approx(sqnr(fl[name], d), abs=0.02), name
        assert rows[name]["cosine"] == pytest.approx(_cosine(fl[name], d), abs=1e-5), name
    worst = [r["sqnr_db"] for r in rep.activations]
    assert worst == sorted(worst)                          # worst offenders first
    # outputs
    got = q.run(x, as_dict=True)
    for r in rep.outputs:
        assert r["sqnr_db"] == pytest.approx(sqnr(fl[r["name"]], got[r["name"]]), abs=0.02)
    # weights: the int8 codes dequantized by hand against the float initializers
    fw = {n.name: onnx.numpy_helper.to_array(next(i for i in m.graph.initializer
                                                  if i.name == n.input[1]))
          for n in m.graph.node if n.op_type == "Conv"}
    dq = {n.outputs[0]: n for n in g.nodes if n.op_type == "DequantizeLinear"}
    wrows = {r["node"]: r for r in rep.weights}
    assert set(wrows) == set(fw)
    for node in g.nodes:
        if node.op_type != "Conv":
            continue
        d = dq[node.inputs[1]]
        w8 = init[d.inputs[0]].astype(np.float64)
        wd = w8 * init[d.inputs[1]].reshape(-1, 1, 1, 1)
        assert wrows[node.name]["sqnr_db"] == pytest.approx(sqnr(fw[node.name], wd), abs=0.02)
        assert wrows[node.name]["bits"] == 8 and wrows[node.name]["per_channel"]


def test_report_table_json_and_png(case, tmp_path):
    m, q, x = case
    rep = qengine.report(m, q, x, max_samples=8)
    assert rep.samples == 8
    text = rep.table()
    assert "Outputs" in text and "Activations" in text and "Weights" in text
    assert rep.activations[0]["tensor"] in text
    path = rep.plot(tmp_path / "r.png")
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    d = json.loads(rep.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == d
    assert [r["tensor"] for r in d["activations"]] == [r["tensor"] for r in rep.activations]
    assert d["outputs"][0]["sqnr_db"] == pytest.approx(rep.outputs[0]["sqnr_db"], abs=1e-3)


def test_sensitivity_finds_the_layer_that_breaks_the_head(case):
    m, q, x = case
    rep = qengine.report(m, q, x, sensitivity=True)
    top = rep.sensitivity[0]
    # the head conv shares one scale between box offsets and class logits: keeping its
    # output float alone fixes the model, quantizing it alone breaks it; it takes the Split
    # and the Sigmoid behind it (one float table over the logits' codes when they are int8)
    assert (top["kind"], top["name"], top["float_nodes"]) == ("activation", "conv_15",
                                                              ["Split_20", "Sigmoid_22"])
    assert top["float_alone_db"] > 30 > top["quant_alone_db"]
    others = rep.sensitivity[1:]
    assert all(r["float_alone_db"] < 20 and r["quant_alone_db"] > 30 for r in others)
    assert "Sensitivity" in rep.table()


def test_report_on_an_onnxruntime_quantized_model(case, tmp_path):
    m, _, x = case
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    src, dst = ort_quantize_qdq(m, calib, tmp_path)
    rep = qengine.report(str(src), str(dst), x, sensitivity=True)
    assert len(rep.activations) >= 4 and len(rep.weights) == 3
    assert {r["name"] for r in rep.outputs} == {o.name for o in m.graph.output}
    assert rep.sensitivity


def test_report_command(case, tmp_path):
    m, q, x = case
    onnx.save(m, str(tmp_path / "f.onnx"))
    q.save(tmp_path / "q.onnx")
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-m", "qengine.cli", "report", str(tmp_path / "f.onnx"),
                        str(tmp_path / "q.onnx"), "--data", str(tmp_path / "x.npy"), "--json",
                        str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"), "--top",
                        "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Activations, worst first (3 of" in r.stdout
    assert (tmp_path / "r.png").stat().st_size > 5000
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["samples"] == 12 and d["activations"]
    bad = subprocess.run([sys.executable, "-m", "qengine.cli", "report", str(tmp_path / "f.onnx"),
                          str(tmp_path / "q.onnx"), "--data", str(tmp_path / "missing.npy")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "qengine: error:" in bad.stderr


def test_quantize_command_prints_the_fidelity_decision(tmp_path):
    m = fmodels.sigmoid_softmax_head()
    onnx.save(m, str(tmp_path / "f.onnx"))
    calib = np.concatenate([models.random_input(m, batch=8, seed=s)["input"] for s in range(4)])
    np.save(tmp_path / "c.npy", calib)

    def quantize(*extra):
        return subprocess.run([sys.executable, "-m", "qengine.cli", "quantize",
                               str(tmp_path / "f.onnx"), "-o", str(tmp_path / "q.onnx"),
                               "--calib", str(tmp_path / "c.npy"), "--no-progress", *extra],
                              capture_output=True, text=True, timeout=120)
    r = quantize()
    assert r.returncode == 0, r.stderr
    assert "target 30.0 dB met on 5 held-back samples" in r.stdout
    assert "kept float: Split_20" in r.stdout and "run time x" in r.stdout
    r = quantize("--target-sqnr", "none")
    assert r.returncode == 0 and "target" not in r.stdout
    r = quantize("--target-sqnr", "loud")
    assert r.returncode == 2 and "expected a number of dB or 'none'" in r.stderr
