"""Randomized comparisons on whole networks: qengine's float reference against
onnx.reference.ReferenceEvaluator and ONNX Runtime (when installed), on the builders of
tests/models.py (random seeds and batch sizes), and on real PyTorch exports (opsets 11-17)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qengine.frontends import import_onnx
from qengine.runtime import ReferenceExecutor

from models import ALL_BUILDERS, random_input

try:
    import onnxruntime as ort
except ImportError:      # pragma: no cover - the project's test extras install it
    ort = None


def assert_close(got: np.ndarray, want: np.ndarray, what: str, rtol=1e-4):
    """Float32 networks: elementwise rtol plus an atol scaled to the output's magnitude."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def _ours(model, feeds_list):
    ex = ReferenceExecutor(import_onnx(model), check_shapes=True)   # prepared once
    return [ex.run(f) for f in feeds_list]


def onnx_reference(model):
    """onnx.reference.ReferenceEvaluator, with one fix: its BatchNormalization for opsets
    9-13 applies batch statistics (the schema's default momentum sends it down the training
    branch), so inference-mode BatchNormalization replaces it."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None,
                 spatial=None, training_mode=None):
            r = (1, -1) + (1,) * (x.ndim - 2)
            y = (x - mean.reshape(r)) / np.sqrt(var.reshape(r) + epsilon) * scale.reshape(r)
            return ((y + bias.reshape(r)).astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[BatchNormalization])


@pytest.mark.parametrize("name", sorted(ALL_BUILDERS))
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2 ** 16), batch=st.integers(1, 3))
def test_builders_match_onnx_reference(name, seed, batch):
    model = ALL_BUILDERS[name](seed=seed)
    feeds = random_input(model, batch, seed)
    (got,) = _ours(model, [feeds])
    want = onnx_reference(model).run(None, feeds)
    for (k, g), w in zip(got.items(), want):
        assert_close(g, w, f"{name} {k}")


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("name", sorted(ALL_BUILDERS))
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_builders_match_onnxruntime(name, seed):
    model = ALL_BUILDERS[name](seed=seed)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = [random_input(model, b, seed + b) for b in (1, 4)]    # one executor, two batches
    for f, got in zip(feeds, _ours(model, feeds)):
        for (k, g), w in zip(got.items(), sess.run(None, f)):
            assert_close(g, w, f"{name} {k} batch {f['input'].shape[0]}")


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("opset", [11, 13])
def test_resnet18_older_opsets_match_onnxruntime(opset):
    model = ALL_BUILDERS["resnet18"](opset=opset, seed=opset)
    feeds = random_input(model, 2, 0)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = _ours(model, [feeds])
    assert_close(next(iter(got.values())), sess.run(None, feeds)[0], f"resnet18 opset {opset}")


def test_builders_are_deterministic():
    for fn in ALL_BUILDERS.values():
        assert fn(seed=3).SerializeToString() == fn(seed=3).SerializeToString()
    a, b = ALL_BUILDERS["resnet18"](seed=1), ALL_BUILDERS["resnet18"](seed=2)
    assert a.SerializeToString() != b.SerializeToString()


# -- real PyTorch exports --------------------------------------------------------------------
torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class SmallCNN(nn.Module):
    """Conv/BN/ReLU6, depthwise, SE with Hardsigmoid, bilinear resize, view(size(0), -1)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.se1 = nn.Conv2d(16, 4, 1)
        self.se2 = nn.Conv2d(4, 16, 1)
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.fc = nn.Linear(8 * 9 * 9, 10)

    def forward(self, x):
        x = F.relu6(self.b1(self.c1(x)))
        x = F.hardswish(self.dw(x))
        s = F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
        x = x * s
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.up(x)
        x = F.avg_pool2d(x, 4)
        return self.fc(x.view(x.size(0), -1))


class YoloHead(nn.Module):
    """SiLU convs, split/cat, nearest upsample, the detection reshape/permute head."""

    def __init__(self, na=3, no=7):
        super().__init__()
        self.na, self.no = na, no
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.c3 = nn.Conv2d(32, na * no, 1)

    def forward(self, x):
        x = F.silu(self.c1(x))
        a, b = x.split(8, dim=1)
        x = torch.cat([F.silu(self.c2(a)) + a, b], 1)
        x = torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"),
                       F.interpolate(x, scale_factor=2.0, mode="nearest")], 1)
        x = self.c3(x)
        bs, _, ny, nx = x.shape
        x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
        y = x.sigmoid()
        return y.view(bs, -1, self.no), torch.softmax(x.view(bs, -1, self.no), dim=1)


class Attention(nn.Module):
    """Sequence block: LayerNorm, scaled dot-product attention by hand, GELU MLP."""

    def __init__(self, d=32):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.d = d

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(1, 2) / d ** 0.5, dim=-1)
        x = x + self.o(att @ v)
        return x + self.mlp(self.ln2(x))


TORCH_CASES = {
    "cnn": (SmallCNN, (3, 32, 32)),
    "yolo": (YoloHead, (3, 32, 32)),
    "attention": (Attention, (12, 32)),
}


def _export(module, shape, opset):
    torch.manual_seed(0)
    m = module().eval()
    for p in m.modules():     # non-trivial BatchNorm statistics
        if isinstance(p, nn.BatchNorm2d):
            p.running_mean.uniform_(-0.5, 0.5)
            p.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, *shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        buf = io.BytesIO()
        out_names = ["y0", "y1"] if module is YoloHead else ["y0"]
        torch.onnx.export(m, (x,), buf, opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=out_names,
                          dynamic_axes={"input": {0: "batch"},
                                        **{o: {0: "batch"} for o in out_names}})
    return m, buf.getvalue()


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_pytorch_exports(case, opset):
    module, shape = TORCH_CASES[case]
    m, blob = _export(module, shape, opset)
    graph = import_onnx(blob)
    # the exporter's x.view(x.size(0), -1) / view(bs, ...) chains fold away with a
    # symbolic batch; what remains is computation
    assert not any(n.op_type in ("Shape", "Gather", "Constant", "Identity") for n in graph.nodes), \
        graph.summary()
    ex = ReferenceExecutor(graph, check_shapes=True)
    for batch in (1, 5):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = m(x)
        want = want if isinstance(want, tuple) else (want,)
        got = ex.run({"input": x.numpy()})
        for g, w in zip(got.values(), want):
            assert_close(g, w.numpy(), f"{case} opset {opset} batch {batch}")


# -- a QDQ graph (the representation the int8 pipeline writes and reads) ---------------------
def qdq_conv_model(seed=0):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    ws = (np.abs(w).reshape(8, -1).max(1) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(0.02, np.float32), "xs"), (np.array(128, np.uint8), "xz"),
        (wq, "wq"), (ws, "ws"), (np.zeros(8, np.int8), "wz"),
        (rng.integers(-500, 500, 8).astype(np.int32), "bq"), (0.02 * ws, "bs"),
        (np.array(0.05, np.float32), "ys"), (np.array(10, np.uint8), "yz")]]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 6, 6])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
def test_qdq_graph_matches_onnxruntime_unfused():
    model = qdq_conv_model()
    graph = import_onnx(model)
    # weights stay int8 behind their DequantizeLinear (not folded back to float)
    dq = [n for n in graph.nodes if n.op_type == "DequantizeLinear"]
    assert {graph.initializers[n.inputs[0]].dtype for n in dq if n.inputs[0] in
            graph.initializers} == {np.dtype(np.int8), np.dtype(np.int32)}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    feeds = random_input(model, 2, seed=4)
    got = ReferenceExecutor(graph, check_shapes=True).run(feeds)["y"]
    want = sess.run(None, feeds)[0]
    # float32 conv sums may round differently: allow one output quantum, rarely
    diff = np.abs(got - want) / 0.05
    assert diff.max() <= 1.0 + 1e-4 and (diff > 0.5).mean() < 0.01
