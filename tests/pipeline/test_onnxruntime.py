"""qengine and onnxruntime on each other's quantized models.

- A model quantized by onnxruntime (quantize_static, QDQ, per channel, uint8 activations, int8
  weights) and run by qengine matches onnxruntime's own output within 1 LSB on >= 99.9% of
  elements.
- A model quantized and saved by qengine runs in onnxruntime with outputs close to ours.
"""
import numpy as np
import onnx
import pytest

import models
from ort_quant import ort_quantize_qdq
import qengine
from util import sqnr_db

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
quantization = pytest.importorskip("onnxruntime.quantization",
                                   reason="onnxruntime.quantization is not available")

BUILDERS = {
    "resnet18": lambda: models.resnet18(),
    "mobilenetv2": lambda: models.mobilenetv2(),
    "yolo_block": lambda: models.yolo_block(),
}


def _calibration(m, n=4, batch=4):
    return [models.random_input(m, batch=batch, seed=100 + s)["input"] for s in range(n)]


def _ort_quantize(m, calib, tmp_path, name):
    return ort_quantize_qdq(m, calib, tmp_path, name)[1]


def _session(path_or_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def _last_quantized(model: onnx.ModelProto) -> dict:
    """Graph output -> (the quantized tensor behind its final DequantizeLinear, scale)."""
    prod = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for o in model.graph.output:
        n = prod.get(o.name)
        while n is not None and n.op_type != "DequantizeLinear":
            n = prod.get(n.input[0])
        if n is not None:
            out[o.name] = (n.input[0], float(inits[n.input[1]].reshape(-1)[0]))
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_onnxruntime_qdq_model_runs_within_one_lsb(name, tmp_path):
    m = BUILDERS[name]()
    path = _ort_quantize(m, _calibration(m), tmp_path, name)
    qmodel = onnx.load(str(path))
    # expose the last quantized tensor of every output, on both sides
    inner = _last_quantized(qmodel)
    for _, (t, _) in inner.items():
        qmodel.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    ours = qengine.load(qmodel.SerializeToString())
    x = models.random_input(m, batch=3, seed=7)["input"]
    got = ours.run(x, as_dict=True)
    sess = _session(qmodel.SerializeToString())
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    assert inner, "expected DequantizeLinear outputs"
    for out_name, (t, scale) in inner.items():
        d = np.abs(got[t].astype(np.int32) - want[t].astype(np.int32))
        assert np.mean(d <= 1) >= 0.999, f"{t}: {np.mean(d > 1):.3%} beyond 1 LSB"
    counts = ours.node_counts({"input": x.shape})
    convs = [n.name for n in ours.graph.nodes if n.op_type == "Conv"]
    assert set(convs) <= set(counts["int8"]), "every Conv of the ORT model runs on int8 kernels"


@pytest.mark.parametrize("name", ["resnet18", "yolo_block"])
def test_saved_qengine_model_runs_in_onnxruntime(name, tmp_path):
    m = BUILDERS[name]()
    q = qengine.quantize(m, _calibration(m), progress=False)
    path = tmp_path / "q.onnx"
    q.save(path)
    x = models.random_input(m, batch=2, seed=3)["input"]
    ours = q.run(x, as_dict=True)
    sess = _session(str(path))
    theirs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    for k in ours:
        assert sqnr_db(ours[k], theirs[k]) > 30, f"{k}: onnxruntime disagrees with qengine"


def test_ocr_block_differs_from_onnxruntime_only_downstream_of_its_softmax(tmp_path):
    """onnxruntime runs DQ -> Softmax -> Q as its own QLinearSoftmax (a table-based
    approximation), while qengine runs the QDQ graph's float Softmax exactly; every quantized
    tensor upstream of the Softmax must agree bit for bit."""
    m = models.ocr_block()
    qmodel = onnx.load(str(_ort_quantize(m, _calibration(m), tmp_path, "ocr")))
    qs = [n.output[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear"]
    for t in qs:
        qmodel.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    x = models.random_input(m, batch=3, seed=7)["input"]
    got = qengine.load(qmodel.SerializeToString()).run(x, as_dict=True)
    sess = _session(qmodel.SerializeToString())
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    prod = {o: n for n in qmodel.graph.node for o in n.output}
    first = next(t for t in qs if not np.array_equal(got[t], want[t]))
    assert prod[prod[first].input[0]].op_type == "Softmax"
