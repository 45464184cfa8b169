"""Element-wise uint8 kernels: add / mul with requantization (full, per-channel and scalar b,
numpy broadcasting), strided requantize, table lookup, quantize, dequantize -- bit-exact
against numpy statements of the formulas in qe_kernels.h on every ISA path."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npref
from qengine import _kernels as K

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
F32 = np.float32


def np_add(a, b, a_zp, a_mult, b_zp, b_mult, y_zp, qmin, qmax):
    v = ((a.astype(np.int32) - a_zp).astype(F32) * F32(a_mult) +
         (b.astype(np.int32) - b_zp).astype(F32) * F32(b_mult))
    v = np.clip(v, F32(qmin - y_zp), F32(qmax - y_zp))
    return (np.rint(v).astype(np.int32) + y_zp).astype(np.uint8)


def np_mul(a, b, a_zp, b_zp, mult, y_zp, qmin, qmax):
    return npref.requantize((a.astype(np.int32) - a_zp) * (b.astype(np.int32) - b_zp), mult,
                            y_zp, qmin, qmax)


SHAPES = [((3, 70), (3, 70)), ((5, 33), (33,)), ((2, 7, 3), ()), ((4, 17), (1, 17)),
          ((1, 17), (4, 17)), ((3, 4, 5), (3, 1, 5)), ((40000,), (40000,)), ((9, 1), (9, 1)),
          ((2, 3, 129), (1, 1, 129)), ((15,), (1,))]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shapes=st.sampled_from(SHAPES),
       zps=st.tuples(*[st.sampled_from([0, 255, 128, 3])] * 3),
       mexp=st.tuples(st.floats(-6, 2), st.floats(-6, 2)), clamp=st.booleans(),
       saturate=st.booleans())
def test_add_and_mul_match_numpy(isa, seed, shapes, zps, mexp, clamp, saturate):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shapes[0], dtype=np.uint8)
    b = rng.integers(0, 256, shapes[1], dtype=np.uint8)
    if saturate:
        a[...], b[...] = 255, 0
    a_zp, b_zp, y_zp = zps
    am, bm = (float(F32(10.0 ** e)) for e in mexp)
    qmin, qmax = (20, 230) if clamp else (0, 255)
    got = K.add_u8(a, b, a_zp, am, b_zp, bm, y_zp, qmin=qmin, qmax=qmax)
    np.testing.assert_array_equal(got, np_add(a, b, a_zp, am, b_zp, bm, y_zp, qmin, qmax))
    got = K.mul_u8(a, b, a_zp, b_zp, am, y_zp, qmin=qmin, qmax=qmax)
    np.testing.assert_array_equal(got, np_mul(a, b, a_zp, b_zp, am, y_zp, qmin, qmax))


@pytest.mark.parametrize("cols", [1, 15, 64, 200, 1024, 2100])
def test_mul_and_add_by_a_row(isa, threads, cols):
    """Rows times or plus one row b (squeeze-excite's per-channel scale, a per-channel bias):
    the VNNI path converts b's share to float once per chunk of 1024 columns -- b - b_zp for
    Mul, whose float product must be the integer product exactly, (b - b_zp) * b_mult for Add,
    the rounded term of the element-wise sum -- at every tail length, several chunks, zero
    points at both ends, clamped or not, in place."""
    rng = np.random.default_rng(cols)
    for a_zp, b_zp, y_zp, qmin, qmax in [(0, 255, 3, 0, 255), (255, 0, 128, 0, 255),
                                         (128, 128, 0, 20, 230)]:
        a = rng.integers(0, 256, (37, cols), dtype=np.uint8)
        b = rng.integers(0, 256, (1, cols), dtype=np.uint8)
        a[0], b[0, : cols // 2] = 255, 0     # the largest products of both signs
        want = np_mul(a, b, a_zp, b_zp, 1.3e-4, y_zp, qmin, qmax)
        np.testing.assert_array_equal(
            K.mul_u8(a, b, a_zp, b_zp, 1.3e-4, y_zp, qmin=qmin, qmax=qmax), want)
        want_add = np_add(a, b, a_zp, 0.021, b_zp, 0.37, y_zp, qmin, qmax)
        np.testing.assert_array_equal(
            K.add_u8(a, b, a_zp, 0.021, b_zp, 0.37, y_zp, qmin=qmin, qmax=qmax), want_add)
        y = K.mul_u8(a, b, a_zp, b_zp, 1.3e-4, y_zp, qmin=qmin, qmax=qmax, y=a.copy())
        np.testing.assert_array_equal(y, want)
        y = K.add_u8(a, b, a_zp, 0.021, b_zp, 0.37, y_zp, qmin=qmin, qmax=qmax, y=a)
        assert y is a
        np.testing.assert_array_equal(a, want_add)


@pytest.mark.parametrize("cols", [1, 3, 32, 33, 63, 64, 100, 1000])
def test_a_row_over_many_short_rows(isa, threads, cols):
    """Add and Mul of one row b (a per-channel constant) over many pixels of few channels:
    several rows per kernel call with b repeated (binary_tiled_rows), the rows left over
    alone -- the same bits as numpy at every width, in place too."""
    rng = np.random.default_rng(cols)
    rows = 3 * (1024 // cols) + 5          # whole tiles and a remainder
    a = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    b = rng.integers(0, 256, (1, cols), dtype=np.uint8)
    a[0], b[0, : (cols + 1) // 2] = 255, 0
    want = np_add(a, b, 7, 0.021, 250, 0.013, 5, 0, 255)
    np.testing.assert_array_equal(K.add_u8(a, b, 7, 0.021, 250, 0.013, 5), want)
    np.testing.assert_array_equal(K.mul_u8(a, b, 7, 250, 1.3e-4, 5),
                                  np_mul(a, b, 7, 250, 1.3e-4, 5, 0, 255))
    y = K.add_u8(a, b, 7, 0.021, 250, 0.013, 5, y=a)
    assert y is a
    np.testing.assert_array_equal(a, want)


@pytest.mark.parametrize("mult", [3.0e4, 1.0e6, 1.0e9])
def test_add_and_mul_with_huge_multipliers(isa, mult):
    """Multipliers whose products pass 2^31 (out of cvtps2dq's range): the AVX-512 kernels then
    keep the float clamp at qmax (binary_setup's nohi is off), and every value saturates as in
    numpy -- element-wise, broadcast and by a row of scales."""
    rng = np.random.default_rng(int(mult) % 1000)
    a = rng.integers(0, 256, (5, 100), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 100), dtype=np.uint8)
    row = rng.integers(0, 256, (1, 100), dtype=np.uint8)
    a[0], b[0] = 255, 0
    got = K.add_u8(a, b, 3, mult, 250, mult, 7)
    np.testing.assert_array_equal(got, np_add(a, b, 3, mult, 250, mult, 7, 0, 255))
    np.testing.assert_array_equal(K.mul_u8(a, b, 3, 250, mult, 7),
                                  np_mul(a, b, 3, 250, mult, 7, 0, 255))
    np.testing.assert_array_equal(K.mul_u8(a, row, 3, 250, mult, 7),
                                  np_mul(a, row, 3, 250, mult, 7, 0, 255))
    np.testing.assert_array_equal(K.add_u8(a, row, 3, mult, 250, mult, 7),
                                  np_add(a, row, 3, mult, 250, mult, 7, 0, 255))


def test_in_place_add(isa):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (7, 37), dtype=np.uint8)
    b = rng.integers(0, 256, (7, 37), dtype=np.uint8)
    want = np_add(a, b, 1, 0.5, 2, 0.25, 3, 0, 255)
    y = K.add_u8(a, b, 1, 0.5, 2, 0.25, 3, y=a)
    assert y is a
    np.testing.assert_array_equal(a, want)


def test_overlapping_outputs_raise():
    buf = np.zeros(64, np.uint8)
    with pytest.raises(ValueError):
        K.add_u8(buf[:32], buf[32:], 0, 1.0, 0, 1.0, 0, y=buf[16:48])
    with pytest.raises(ValueError):  # a reversed view: its data pointer is at the end
        K.add_u8(buf[31::-1], buf[32:], 0, 1.0, 0, 1.0, 0, y=buf[8:40])
    with pytest.raises(ValueError):
        K.lut_u8(buf[:32], np.zeros(256, np.uint8), y=buf[1:33])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 40), cols=st.integers(1, 150),
       pad=st.integers(0, 20), x_zp=st.sampled_from([0, 255, 64]), y_zp=st.sampled_from([0, 255, 9]),
       mexp=st.floats(-6, 2), clamp=st.booleans())
def test_requantize_into_strided_rows(isa, seed, rows, cols, pad, x_zp, y_zp, mexp, clamp):
    rng = np.random.default_rng(seed)
    big_x = rng.integers(0, 256, (rows, cols + pad), dtype=np.uint8)
    x = big_x[:, pad:]
    big_y = np.full((rows, cols + 2 * pad), 17, np.uint8)
    y = big_y[:, pad:pad + cols]
    mult = float(F32(10.0 ** mexp))
    qmin, qmax = (5, 250) if clamp else (0, 255)
    K.requantize_u8(x, x_zp, mult, y_zp, qmin=qmin, qmax=qmax, y=y)
    want = npref.requantize(x.astype(np.int32) - x_zp, mult, y_zp, qmin, qmax)
    np.testing.assert_array_equal(y, want)
    assert (big_y[:, :pad] == 17).all() and (big_y[:, pad + cols:] == 17).all()


@pytest.mark.parametrize("no_vbmi", [False, True])
@pytest.mark.parametrize("rows, cols, ldx, ldy", [(6400, 16, 16, 48), (3000, 3, 7, 5),
                                                  (700, 70, 96, 70), (1, 1000, 1000, 1000)])
def test_requantize_many_narrow_strided_rows(isa, threads, no_vbmi, rows, cols, ldx, ldy):
    """A Concat's slices: many rows of a few bytes into a wider output. Each task looks its
    rows up in one call (the table set up once); every row, every tail, untouched gaps."""
    rng = np.random.default_rng(rows)
    big_x = rng.integers(0, 256, (rows, ldx), dtype=np.uint8)
    big_y = np.full((rows, ldy), 17, np.uint8)
    K._lut_disable_vbmi(no_vbmi)
    try:
        K.requantize_u8(big_x[:, :cols], 3, 0.37, 11, qmin=2, qmax=240, y=big_y[:, :cols])
    finally:
        K._lut_disable_vbmi(False)
    want = npref.requantize(big_x[:, :cols].astype(np.int32) - 3, 0.37, 11, 2, 240)
    np.testing.assert_array_equal(big_y[:, :cols], want)
    assert (big_y[:, cols:] == 17).all()


@pytest.mark.parametrize("no_vbmi", [False, True])
@pytest.mark.parametrize("n", [1, 31, 32, 63, 64, 65, 256 * 7 + 5, 100003])
def test_lut(isa, n, no_vbmi):
    rng = np.random.default_rng(n)
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    x = (np.arange(n) * 7 % 256).astype(np.uint8)  # every index once n >= 256
    K._lut_disable_vbmi(no_vbmi)
    try:
        np.testing.assert_array_equal(K.lut_u8(x, table), table[x])
        y = x.copy()
        K.lut_u8(y, table, y=y)  # in place
        np.testing.assert_array_equal(y, table[x])
    finally:
        K._lut_disable_vbmi(False)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 63, 256 * 7 + 5, 100003])
def test_lut_to_float(isa, threads, n):
    """The float table of a lookup region at a float output: every bit of the entry, NaN
    payloads and signed zeros included, on every path (AVX-512: permutes of the table's
    vector pairs and blends, 16 values and a masked tail) and 1 and 2 threads (100003 values:
    several tasks)."""
    rng = np.random.default_rng(n)
    bits = rng.integers(0, 2 ** 32, 256, dtype=np.uint64).astype(np.uint32)
    bits[:4] = [0x7FC00001, 0xFF800000, 0x80000000, 0x7F800000]  # NaN payload, -inf, -0, inf
    table = bits.view(np.float32)
    x = rng.integers(0, 256, n, dtype=np.uint8)
    y = K.lut_u8_f32(x.reshape(1, -1), table)
    assert y.dtype == np.float32 and y.shape == (1, n)
    np.testing.assert_array_equal(y.view(np.uint32)[0], bits[x])


def _lut_f32_onto_its_input():
    buf = np.zeros(48, np.uint8)      # x: its first 12 bytes; y: all 48, as 12 floats
    K.lut_u8_f32(buf[:12], np.zeros(256, np.float32), y=buf.view(np.float32))


SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.5, 1.5, 2.5, -0.5, -2.5, 1e30, -1e30, 3.4e38,
                     1e-40, -0.0], F32)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 20),
       channels=st.sampled_from([1, 3, 8, 15, 16, 17, 40]), per_channel=st.booleans(),
       signed=st.booleans(), sexp=st.floats(-6, 2), clamp=st.booleans())
def test_quantize_and_dequantize_match_numpy(isa, seed, rows, channels, per_channel, signed,
                                             sexp, clamp):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, channels)) * 10.0 ** rng.uniform(-3, 3)).astype(F32)
    x.flat[:min(x.size, SPECIALS.size)] = SPECIALS[:x.size]
    dt = np.int8 if signed else np.uint8
    info = np.iinfo(dt)
    k = channels if per_channel else 1
    scale = (10.0 ** rng.uniform(sexp - 1, sexp, k)).astype(F32)
    zp = rng.integers(info.min, info.max + 1, k)
    if k == 1:
        scale, zp = scale[0], int(zp[0])
    qmin, qmax = (info.min + 5, info.max - 5) if clamp else (info.min, info.max)
    q = K.quantize(x, scale, zp, dtype=dt, qmin=qmin, qmax=qmax)
    with np.errstate(over="ignore", invalid="ignore"):  # x / scale overflows to inf: clamped
        want = npref.quantize(x, scale, zp, qmin, qmax, dt)
    np.testing.assert_array_equal(q, want)
    d = K.dequantize(q, scale, zp)
    np.testing.assert_array_equal(d.view(np.int32), npref.dequantize(q, scale, zp).view(np.int32))
    xi = rng.integers(-2**31, 2**31, (rows, channels)).astype(np.int32)
    d = K.dequantize(xi, scale)
    np.testing.assert_array_equal(d.view(np.int32), npref.dequantize(xi, scale).view(np.int32))


@pytest.mark.parametrize("signed", [False, True])
def test_quantize_near_half_integers_is_the_division(isa, signed):
    """QuantizeLinear divides by the scale, and x * (1 / scale) is not the same: inputs on and
    a few ulp around (k + 0.5) * scale, for many scales, several of which the product rounds
    the other way, give numpy's x / scale rounded half to even on every path."""
    rng = np.random.default_rng(5)
    dt = np.int8 if signed else np.uint8
    info = np.iinfo(dt)
    product_differs = 0
    for scale in (10.0 ** rng.uniform(-4, 1, 60)).astype(F32):
        zp = int(rng.integers(info.min, info.max + 1))
        k = np.arange(info.min - zp - 2, info.max - zp + 2, dtype=np.float64) + 0.5
        x = (k * np.float64(scale)).astype(F32)
        x = np.concatenate([np.nextafter(x, np.float32(np.inf) * s) if s else x
                            for s in (0, 1, -1)] + [x * F32(1 + 2.0 ** -23 * d)
                                                    for d in (2, -2, 3, -3)]).astype(F32)
        with np.errstate(over="ignore"):
            want = npref.quantize(x, scale, zp, info.min, info.max, dt)
            via_product = npref.quantize(x * (F32(1) / scale), F32(1), zp, info.min,
                                         info.max, dt)
        product_differs += int(np.count_nonzero(via_product != want))
        np.testing.assert_array_equal(K.quantize(x, scale, zp, dtype=dt), want)
    assert product_differs > 0      # the inputs do reach the cases the division must settle


def test_large_calls_identical_on_one_and_two_threads(isa):
    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, (300, 1000), dtype=np.uint8)
    b = rng.integers(0, 256, (1000,), dtype=np.uint8)
    xf = rng.standard_normal(300001).astype(F32)
    before, outs = K.get_num_threads(), []
    try:
        for t in (1, 2):
            K.set_num_threads(t)
            outs.append((K.add_u8(a, b, 3, 0.3, 4, 0.6, 5), K.mul_u8(a, a, 3, 4, 0.001, 5),
                         K.add_u8(a, np.uint8(9), 3, 0.3, 4, 0.6, 5),
                         K.quantize(xf, 0.01, 128), K.lut_u8(a, np.arange(256)[::-1].astype(np.uint8))))
    finally:
        K.set_num_threads(before)
    for x1, x2 in zip(*outs):
        np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(outs[0][0], np_add(a, b, 3, 0.3, 4, 0.6, 5, 0, 255))


@pytest.mark.parametrize("call, err", [
    (lambda: K.add_u8(np.zeros(3, np.int8), np.zeros(3, np.uint8), 0, 1, 0, 1, 0), TypeError),
    (lambda: K.add_u8(np.zeros(3, np.uint8), np.zeros(4, np.uint8), 0, 1, 0, 1, 0), ValueError),
    (lambda: K.add_u8(np.zeros(3, np.uint8), np.zeros(3, np.uint8), 256, 1, 0, 1, 0), ValueError),
    (lambda: K.add_u8(np.zeros(3, np.uint8), np.zeros(3, np.uint8), 0, 0.0, 0, 1, 0), ValueError),
    (lambda: K.add_u8(np.zeros(3, np.uint8), np.zeros(3, np.uint8), 0, 1, 0, float("nan"), 0), ValueError),
    (lambda: K.mul_u8(np.zeros(3, np.uint8), np.zeros(3, np.uint8), 0, 0, -1.0, 0), ValueError),
    (lambda: K.mul_u8(np.zeros(3, np.uint8), np.zeros(3, np.uint8), 0, 0, 1.0, 0, qmin=9, qmax=8), ValueError),
    (lambda: K.add_u8(np.zeros(4, np.uint8), np.zeros(4, np.uint8), 0, 1, 0, 1, 0,
                      y=np.zeros(5, np.uint8)), ValueError),
    (lambda: K.requantize_u8(np.zeros((2, 3), np.int8), 0, 1.0, 0), TypeError),
    (lambda: K.requantize_u8(np.zeros(3, np.uint8), 0, 1.0, 0), ValueError),
    (lambda: K.requantize_u8(np.zeros((2, 3), np.uint8), 0, float("inf"), 0), ValueError),
    (lambda: K.requantize_u8(np.zeros((2, 3), np.uint8), 0, 1.0, 0, y=np.zeros((2, 4), np.uint8)), ValueError),
    (lambda: K.lut_u8(np.zeros(3, np.uint8), np.zeros(255, np.uint8)), ValueError),
    (lambda: K.lut_u8(np.zeros(3, np.uint8), np.zeros(256, np.int32)), ValueError),
    (lambda: K.lut_u8_f32(np.zeros(3, np.uint8), np.zeros(256, np.float64)), ValueError),
    (lambda: K.lut_u8_f32(np.zeros(3, np.uint8), np.zeros(255, np.float32)), ValueError),
    (lambda: K.lut_u8_f32(np.zeros(3, np.int8), np.zeros(256, np.float32)), TypeError),
    (lambda: K.lut_u8_f32(np.zeros(3, np.uint8), np.zeros(256, np.float32),
                          y=np.zeros(3, np.uint8)), TypeError),
    (lambda: _lut_f32_onto_its_input(), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float64), 1.0, 0), TypeError),
    (lambda: K.quantize(np.zeros(3, np.float32), 0.0, 0), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float32), np.float32(np.nan), 0), ValueError),
    (lambda: K.quantize(np.zeros((2, 3), np.float32), np.ones(2, np.float32), 0), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float32), 1.0, 256), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float32), 1.0, -1, dtype=np.uint8), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float32), 1.0, 0, dtype=np.int16), TypeError),
    (lambda: K.quantize(np.zeros(3, np.float32), 1.0, 0, qmin=3, qmax=2), ValueError),
    (lambda: K.quantize(np.zeros(3, np.float32), 1.0, 0.5), TypeError),
    (lambda: K.dequantize(np.zeros(3, np.float32), 1.0), TypeError),
    (lambda: K.dequantize(np.zeros(3, np.int32), 1.0, 3), ValueError),
    (lambda: K.dequantize(np.zeros(3, np.int8), 1.0, 128), ValueError),
    (lambda: K.dequantize(np.zeros(3, np.uint8), -1.0, 0), ValueError),
])
def test_bad_calls_raise(call, err):
    with pytest.raises(err):
        call()
