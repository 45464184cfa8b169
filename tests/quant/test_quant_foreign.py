"""qengine.quant against foreign definitions: onnxruntime.quantization's parameter choice and
bias quantization, ONNX's QuantizeLinear (onnx.reference), the float32 requantization multiplier
-- and the origin tutorial's formula, whose flaws docs/quantization.md names."""
from __future__ import annotations

import numpy as np
import pytest

from qengine.errors import QuantizationError
from qengine.quant import (QParams, dequantize, fake_quantize, qparams_from_range, quantize,
                           quantize_bias, requant_multiplier)

ort_qu = pytest.importorskip("onnxruntime.quantization.quant_utils")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _random_ranges(n, seed):
    """Ranges of many magnitudes: both signs, one-signed, tiny, huge, degenerate."""
    rng = np.random.default_rng(seed)
    mag = 10.0 ** rng.uniform(-8, 8, (n, 1))
    r = np.sort(rng.uniform(-1, 1, (n, 2)) * mag, axis=1).astype(np.float32)
    r[: n // 10] = np.sort(np.abs(r[: n // 10]), axis=1)              # min > 0
    r[n // 10: n // 5] = np.sort(-np.abs(r[n // 10: n // 5]), axis=1)  # max < 0
    r[-3:] = [[0, 0], [1.5, 1.5], [-2, -2]]
    return r


# (qmin, qmax, symmetric, our keyword arguments)
ORT_CASES = {
    "uint8 asymmetric": (0, 255, False, {}),
    "int8 asymmetric": (-128, 127, False, dict(signed=True)),
    "int8 symmetric": (-127, 127, True, dict(signed=True, symmetric=True)),
    "uint8 symmetric": (0, 255, True, dict(symmetric=True)),
    "uint4 asymmetric": (0, 15, False, dict(bits=4)),
}


@pytest.mark.parametrize("case", ORT_CASES)
def test_params_equal_onnxruntime_compute_scale_zp(case):
    qmin, qmax, symmetric, kw = ORT_CASES[case]
    qdtype = np.uint8 if qmin >= 0 else np.int8
    for lo, hi in _random_ranges(400, seed=len(case)):
        zp, scale = ort_qu.compute_scale_zp(lo, hi, np.array(qmin, qdtype), np.array(qmax, qdtype),
                                            symmetric=symmetric)
        qp = qparams_from_range(lo, hi, **kw)
        if lo == hi == 0:
            # ORT: zp 0 for every degenerate range; ours is the zero point of the range [0, 0]
            # (qmin, or the middle when symmetric, so symmetric zero points stay uniform)
            assert qp.scale == scale == 1.0 and qp.zero_point == (128 if symmetric and qmin == 0
                                                                  else 0 if symmetric else qmin)
            continue
        assert qp.scale == np.float32(scale) and qp.zero_point == int(zp), (lo, hi)


def _quantize_linear(x, scale, zp, axis=None):
    dt = TensorProto.UINT8 if zp.dtype == np.uint8 else TensorProto.INT8
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"],
                            **({} if axis is None else {"axis": axis}))
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
                      helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
                      helper.make_tensor_value_info("z", dt, None)],
        [helper.make_tensor_value_info("y", dt, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(model).run(None, {"x": x, "s": scale, "z": zp})[0]


@pytest.mark.parametrize("signed", [False, True])
def test_quantize_equals_onnx_quantize_linear(signed):
    rng = np.random.default_rng(7)
    dt = np.int8 if signed else np.uint8
    x = (rng.standard_normal((6, 5, 4)) * 40).astype(np.float32)
    x[0, 0] = np.rint(x[0, 0]) + 0.5                          # exact ties at scale 1
    for axis in (None, 0, 1, 2):
        n = 1 if axis is None else x.shape[axis]
        lo, hi = -rng.exponential(20, n).astype(np.float32), rng.exponential(20, n).astype(np.float32)
        qp = qparams_from_range(lo[0] if axis is None else lo, hi[0] if axis is None else hi,
                                signed=signed, axis=axis)
        if axis is None:                                       # scale 1: the ties stay ties
            qp = QParams(1.0, qp.zero_point, signed=signed)
        want = _quantize_linear(x, qp.scale, qp.zero_point.astype(dt), axis)
        assert np.array_equal(quantize(x, qp), want)


def test_quantize_bias_equals_onnxruntime_formula():
    rng = np.random.default_rng(5)
    bias = (rng.standard_normal(64) * 3).astype(np.float32)
    s_in = np.float32(0.0123)
    s_w = rng.uniform(1e-4, 1e-2, 64).astype(np.float32)
    q, qp = quantize_bias(bias, s_in, s_w)
    scale = s_in * s_w                                             # float32, as ORT
    want = np.clip(np.round(bias.astype(np.float64) / scale.astype(np.float64)),
                   -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    assert q.dtype == np.int32 and np.array_equal(q, want)
    assert np.array_equal(qp.scale, scale) and qp.axis == 0 and qp.bits == 32 and qp.signed
    assert not qp.zero_point.any() and qp.dtype is np.int32
    # per-tensor weight scale, QParams arguments, and the round trip through dequantize
    q1, qp1 = quantize_bias(bias, QParams(s_in, 128), QParams(np.float32(0.002), 0, signed=True))
    assert qp1.axis is None and qp1.scale == s_in * np.float32(0.002)
    assert np.all(np.abs(dequantize(q1, qp1) - bias) <= qp1.scale / 2 * 1.0001)
    assert np.array_equal(quantize(bias, qp1), q1)       # quantize() handles int32 params too


def test_quantize_bias_clamps_to_int32_with_a_warning_and_checks_shapes():
    with pytest.warns(RuntimeWarning, match="exceed int32"):
        q, _ = quantize_bias(np.float32([1e6, -1e6, 1.0, 2.5 * 2 ** -28]), 2 ** -14, 2 ** -14)
    assert q.tolist() == [2 ** 31 - 1, -2 ** 31, 2 ** 28, 2]          # 2.5 -> 2: half to even
    for bias, s_in, s_w, match in [
        (np.zeros(3), 1.0, np.ones(2), "one entry per"), (np.zeros((2, 2)), 1.0, 1.0, "1-D"),
        (np.float32([np.nan]), 1.0, 1.0, "NaN"), (np.zeros(1), 0.0, 1.0, "input_scale"),
        (np.zeros(1), 1.0, [-1.0], "weight_scales"), (np.zeros(1), 1e-30, 1e-30, "underflow"),
        (np.zeros(1), [1.0, 2.0], 1.0, "input_scale")]:
        with pytest.raises(QuantizationError, match=match):
            quantize_bias(bias, s_in, s_w)


def test_requant_multiplier_is_float32_in_order():
    rng = np.random.default_rng(11)
    s_in, s_out = np.float32(0.0173), np.float32(0.0419)
    s_w = rng.uniform(1e-4, 1e-1, 4096).astype(np.float32)
    m = requant_multiplier(s_in, s_w, s_out)
    step = np.float32(s_in * s_w) / s_out                             # two float32 roundings
    exact = np.float32(np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out))
    assert m.dtype == np.float32 and m.shape == (4096,) and np.array_equal(m, step)
    # the order matters: a single rounding of the exact value differs for some channels, and
    # only the two-step value matches the kernels and ONNX Runtime
    assert np.any(m != exact)
    assert requant_multiplier(QParams(s_in, 0), QParams(s_w, 0, axis=0), QParams(s_out, 3)).shape == (4096,)
    with pytest.raises(QuantizationError, match="overflows or underflows"):
        requant_multiplier(1e30, 1e30, 1e-30)
    with pytest.raises(QuantizationError, match="output_scale"):
        requant_multiplier(1.0, 1.0, 0.0)


# ---- the origin tutorial's formula ----------------------------------------------------------

def tutorial_quantize(x, lo, hi, bits):
    """Q(x) = floor((x - min) / (max - min) * (2^b - 1)) + 1, as the tutorial writes it."""
    return np.floor((x - lo) / (hi - lo) * (2 ** bits - 1)) + 1


def tutorial_dequantize(q, lo, hi, bits):
    """Its natural inverse: min + (Q - 1) * (max - min) / (2^b - 1)."""
    return lo + (q - 1) * (hi - lo) / (2 ** bits - 1)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_tutorial_formula_has_the_flaws_the_docs_name(bits):
    rng = np.random.default_rng(bits)
    lo, hi = -0.3, 1.0
    x = rng.uniform(lo, hi, 100_000)
    step = (hi - lo) / (2 ** bits - 1)
    # 1. the +1 overflows: x = max gives 2^b, one past a b-bit unsigned code (uint8: 256)
    assert tutorial_quantize(np.float64(hi), lo, hi, bits) == 2 ** bits
    # 2. floor: errors up to a whole step and twice ours on average
    t_err = np.abs(tutorial_dequantize(tutorial_quantize(x, lo, hi, bits), lo, hi, bits) - x)
    qp = qparams_from_range(lo, hi, bits=bits)
    our_err = np.abs(fake_quantize(x, qp) - x)
    assert t_err.max() > 0.95 * step and our_err.max() <= qp.scale / 2 * 1.0001
    assert 1.8 < t_err.mean() / our_err.mean() < 2.2
    # 3. 0.0 is not exact, so zero padding would not stay zero; ours always is
    assert tutorial_dequantize(tutorial_quantize(0.0, lo, hi, bits), lo, hi, bits) != 0.0
    assert fake_quantize(np.float32(0.0), qp) == 0.0
    ranges = np.sort(rng.uniform(-5, 5, (1000, 2)), axis=1)
    zeros = [tutorial_dequantize(tutorial_quantize(0.0, a, b, bits), a, b, bits)
             for a, b in ranges if a < 0 < b]
    assert np.mean(np.array(zeros) != 0.0) > 0.9
