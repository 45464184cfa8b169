"""Fidelity of qengine's default quantization: against onnxruntime's quantize_static with the
same calibration data, and on a small CNN trained here on scikit-learn's digits."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
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
    from onnxruntime import quantization as oq
    m = getattr(models, name)()
    calib = [models.random_input(m, batch=4, seed=200 + s)["input"] for s in range(6)]
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(m, str(src))

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    oq.quantize_static(str(src), str(dst), Reader(), quant_format=oq.QuantFormat.QDQ,
                       per_channel=True, activation_type=oq.QuantType.QUInt8,
                       weight_type=oq.QuantType.QInt8)
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ours = qengine.quantize(m, calib, progress=False)
    feeds = {"input": models.random_input(m, batch=8, seed=999)["input"]}
    s_ours = _output_sqnr(m, lambda f: ours.run(f, as_dict=True), feeds)
    s_ort = _output_sqnr(m, lambda f: dict(zip(names, sess.run(None, f))), feeds)
    assert s_ours >= s_ort - 0.1, f"qengine {s_ours:.2f} dB < onnxruntime {s_ort:.2f} dB"


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]        # (n, 1, 8, 8)
    return x, d.target.astype(np.int64)


def _train_digits_cnn(x, y, seed=0):
    """A small CNN (conv-relu-conv-relu-flatten-dense) trained with torch; returned as ONNX."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(12):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    p = [t.detach().numpy() for t in net.parameters()]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)]
    inits = [numpy_helper.from_array(a, n) for n, a in zip(["w1", "b1", "w2", "b2", "w3", "b3"], p)]
    g = helper.make_graph(nodes, "digits",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_digits_cnn_keeps_its_accuracy():
    x, y = _digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1300], order[1300:]
    m = _train_digits_cnn(x[train], y[train])
    g = qengine.api.read_model(m.SerializeToString())
    float_acc = float(np.mean(ReferenceExecutor(g).run({"x": x[test]})["logits"].argmax(1) == y[test]))
    q = qengine.quantize(m, x[train[:200]], progress=False)
    int8_acc = float(np.mean(q.run(x[test]).argmax(1) == y[test]))
    assert float_acc > 0.9, f"the float model did not train ({float_acc:.3f})"
    assert int8_acc >= float_acc - 0.005, f"int8 {int8_acc:.4f} vs float {float_acc:.4f}"
    assert not q.node_counts({"x": (1, 1, 8, 8)})["float"]
