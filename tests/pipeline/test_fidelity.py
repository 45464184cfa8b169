"""Fidelity of qengine's default quantization: against onnxruntime's quantize_static with the
same calibration data, and on a small CNN trained here on scikit-learn's digits."""
import numpy as np
import onnx
import pytest

import models
from ort_quant import ort_quantize_qdq
from digits_cnn import load_digits_images, train_digits_cnn
import qengine
from qengine.runtime.reference import ReferenceExecutor
from util import sqnr_db

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _output_sqnr(float_model, run, feeds):
    g = qengine.api.read_model(float_model.SerializeToString())
    ref = ReferenceExecutor(g).run(feeds)
    got = run(feeds)
    return min(sqnr_db(ref[k], got[k]) for k in ref)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "yolo_block"])
def test_default_quantization_is_at_least_as_good_as_onnxruntime(name, tmp_path):
    m = getattr(models, name)()
    calib = [models.random_input(m, batch=4, seed=200 + s)["input"] for s in range(6)]
    _, dst = ort_quantize_qdq(m, calib, tmp_path)
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ours = qengine.quantize(m, calib, progress=False)
    feeds = {"input": models.random_input(m, batch=8, seed=999)["input"]}
    s_ours = _output_sqnr(m, lambda f: ours.run(f, as_dict=True), feeds)
    s_ort = _output_sqnr(m, lambda f: dict(zip(names, sess.run(None, f))), feeds)
    assert s_ours >= s_ort - 0.1, f"qengine {s_ours:.2f} dB < onnxruntime {s_ort:.2f} dB"


def test_digits_cnn_keeps_its_accuracy():
    x, y = load_digits_images()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1300], order[1300:]
    m = train_digits_cnn(x[train], y[train])
    g = qengine.api.read_model(m.SerializeToString())
    float_acc = float(np.mean(ReferenceExecutor(g).run({"x": x[test]})["logits"].argmax(1) == y[test]))
    q = qengine.quantize(m, x[train[:200]], progress=False)
    int8_acc = float(np.mean(q.run(x[test]).argmax(1) == y[test]))
    assert float_acc > 0.9, f"the float model did not train ({float_acc:.3f})"
    assert int8_acc >= float_acc - 0.005, f"int8 {int8_acc:.4f} vs float {float_acc:.4f}"
    assert not q.node_counts({"x": (1, 1, 8, 8)})["float"]
