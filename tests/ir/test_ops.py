"""Op semantics against independent references: loops written from the ONNX spec, PyTorch,
ONNX Runtime, and tests/npref.py (the normative quantization semantics of DESIGN.md)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import npref
from qengine.errors import ModelError, UnsupportedOpError
from qengine.frontends import import_onnx
from qengine.graph import Node
from qengine.ops import get_op, make_op
from qengine.ops.eltwise import erf
from qengine.runtime import ReferenceExecutor

try:
    import onnxruntime as ort
except ImportError:      # pragma: no cover
    ort = None
torch = pytest.importorskip("torch")
TF = torch.nn.functional


def run_node(op_type, inputs: dict, consts: dict = None, opset=17, n_out=1, **attrs):
    """Build a one-node model (inputs fed, consts as initializers) and run it with qengine;
    returns (outputs, model)."""
    consts = consts or {}
    names = list(inputs) + list(consts)
    node = helper.make_node(op_type, names, [f"y{i}" for i in range(n_out)], name="n", **attrs)
    g = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.UNDEFINED, None)
         for i in range(n_out)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    ex = ReferenceExecutor(import_onnx(model, fold=False), check_shapes=True)
    out = ex.run(inputs)
    outs = [out[f"y{i}"] for i in range(n_out)]
    for vi, y in zip(model.graph.output, outs):     # typed outputs, for ONNX Runtime
        vi.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(y.dtype)
    return outs, model


def run_ort(model, inputs):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


# -- erf -----------------------------------------------------------------------------------
def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-6, 6, 2001), [0.0, -0.0, 1e-30, -1e-12, 2.4999, 2.5,
                                                   30.0, -30.0]])
    want = np.array([math.erf(v) for v in x])
    got = erf(x)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)
    assert np.isnan(erf(np.array([np.nan])))[0]
    assert erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]
    assert erf(np.ones(3, np.float32)).dtype == np.float32


# -- convolution against a loop written from the spec ---------------------------------------
def conv_loop(x, w, b, strides, pads, dilations, group):
    N, C, H, W = x.shape
    M, Cg, KH, KW = w.shape
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    OH = (H + pads[0] + pads[2] - (KH - 1) * dilations[0] - 1) // strides[0] + 1
    OW = (W + pads[1] + pads[3] - (KW - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((N, M, OH, OW))
    Mg = M // group
    for n, m, i, j in itertools.product(range(N), range(M), range(OH), range(OW)):
        g = m // Mg
        acc = 0.0 if b is None else float(b[m])
        for c, p, q in itertools.product(range(Cg), range(KH), range(KW)):
            acc += xp[n, g * Cg + c, i * strides[0] + p * dilations[0],
                      j * strides[1] + q * dilations[1]] * w[m, c, p, q]
        y[n, m, i, j] = acc
    return y


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_conv_matches_loop(data):
    group = data.draw(st.sampled_from([1, 2, 3]))
    depthwise = data.draw(st.booleans())
    cg = 1 if depthwise else data.draw(st.integers(1, 3))
    mg = data.draw(st.integers(1, 2))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    s = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    p = [data.draw(st.integers(0, 2)) for _ in range(4)]
    hw = (data.draw(st.integers(5, 8)), data.draw(st.integers(5, 8)))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rng.standard_normal((2, group * cg, *hw)).astype(np.float32)
    w = rng.standard_normal((group * mg, cg, *k)).astype(np.float32)
    b = rng.standard_normal(group * mg).astype(np.float32)
    (y,), _ = run_node("Conv", {"x": x}, {"w": w, "b": b}, group=group, strides=list(s),
                       dilations=list(d), pads=p, kernel_shape=list(k))
    np.testing.assert_allclose(y, conv_loop(x, w, b, s, p, d, group), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv_auto_pad(auto_pad, stride):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    (y,), _ = run_node("Conv", {"x": x}, {"w": w}, auto_pad=auto_pad, strides=[stride, stride])
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = []
        for n, k in ((7, 3), (6, 2)):
            total = max(0, (-(-n // stride) - 1) * stride + k - n)
            small = total // 2
            pads.append((small, total - small) if auto_pad == "SAME_UPPER" else
                        (total - small, small))
        pads = [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
    want = conv_loop(x, w, None, (stride, stride), pads, (1, 1), 1)
    if auto_pad != "VALID":
        assert y.shape[2:] == (-(-7 // stride), -(-6 // stride))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_conv_1d_and_3d_match_torch():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((2, 4, 11)).astype(np.float32)
    w1 = rng.standard_normal((6, 2, 3)).astype(np.float32)
    (y,), _ = run_node("Conv", {"x": x1}, {"w": w1}, group=2, pads=[1, 2], strides=[2],
                       dilations=[2])
    want = TF.conv1d(TF.pad(torch.from_numpy(x1), (1, 2)), torch.from_numpy(w1), stride=2,
                     dilation=2, groups=2)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)
    x3 = rng.standard_normal((1, 2, 5, 6, 4)).astype(np.float32)
    w3 = rng.standard_normal((3, 2, 2, 3, 1)).astype(np.float32)
    (y,), _ = run_node("Conv", {"x": x3}, {"w": w3}, pads=[1, 0, 0, 1, 1, 0])
    want = TF.conv3d(TF.pad(torch.from_numpy(x3), (0, 0, 0, 1, 1, 1)), torch.from_numpy(w3))
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_conv_transpose_matches_torch(data):
    group = data.draw(st.sampled_from([1, 2]))
    cg, mg = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, 4))
    s = data.draw(st.integers(1, 3))
    d = data.draw(st.integers(1, 2))
    p = data.draw(st.integers(0, (k - 1) * d // 2))
    op = data.draw(st.integers(0, max(0, max(s, d) - 1)))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rng.standard_normal((2, group * cg, 4, 5)).astype(np.float32)
    w = rng.standard_normal((group * cg, mg, k, k)).astype(np.float32)
    b = rng.standard_normal(group * mg).astype(np.float32)
    (y,), _ = run_node("ConvTranspose", {"x": x}, {"w": w, "b": b}, group=group,
                       strides=[s, s], dilations=[d, d], pads=[p] * 4,
                       output_padding=[op, op])
    want = TF.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                               stride=s, padding=p, output_padding=op, groups=group,
                               dilation=d)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)


# -- pooling against PyTorch ---------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_pools_match_torch(data):
    k = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    p = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
    ceil = data.draw(st.booleans())
    include = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rng.standard_normal((2, 3, data.draw(st.integers(4, 9)),
                             data.draw(st.integers(4, 9)))).astype(np.float32)
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], p[0], p[1]],
                 ceil_mode=int(ceil))
    (y, idx), _ = run_node("MaxPool", {"x": x}, n_out=2, **attrs)
    tx = torch.from_numpy(x)
    want, wi = TF.max_pool2d(tx, k, s, p, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(y, want.numpy())
    # torch indices are per (n, c) plane; ONNX's flatten over the whole tensor
    plane = np.arange(6).reshape(2, 3, 1, 1) * x.shape[2] * x.shape[3]
    np.testing.assert_array_equal(idx, wi.numpy() + plane)
    (y,), _ = run_node("AveragePool", {"x": x}, count_include_pad=int(include), **attrs)
    want = TF.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=include)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-6, atol=1e-6)


def test_maxpool_dilation_and_int8():
    x = np.random.default_rng(1).integers(-128, 127, (1, 2, 9, 9)).astype(np.int8)
    (y,), _ = run_node("MaxPool", {"x": x}, opset=12, kernel_shape=[2, 3], dilations=[2, 2],
                       pads=[1, 1, 1, 1])
    want = TF.max_pool2d(torch.from_numpy(x.astype(np.float32)), (2, 3), 1, 1, dilation=2)
    np.testing.assert_array_equal(y, want.numpy().astype(np.int8))
    assert y.dtype == np.int8


# -- Resize against ONNX Runtime --------------------------------------------------------------
RESIZE_CASES = [
    # (mode, coordinate_transformation_mode, nearest_mode, scales or None, sizes or None)
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2, 3], None),
    ("nearest", "half_pixel", "round_prefer_ceil", None, [1, 2, 5, 7]),
    ("nearest", "align_corners", "round_prefer_floor", None, [1, 2, 9, 4]),
    ("nearest", "asymmetric", "ceil", [1, 1, 0.5, 0.5], None),
    ("linear", "half_pixel", None, [1, 1, 2, 2], None),
    ("linear", "pytorch_half_pixel", None, None, [1, 2, 3, 12]),
    ("linear", "align_corners", None, None, [1, 2, 11, 9]),
    ("linear", "asymmetric", None, [1, 1, 3, 2], None),
    ("linear", "half_pixel", None, [1, 1, 0.5, 0.5], None),
    ("cubic", "half_pixel", None, [1, 1, 2, 2], None),
    ("cubic", "align_corners", None, None, [1, 2, 7, 5]),
]


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("mode, coord, nearest, scales, sizes", RESIZE_CASES)
def test_resize_matches_onnxruntime(mode, coord, nearest, scales, sizes):
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 4)).astype(np.float32)
    consts = {"roi": np.array([], np.float32)}
    if scales is not None:
        consts["scales"] = np.array(scales, np.float32)
    else:
        consts["scales"] = np.array([], np.float32)
        consts["sizes"] = np.array(sizes, np.int64)
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if nearest:
        attrs["nearest_mode"] = nearest
    (y,), model = run_node("Resize", {"x": x}, consts, opset=13, **attrs)
    (want,) = run_ort(model, {"x": x})
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("scales", [[1, 1, 2, 1.5], [1, 1, 0.5, 0.6], [1, 1, 1.7, 0.34],
                                    [1, 1, 3, 3]])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize10_and_upsample_match_onnxruntime(scales, mode):
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 9)).astype(np.float32)
    s = {"s": np.array(scales, np.float32)}
    (y,), model = run_node("Resize", {"x": x}, s, opset=10, mode=mode)
    np.testing.assert_allclose(y, run_ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
    if min(scales) >= 1:     # Upsample cannot shrink
        (y,), model = run_node("Upsample", {"x": x}, s, opset=9, mode=mode)
        np.testing.assert_allclose(y, run_ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


# -- the same op across opset versions (attribute vs input forms) -------------------------------
X4 = np.random.default_rng(5).standard_normal((2, 4, 3, 5)).astype(np.float32)
LEGACY = [
    # (op, opset, constant inputs, attributes, outputs)
    ("Clip", 6, {}, {"min": -0.5, "max": 0.7}, 1),
    ("Clip", 11, {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, {}, 1),
    ("Pad", 2, {}, {"pads": [0, 1, 0, 2, 0, 0, 1, 1], "value": 1.5}, 1),
    ("Pad", 11, {"p": np.array([0, 1, 0, 2, 0, 0, 1, 1], np.int64),
                 "v": np.array(1.5, np.float32)}, {}, 1),
    ("Pad", 18, {"p": np.array([1, 2, 0, 1], np.int64), "v": np.array(0, np.float32),
                 "ax": np.array([1, 3], np.int64)}, {"mode": "edge"}, 1),
    ("ReduceSum", 11, {}, {"axes": [1, 3], "keepdims": 0}, 1),
    ("ReduceSum", 13, {"a": np.array([1, 3], np.int64)}, {"keepdims": 0}, 1),
    ("ReduceMean", 13, {}, {"axes": [-1]}, 1),
    ("ReduceMean", 18, {"a": np.array([-1], np.int64)}, {}, 1),
    ("Split", 11, {}, {"axis": 1, "split": [1, 3]}, 2),
    ("Split", 13, {"s": np.array([3, 1], np.int64)}, {"axis": 1}, 2),
    ("Split", 18, {}, {"axis": 3, "num_outputs": 2}, 2),
    ("Slice", 9, {}, {"starts": [1, -3], "ends": [3, 100], "axes": [1, 3]}, 1),
    ("Slice", 13, {"b": np.array([3, -1], np.int64), "e": np.array([0, -6], np.int64),
                   "ax": np.array([1, 3], np.int64), "st": np.array([-2, -2], np.int64)}, {}, 1),
    ("TopK", 9, {}, {"k": 2, "axis": 1}, 2),
    ("TopK", 11, {"k": np.array([2], np.int64)}, {"axis": -1, "largest": 0}, 2),
    ("Squeeze", 11, {}, {"axes": [0]}, 1),
    ("Softmax", 11, {}, {"axis": 2}, 1),
    ("LogSoftmax", 13, {}, {"axis": 2}, 1),
    ("Upsample", 7, {}, {"scales": [1.0, 1.0, 2.0, 3.0], "mode": "nearest"}, 1),
    ("Dropout", 7, {}, {"ratio": 0.3}, 1),
    ("BatchNormalization", 7, {k: np.linspace(0.5, 1.5, 4).astype(np.float32)
                               for k in "sbmv"}, {"spatial": 1}, 1),
]


@pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("op, opset, consts, attrs, n_out", LEGACY,
                         ids=[f"{c[0]}-{c[1]}" for c in LEGACY])
def test_opset_versions_match_onnxruntime(op, opset, consts, attrs, n_out):
    x = X4[:1] if op == "Squeeze" else X4
    got, model = run_node(op, {"x": x}, consts, opset=opset, n_out=n_out, **attrs)
    for g, w in zip(got, run_ort(model, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_opset6_broadcast_attribute():
    # ONNX Runtime has no Mul-6: the old rule (B aligned to A at ``axis``) checked by hand
    w = np.linspace(-1, 1, 4).astype(np.float32)
    (y,), _ = run_node("Mul", {"x": X4}, {"w": w}, opset=6, broadcast=1, axis=1)
    np.testing.assert_array_equal(y, X4 * w[None, :, None, None])


# -- Quantize/Dequantize: bit-exact against tests/npref.py --------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10 ** 6), signed=st.booleans(), per_axis=st.booleans(),
       opset=st.sampled_from([10, 13, 21]))
def test_quantize_linear_matches_npref(seed, signed, per_axis, opset):
    if opset == 10:
        per_axis = False
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 3, 4)) * 4).astype(np.float32)
    x.flat[:4] = [np.nan, np.inf, -np.inf, 0.5]
    scale = rng.uniform(0.01, 0.5, 3 if per_axis else ()).astype(np.float32)
    qt, lo, hi = (np.int8, -128, 127) if signed else (np.uint8, 0, 255)
    zp = rng.integers(lo, hi + 1, scale.shape).astype(qt)
    x.flat[4] = 2.5 * float(scale.flat[0])          # an exact tie: rounds half to even
    attrs = {"axis": 1} if per_axis else {}
    (q,), _ = run_node("QuantizeLinear", {"x": x}, {"s": scale, "z": zp}, opset=opset, **attrs)
    b = (1, 3, 1) if per_axis else ()
    want = npref.quantize(x, scale.reshape(b), zp.astype(np.int64).reshape(b), lo, hi, qt)
    np.testing.assert_array_equal(q, want)
    (d,), _ = run_node("DequantizeLinear", {"q": q}, {"s": scale, "z": zp}, opset=opset,
                       **attrs)
    np.testing.assert_array_equal(d, npref.dequantize(q, scale.reshape(b), zp.reshape(b)))
    assert d.dtype == np.float32


def test_dequantize_int32_bias_and_default_zero_point():
    q = np.array([-(2 ** 31), -5, 0, 7, 2 ** 31 - 1], np.int32)
    s = np.array(0.25, np.float32)
    (d,), _ = run_node("DequantizeLinear", {"q": q}, {"s": s}, opset=13)
    np.testing.assert_array_equal(d, q.astype(np.float32) * np.float32(0.25))
    (u,), _ = run_node("QuantizeLinear", {"x": np.array([-1.0, 300.0], np.float32)},
                       {"s": np.array(1.0, np.float32)})
    assert u.dtype == np.uint8 and u.tolist() == [0, 255]


# -- smaller semantics ---------------------------------------------------------------------------
def test_softmax_before_opset_13_flattens_at_axis():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    (y11,), _ = run_node("Softmax", {"x": x}, opset=11, axis=1)
    flat = x.reshape(2, 12)
    want = np.exp(flat - flat.max(1, keepdims=True))
    want = (want / want.sum(1, keepdims=True)).reshape(2, 3, 4)
    np.testing.assert_allclose(y11, want, rtol=1e-6)
    (y13,), _ = run_node("Softmax", {"x": x}, opset=13, axis=1)
    np.testing.assert_allclose(y13, TF.softmax(torch.from_numpy(x), 1).numpy(), rtol=1e-6)


def test_topk_ties_and_argmax_last_index():
    x = np.array([[3, 1, 3, 2, 3]], np.float32)
    (v, i), _ = run_node("TopK", {"x": x}, {"k": np.array([2], np.int64)}, n_out=2)
    assert v.tolist() == [[3, 3]] and i.tolist() == [[0, 2]]
    (v, i), _ = run_node("TopK", {"x": x}, {"k": np.array([2], np.int64)}, n_out=2, largest=0)
    assert v.tolist() == [[1, 2]] and i.tolist() == [[1, 3]]
    (a,), _ = run_node("ArgMax", {"x": x}, axis=1, select_last_index=1, keepdims=0)
    assert a.tolist() == [4]


def test_float32_stays_float32():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    c = np.ones(3, np.float32)
    for op, consts, attrs in [("LeakyRelu", {}, {"alpha": 0.1}),
                              ("HardSigmoid", {}, {"alpha": 0.3, "beta": 0.2}),
                              ("Elu", {}, {}), ("Gelu", {}, {}), ("Erf", {}, {}),
                              ("BatchNormalization", {"s": c, "b": c, "m": c, "v": c},
                               {"epsilon": 1e-3}),
                              ("LRN", {}, {"size": 3}),
                              ("Resize", {"r": np.array([], np.float32),
                                          "s": np.array([1, 1, 2, 2], np.float32)},
                               {"mode": "linear"})]:
        (y,), _ = run_node(op, {"x": x}, consts, opset=20, **attrs)
        assert y.dtype == np.float32, op


def test_registry_errors():
    with pytest.raises(UnsupportedOpError, match="'NoSuchOp'.*'ai.onnx'.*'n7'"):
        get_op("NoSuchOp", "", 17, "n7")
    with pytest.raises(UnsupportedOpError, match=r"opset 4 is not supported \(qengine handles 5\.\.\)"):
        get_op("Reshape", "", 4, "r")
    with pytest.raises(ModelError, match=r"'c' \(Conv\): expects 2..3 inputs"):
        make_op(Node("c", "Conv", ["x"], ["y"]), {"": 17})
    with pytest.raises(ModelError, match=r"'c' \(Conv\): attribute 'group' must be an integer"):
        make_op(Node("c", "Conv", ["x", "w"], ["y"], {"group": "two"}), {"": 17})
    with pytest.raises(ModelError, match="required input 0 is missing"):
        make_op(Node("a", "Add", ["", "w"], ["y"]), {"": 17})


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(2, 7, 3), (1, 9, 5, 6), (2, 6, 4, 3, 5)])
def test_lrn_on_channels_last_storage_is_the_same_bits(size, shape):
    """LRN sums its window along the last axis when the channels are last in memory (the
    executor's view of NHWC storage) and along axis 1 otherwise: the same operations in the same
    order, so the same bits, and the values of the spec's formula."""
    x = np.random.default_rng(size).normal(0, 2, shape).astype(np.float32)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    view = np.moveaxis(nhwc, -1, 1)                  # channels last in memory
    assert view.strides[1] == 4 and np.array_equal(view, x)
    op = make_op(Node("n", "LRN", ["x"], ["y"], {"size": size, "alpha": 0.02, "beta": 0.75,
                                                   "bias": 1.5}), {"": 17})
    y_nchw, y_view = op.run(x)[0], op.run(view)[0]
    assert y_view.shape == shape and y_view.dtype == np.float32
    np.testing.assert_array_equal(y_view.view(np.int32), y_nchw.view(np.int32))
    # the spec's formula channel by channel in float64 (onnx.reference's LRN loops over the
    # batch axis where it means channels)
    C, lo, hi = shape[1], (size - 1) // 2, size // 2
    x64 = x.astype(np.float64)
    ref = np.stack([x64[:, c] / (1.5 + 0.02 / size * (x64[:, max(0, c - lo):c + hi + 1] ** 2)
                                 .sum(axis=1)) ** 0.75 for c in range(C)], axis=1)
    np.testing.assert_allclose(y_nchw, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_float64_takes_numpy_with_the_same_formula(channels_last):
    """Float32 LRN runs the C kernel (tests/kernels/test_float.py); other float types the numpy
    loop over the taps, in either layout."""
    x = np.random.default_rng(3).normal(0, 2, (2, 6, 4, 5))
    if channels_last:
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    op = make_op(Node("n", "LRN", ["x"], ["y"], {"size": 3, "alpha": 0.02, "beta": 0.6,
                                                   "bias": 1.5}), {"": 17})
    y = op.run(x)[0]
    assert y.dtype == np.float64 and y.shape == x.shape
    ref = np.stack([x[:, c] / (1.5 + 0.02 / 3 * (x[:, max(0, c - 1):c + 2] ** 2).sum(axis=1))
                    ** 0.6 for c in range(6)], axis=1)
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    y32 = op.run(x.astype(np.float32))[0]
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref, rtol=2e-6)


def test_lrn_of_an_empty_batch():
    op = make_op(Node("n", "LRN", ["x"], ["y"], {"size": 3}), {"": 17})
    for dtype in (np.float32, np.float64):
        y = op.run(np.zeros((0, 4, 3, 3), dtype))[0]
        assert y.shape == (0, 4, 3, 3) and y.dtype == dtype
