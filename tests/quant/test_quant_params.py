"""QParams, parameter choice and the affine map (qengine.quant.params) against DESIGN.md,
tests/npref.py and hand-computed values; property-based over bit widths, signs and ranges."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import npref
from qengine.errors import QuantizationError
from qengine.quant import (QParams, dequantize, fake_quantize, int_range, qparams_from_range,
                           quantize)
from qengine.quant import params as P

SETTINGS = settings(max_examples=150, deadline=None)
finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
kinds = st.sampled_from([  # (signed, symmetric, narrow)
    (False, False, None), (True, False, None), (True, True, None), (False, True, None),
    (True, True, False), (False, False, True)])


def _range_qparams(data, bits, kind):
    signed, symmetric, narrow = kind
    lo = data.draw(finite32, "lo")
    hi = data.draw(st.floats(lo, 1e6, allow_nan=False, width=32), "hi")
    return lo, hi, qparams_from_range(lo, hi, bits, signed, symmetric, narrow)


# ---- integer ranges and QParams ----------------------------------------------------------------

@pytest.mark.parametrize("bits", range(2, 9))
def test_int_range_of_every_width(bits):
    assert int_range(bits) == (0, 2 ** bits - 1)
    assert int_range(bits, signed=True) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert int_range(bits, signed=True, narrow=True) == (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1)
    assert int_range(bits, narrow=True) == (1, 2 ** bits - 1)
    assert QParams(1.0, 0, bits=bits).dtype is np.uint8
    assert QParams(1.0, 0, bits=bits, signed=True).dtype is np.int8


@pytest.mark.parametrize("bits", [0, 1, 9, 16, -8, True, 8.0, "8", None])
def test_bits_out_of_range_is_an_error(bits):
    with pytest.raises(QuantizationError, match="bits"):
        qparams_from_range(-1, 1, bits=bits)
    with pytest.raises(QuantizationError, match="bits"):
        QParams(1.0, 0, bits=bits)


@pytest.mark.parametrize("scale, zp, axis, match", [
    (0.0, 0, None, "scale"), (-1.0, 0, None, "scale"), (np.nan, 0, None, "scale"),
    (np.inf, 0, None, "scale"), ([[1.0]], 0, None, "scale"), ([], 0, 0, "empty"),
    (1.0, 256, None, "zero_point"), (1.0, -1, None, "zero_point"), (1.0, 0.5, None, "integer"),
    ([1.0, 2.0], [0, 0, 0], 0, "shape"), ([1.0, 2.0], 0, None, "axis"), (1.0, 0, 0, "axis"),
    ("a", 0, None, "scale"),
])
def test_bad_qparams_are_rejected(scale, zp, axis, match):
    with pytest.raises(QuantizationError, match=match):
        QParams(scale, zp, axis)


def test_qparams_is_frozen_hashable_and_splits_into_channels():
    qp = QParams([0.5, 0.25], 3, axis=1, bits=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        qp.bits = 8
    with pytest.raises(ValueError):
        qp.scale[0] = 1.0                       # read-only arrays
    assert qp.zero_point.dtype == np.int32 and qp.zero_point.tolist() == [3, 3]
    assert qp.scale.dtype == np.float32 and qp.is_per_axis and qp.num_channels == 2
    assert qp == QParams(np.float32([0.5, 0.25]), [3, 3], axis=1, bits=4)
    assert len({qp, QParams([0.5, 0.25], [3, 3], axis=1, bits=4)}) == 1
    assert qp != QParams([0.5, 0.25], 3, axis=0, bits=4)
    c1 = qp.for_channel(1)
    assert c1 == QParams(0.25, 3, bits=4) and not c1.is_per_axis
    with pytest.raises(QuantizationError, match="channel"):
        qp.for_channel(2)


# ---- parameter choice (DESIGN.md) -----------------------------------------------------------

def test_asymmetric_params_by_hand():
    qp = qparams_from_range(-1.0, 3.0)
    assert qp.scale == np.float32(4.0 / 255) and qp.zero_point == 64   # round(63.75)
    qp = qparams_from_range(1.0, 3.0)                  # widened to [0, 3]: 0 stays exact
    assert qp.scale == np.float32(3.0 / 255) and qp.zero_point == 0
    qp = qparams_from_range(-3.0, -1.0)                # widened to [-3, 0]
    assert qp.scale == np.float32(3.0 / 255) and qp.zero_point == 255
    qp = qparams_from_range(-1.0, 3.0, bits=4, signed=True)
    assert qp.scale == np.float32(4.0 / 15) and qp.zero_point == -8 + 4   # round(-8 + 3.75)


def test_symmetric_params_by_hand():
    qp = qparams_from_range(-0.5, 2.0, signed=True, symmetric=True)
    assert (qp.qmin, qp.qmax, qp.narrow) == (-127, 127, True)
    assert qp.zero_point == 0 and qp.scale == np.float32(2.0 / 127) and qp.symmetric
    qp = qparams_from_range(-0.5, 2.0, symmetric=True)            # uint8: zp 128, as ORT/PyTorch
    assert qp.zero_point == 128 and qp.scale == np.float32(4.0 / 255) and qp.symmetric
    qp = qparams_from_range(-0.5, 2.0, signed=True, symmetric=True, narrow=False)
    assert (qp.qmin, qp.zero_point, qp.scale) == (-128, 0, np.float32(4.0 / 255))
    qp = qparams_from_range(-2.0, 1.0, bits=3, signed=True, symmetric=True)
    assert (qp.qmin, qp.qmax, qp.zero_point, qp.scale) == (-3, 3, 0, np.float32(2.0 / 3))


@pytest.mark.parametrize("lo, hi", [(0.0, 0.0), (-0.0, 0.0), (1e-45, 1e-45), (-1e-44, 0.0)])
@pytest.mark.parametrize("signed, symmetric", [(False, False), (True, False), (True, True),
                                               (False, True)])
def test_degenerate_range_gives_scale_one_and_an_exact_zero(lo, hi, signed, symmetric):
    qp = qparams_from_range(lo, hi, signed=signed, symmetric=symmetric)
    assert qp.scale == 1.0
    assert qp.zero_point == (P._mid(qp.qmin, qp.qmax) if symmetric else qp.qmin)
    assert dequantize(quantize(np.float32(0.0), qp), qp) == 0.0


def test_extreme_ranges_give_finite_positive_scales():
    big = float(np.finfo(np.float32).max)
    for lo, hi, kw in [(-big, big, {}), (-big, big, dict(signed=True, symmetric=True)),
                       (-big, big, dict(bits=2)), (1e-30, 2e-30, {})]:
        qp = qparams_from_range(lo, hi, **kw)
        assert np.isfinite(qp.scale) and qp.scale > 0


@pytest.mark.parametrize("lo, hi, kw, match", [
    (np.nan, 1.0, {}, "finite"), (0.0, np.inf, {}, "finite"), (2.0, 1.0, {}, "min > max"),
    ([0.0, 1.0], [1.0], dict(axis=0), "shape"), ([0.0, 1.0], [1.0, 2.0], {}, "axis"),
    (0.0, 1.0, dict(axis=0), "1-D"), ([], [], dict(axis=0), "1-D"), ("a", 1.0, {}, "real"),
])
def test_bad_ranges_are_rejected(lo, hi, kw, match):
    with pytest.raises(QuantizationError, match=match):
        qparams_from_range(lo, hi, **kw)


def test_per_axis_params_are_the_per_tensor_params_of_each_channel():
    rng = np.random.default_rng(3)
    lo, hi = -rng.exponential(size=7).astype(np.float32), rng.exponential(size=7).astype(np.float32)
    for kw in [{}, dict(signed=True, symmetric=True), dict(bits=5, signed=True)]:
        qp = qparams_from_range(lo, hi, axis=1, **kw)
        assert qp.scale.shape == (7,) and qp.axis == 1
        for c in range(7):
            assert qp.for_channel(c) == qparams_from_range(lo[c], hi[c], **kw)


# ---- properties of the affine map ------------------------------------------------------------

@SETTINGS
@given(st.data(), st.integers(2, 8), kinds)
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(data, bits, kind):
    lo, hi, qp = _range_qparams(data, bits, kind)
    if kind[1]:
        a = max(-lo, hi)
        lo, hi = -a, a
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    x = np.concatenate([np.linspace(lo, hi, 8 * 2 ** bits), [lo, hi, 0.0]]).astype(np.float32)
    x = x[(x >= lo) & (x <= hi)]
    err = np.abs(fake_quantize(x, qp).astype(np.float64) - x)
    s = float(qp.scale)
    # s/2 from rounding, plus float32 rounding of x / s, of s itself and of the product
    assert np.all(err <= s / 2 * (1 + 1e-4) + np.abs(x) * 1e-6), (qp, err.max() / s)
    # ... and about half a step is reached (points s/8 apart; degenerate ranges excepted)
    assert err.max() >= 0.4 * s or hi - lo < 2 * s


@SETTINGS
@given(st.data(), st.integers(2, 8), kinds)
def test_zero_is_exact_and_outside_values_clamp(data, bits, kind):
    _, _, qp = _range_qparams(data, bits, kind)
    assert quantize(np.float32(0.0), qp) == qp.zero_point
    assert dequantize(quantize(np.float32([0.0, -0.0]), qp), qp).tolist() == [0.0, 0.0]
    rmin, rmax = qp.representable_range()
    outside = np.float32([rmax * 1.5 + 1, 3e38, np.inf, rmin * 1.5 - 1, -3e38, -np.inf])
    q = quantize(outside, qp)
    assert q.tolist() == [qp.qmax] * 3 + [qp.qmin] * 3


@SETTINGS
@given(st.data(), st.integers(2, 8), kinds)
def test_every_width_uses_exactly_its_integer_range(data, bits, kind):
    lo, hi, qp = _range_qparams(data, bits, kind)
    assume(max(abs(lo), abs(hi)) > 1e-30)
    if kind[1]:
        a = max(-lo, hi)
        lo, hi = -a, a
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    q = quantize(np.linspace(lo, hi, 4 * 2 ** bits).astype(np.float32), qp)
    assert q.dtype == qp.dtype
    assert q.min() == qp.qmin or (kind[1] and q.min() == qp.qmin + 1)   # symmetric uint8: -a -> 1
    assert q.max() == qp.qmax
    assert np.array_equal(np.unique(q), np.arange(int(q.min()), int(q.max()) + 1))  # no gaps
    wild = quantize(np.float32([-1e30, 1e30]), qp)
    assert wild.tolist() == [qp.qmin, qp.qmax]


@SETTINGS
@given(st.data(), st.integers(2, 8), kinds, st.integers(1, 4))
def test_per_axis_equals_per_tensor_slice_by_slice(data, bits, kind, ndim):
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim), "shape"))
    axis = data.draw(st.integers(-ndim, ndim - 1), "axis")
    C = shape[axis]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), "seed"))
    lo = -rng.exponential(size=C).astype(np.float32) * rng.choice([0, 1], size=C)
    hi = rng.exponential(size=C).astype(np.float32)
    signed, symmetric, narrow = kind
    qp = qparams_from_range(lo, hi, bits, signed, symmetric, narrow, axis=axis)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    q, fq = quantize(x, qp), fake_quantize(x, qp)
    for c in range(C):
        sl = np.take(x, c, axis=axis)
        assert np.array_equal(np.take(q, c, axis=axis), quantize(sl, qp.for_channel(c)))
        assert np.array_equal(np.take(fq, c, axis=axis), fake_quantize(sl, qp.for_channel(c)))


@SETTINGS
@given(st.data(), st.integers(2, 8), st.booleans())
def test_bit_exact_with_the_numpy_reference(data, bits, signed):
    """tests/npref.py's quantize / dequantize, including NaN, +-inf and exact .5 ties."""
    qmin, qmax = int_range(bits, signed)
    scale = data.draw(st.floats(2.0 ** -20, 1024.0, width=32), "scale")
    zp = data.draw(st.integers(qmin, qmax), "zp")
    qp = QParams(scale, zp, bits=bits, signed=signed)
    vals = data.draw(st.lists(st.floats(width=32) | st.integers(-300, 300).map(lambda i: i + 0.5),
                              min_size=1, max_size=64), "x")
    x = np.array(vals, dtype=np.float32)
    x[::3] = x[::3] * np.float32(scale)          # make some ties land on exact .5 steps
    want = npref.quantize(x, scale, zp, qmin, qmax, qp.dtype)
    assert np.array_equal(quantize(x, qp), want)
    assert np.array_equal(dequantize(want, qp), npref.dequantize(want, scale, zp))


def test_nan_and_infinities_follow_the_kernels():
    qp = QParams(0.1, 7, bits=4)
    q = quantize(np.float32([np.nan, np.inf, -np.inf, -np.nan]), qp)
    assert q.tolist() == [7, 15, 0, 7]
    assert fake_quantize(np.float32([np.nan]), qp).tolist() == [0.0]


def test_inputs_of_other_dtypes_and_shapes():
    qp = QParams(0.5, 10)
    assert quantize(np.float64(1.0), qp).shape == ()
    assert quantize([1, 2, 3], qp).tolist() == [12, 14, 16]             # ints are converted
    assert quantize(np.zeros((0, 3)), qp).shape == (0, 3)
    for bad in (np.array(["a"]), np.array([1 + 2j]), np.array([True])):
        with pytest.raises(QuantizationError, match="dtype"):
            quantize(bad, qp)
    with pytest.raises(QuantizationError, match="integer"):
        dequantize(np.float32([1.0]), qp)


@pytest.mark.parametrize("shape, axis, match", [
    ((3, 4), 0, "channels"), ((3,), 1, "out of range"), ((), 0, "out of range"),
    ((2, 5), -1, "channels")])
def test_per_axis_shape_mismatch_is_an_error(shape, axis, match):
    qp = QParams([1.0, 2.0], 0, axis=axis)
    with pytest.raises(QuantizationError, match=match):
        quantize(np.zeros(shape, np.float32), qp)
    with pytest.raises(QuantizationError, match=match):
        dequantize(np.zeros(shape, np.uint8), qp)


# ---- the C fast-path seam -----------------------------------------------------------------------

def _rows_reference(x, scale, zp, qmin, qmax, dtype):
    return P._quantize_ref(x, scale[None, :], zp[None, :], qmin, qmax, dtype)


def test_large_arrays_route_through_a_registered_kernel(monkeypatch):
    calls = []

    def spy(x, scale, zp, qmin, qmax):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 2
        assert x.shape[1] == scale.size == zp.size and zp.dtype == np.int32
        calls.append(x.shape)
        return _rows_reference(x, scale, zp, qmin, qmax, np.uint8)

    monkeypatch.setitem(P.QUANTIZE_KERNELS, np.uint8, spy)
    rng = np.random.default_rng(0)
    big = rng.standard_normal((P.FAST_PATH_MIN_SIZE // 8, 8)).astype(np.float32) * 3
    per_t, per_c = QParams(0.05, 100), QParams(np.linspace(0.01, 0.1, 8), 90, axis=-1)
    for qp in (per_t, per_c):
        want = P._quantize_ref(big, P._broadcast(qp.scale, qp.axis and 1, 2),
                               P._broadcast(qp.zero_point, qp.axis and 1, 2), 0, 255, np.uint8)
        assert np.array_equal(quantize(big, qp), want)
    assert calls == [(big.shape[0] * 8, 1), big.shape]
    quantize(big[:4], per_t)                                   # small: numpy
    quantize(big.T.copy(), QParams(np.ones(8), 0, axis=0))     # not the innermost axis: numpy
    quantize(big, QParams(0.1, 0, signed=True))                # no int8 kernel registered
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", sorted(P.QUANTIZE_KERNELS, key=str) or [None])
def test_registered_kernels_are_bit_identical_to_the_reference(dtype):
    if dtype is None:
        pytest.skip("no C quantize kernel registered in this build yet")
    kernel = P.QUANTIZE_KERNELS[dtype]
    signed = dtype is np.int8
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4099, 3)).astype(np.float32) * 50
    x[::97] = np.nan
    x[1::89] = np.inf
    x[2::83] = -np.inf
    x[3::7] = np.rint(x[3::7]) + 0.5                           # ties
    for channels in (1, 3):
        xs = x.reshape(-1, channels)
        qmin, qmax = int_range(8, signed)
        scale = np.float32(rng.uniform(0.1, 2, channels))
        zp = rng.integers(qmin, qmax + 1, channels).astype(np.int32)
        assert np.array_equal(kernel(xs, scale, zp, qmin, qmax),
                              _rows_reference(xs, scale, zp, qmin, qmax, dtype))
