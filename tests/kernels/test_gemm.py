"""The int8 GEMM (qengine._kernels.gemm_u8s8) against numpy, on every kernel path of this CPU.

Reference: tests/npref.py (the normative semantics). Large shapes use an exact float64 matmul
for the accumulators: every product and partial sum is an integer below 2^53.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npref
from qengine import _kernels

MAX_K = _kernels.MAX_K
# the `isa` fixture selects a path once per test; every example runs on it
FIXTURE_OK = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def acc_ref(a, a_zp, b, b_zp=None, bias=None):
    """int32 accumulators; exact float64 matmul (npref.gemm_acc is int64 and slow at size)."""
    if a.size * b.shape[1] < 2_000_000:
        return npref.gemm_acc(a, a_zp, b, b_zp, bias)
    bi = b.astype(np.float64) - (0 if b_zp is None else np.asarray(b_zp, np.float64))
    acc = (a.astype(np.float64) - a_zp) @ bi
    acc = acc.astype(np.int64) + (0 if bias is None else np.asarray(bias, np.int64))
    return ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)


def expected(a, a_zp, b, kind, b_zp=None, bias=None, scale=None, zero_point=0, qmin=0,
             qmax=255, fbias=None):
    acc = acc_ref(a, a_zp, b, b_zp, bias)
    return npref.output_stage(acc, kind, scale, zero_point, qmin, qmax, fbias)


def run(packed, a, a_zp, kind, **kw):
    if kind != "u8":
        for k in ("zero_point", "qmin", "qmax"):
            kw.pop(k, None)
    return _kernels.gemm_u8s8(packed, a, a_zp, out=kind, **kw)


def fill(rng, shape, dtype, style):
    """Test values: uniform, or the extremes that overflow narrow intermediates."""
    info = np.iinfo(dtype)
    if style == "max":
        return np.full(shape, info.max, dtype)
    if style == "min":
        return np.full(shape, info.min, dtype)
    if style == "extremes":
        return rng.choice(np.array([info.min, info.max], dtype), size=shape)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)


# ---- every path, property-based -------------------------------------------------------------

@settings(max_examples=120, **FIXTURE_OK)
@given(
    M=st.integers(1, 70), N=st.integers(1, 70), K=st.integers(1, 70),
    a_zp=st.one_of(st.sampled_from([0, 255]), st.integers(0, 255)),
    kind=st.sampled_from(["u8", "i32", "f32"]),
    per_channel=st.booleans(), use_bias=st.booleans(), use_bzp=st.booleans(),
    b_is_u8=st.booleans(), a_style=st.sampled_from(["uniform", "uniform", "max", "extremes"]),
    b_style=st.sampled_from(["uniform", "uniform", "max", "min", "extremes"]),
    log_scale=st.floats(-6, 2), pad_a=st.integers(0, 9), pad_c=st.integers(0, 5),
    clamp=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_matches_numpy(isa, M, N, K, a_zp, kind, per_channel, use_bias, use_bzp, b_is_u8,
                       a_style, b_style, log_scale, pad_a, pad_c, clamp, seed):
    rng = np.random.default_rng(seed)
    a_full = fill(rng, (M, K + pad_a), np.uint8, a_style)
    a = a_full[:, :K]  # row stride lda = K + pad_a
    b_stored = fill(rng, (K, N), np.uint8 if b_is_u8 else np.int8, b_style)
    b = b_stored.astype(np.int64) - (128 if b_is_u8 else 0)  # what the kernel multiplies
    b_zp = rng.integers(-128, 128, N).astype(np.int32) if use_bzp else None
    bias = rng.integers(-2**31, 2**31, N, dtype=np.int64).astype(np.int32) if use_bias else None
    n_scale = N if per_channel else 1
    scale = (10.0 ** rng.uniform(log_scale - 1, log_scale, n_scale)).astype(np.float32)
    zero_point = int(rng.integers(0, 256))
    qmin, qmax = (sorted(int(v) for v in rng.integers(0, 256, 2)) if clamp else (0, 255))
    fbias = rng.normal(size=N).astype(np.float32) if kind == "f32" and use_bias else None
    kw = dict(bias=bias, b_zp=b_zp, zero_point=zero_point, qmin=qmin, qmax=qmax)
    if kind != "i32":
        kw.update(scale=scale, fbias=fbias)
    c_full = np.zeros((M, N + pad_c), np.dtype({"u8": np.uint8, "i32": np.int32,
                                                "f32": np.float32}[kind]))
    c = c_full[:, :N]  # row stride ldc = N + pad_c

    packed = _kernels.GemmPacked(b_stored, b_is_u8=b_is_u8)
    assert packed.isa == isa
    got = run(packed, a, a_zp, kind, c=c, **kw)
    want = expected(a, a_zp, b, kind, **kw)
    assert got is c
    np.testing.assert_array_equal(got, want)
    assert not c_full[:, N:].any(), "wrote past the last column"


@pytest.mark.parametrize("M,N,K", [(257, 131, 1000), (67, 600, 1000), (13, 1000, 4099),
                                   (1, 3000, 333), (300, 64, 576), (6, 64, 4), (2, 17, 1)])
def test_block_boundaries(isa, M, N, K):
    """Shapes that cross row strips, panels, n-blocks and leave a partial k group."""
    rng = np.random.default_rng(M * N + K)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    scale = (10.0 ** rng.uniform(-6, -3, N)).astype(np.float32)
    bias = rng.integers(-10**6, 10**6, N).astype(np.int32)
    packed = _kernels.GemmPacked(b)
    for kind, kw in [("i32", dict(bias=bias)), ("u8", dict(scale=scale, zero_point=128)),
                     ("f32", dict(scale=scale, b_zp=rng.integers(-128, 128, N)))]:
        np.testing.assert_array_equal(run(packed, a, 77, kind, **kw),
                                      expected(a, 77, b, kind, **kw), err_msg=kind)


@pytest.mark.parametrize("M", [19, 20, 21, 25, 26, 27, 28, 29, 31, 49, 50, 51, 52, 397])
def test_remainder_rows_of_every_height(isa, M):
    """Every M mod 6 past a few strips: where the VNNI driver covers a remainder of 1-3 rows
    with 5-row strips (49 = 4 x 6 + 5 x 5), each row must still land in its own place, with
    its own row term (b_zp), whether the kernel's k loop is the asm one (K >= 64) or not."""
    rng = np.random.default_rng(M)
    for K, N in [(300, 130), (40, 64)]:
        a_full = rng.integers(0, 256, (M, K + 5), dtype=np.uint8)
        a = a_full[:, :K]
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        scale = (10.0 ** rng.uniform(-6, -4, N)).astype(np.float32)
        bias = rng.integers(-10**6, 10**6, N).astype(np.int32)
        packed = _kernels.GemmPacked(b)
        for kind, kw in [("u8", dict(scale=scale, zero_point=3, bias=bias)),
                         ("i32", dict(b_zp=rng.integers(-128, 128, N), bias=bias))]:
            c_full = np.full((M, N + 3), 7, np.uint8 if kind == "u8" else np.int32)
            got = run(packed, a, 200, kind, c=c_full[:, :N], **kw)
            np.testing.assert_array_equal(got, expected(a, 200, b, kind, **kw),
                                          err_msg=f"{kind} K={K}")
            assert (c_full[:, N:] == 7).all(), "wrote past the last column"


@pytest.mark.parametrize("K", [64, 65, 66, 67, 147, 579])
@pytest.mark.parametrize("variant", ["fused", "qmax", "big_scale", "partial_panel", "b_zp"])
def test_uint8_pipeline_of_every_tile_kind(isa, K, variant):
    """The VNNI 6 x 64 and 5 x 64 tiles (M = 31: one strip of 6 rows, five of 5) requantize in
    their asm block when the output is uint8 with qmax 255, every scale < 1, symmetric weights
    and a whole panel stored ('fused'), a partial last k group included (K = 147: a 7x7 stem
    on 3 channels); each other variant leaves that path for the C pipeline. All must give the
    reference's bytes, saturation at both ends too."""
    rng = np.random.default_rng(K)
    M, N = 31, 100 if variant == "partial_panel" else 128
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    lo, hi = (-8, -2) if variant == "big_scale" else (-6, -3)
    scale = (10.0 ** rng.uniform(lo, hi, N)).astype(np.float32)
    scale[:4] = [0.999, 1e-9, 0.5, 2.0**-20]   # saturating, vanishing and exact-half scales
    if variant == "big_scale":
        scale[4] = 1.5
    bias = rng.integers(-10**6, 10**6, N).astype(np.int32)
    kw = dict(scale=scale, zero_point=100, bias=bias, qmin=5,
              qmax=250 if variant == "qmax" else 255)
    if variant == "b_zp":
        kw["b_zp"] = rng.integers(-128, 128, N)
    packed = _kernels.GemmPacked(b)
    got = run(packed, a, 90, "u8", **kw)
    want = expected(a, 90, b, "u8", **kw)
    np.testing.assert_array_equal(got, want)
    assert got.min() == 5 and got.max() == (250 if variant == "qmax" else 255)


@pytest.mark.parametrize("N", [16, 32, 80, 96])
@pytest.mark.parametrize("variant", ["plain", "qmax", "b_zp"])
def test_uint8_rows_of_narrow_panels_share_packs(isa, N, variant):
    """A panel of 16 columns (N = 16, or the last of 80) packs 4 rows in one chain on the VNNI
    path and stores each row from its lane; 32 columns (N = 32, 96) do not: every strip height
    (M = 1..13 leaves strips of 1 to 6 rows), the float clamp at qmax or not, the per-row term
    of weight zero points -- the reference's bytes, no byte past column N."""
    rng = np.random.default_rng(N)
    K = 37
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    scale = (10.0 ** rng.uniform(-5, -3, N)).astype(np.float32)
    scale[:2] = [0.999, 2.0**-20]
    bias = rng.integers(-10**5, 10**5, N).astype(np.int32)
    kw = dict(scale=scale, zero_point=100, bias=bias, qmin=3,
              qmax=250 if variant == "qmax" else 255)
    if variant == "b_zp":
        kw["b_zp"] = rng.integers(-128, 128, N)
    packed = _kernels.GemmPacked(b)
    for M in range(1, 14):
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        c_full = np.full((M, N + 5), 7, np.uint8)
        got = run(packed, a, 90, "u8", c=c_full[:, :N], **kw)
        np.testing.assert_array_equal(got, expected(a, 90, b, "u8", **kw), err_msg=f"M={M}")
        assert (c_full[:, N:] == 7).all(), "wrote past the last column"


# ---- exactness at the extremes --------------------------------------------------------------

@pytest.mark.parametrize("a_val,b_val,a_zp,b_zp", [
    (255, 127, 0, None),    # the pair sum 2*255*127 overflows int16 (vpmaddubsw would saturate)
    (255, -128, 0, None),   # the most negative product
    (0, 127, 255, None),    # a - a_zp = -255
    (255, -128, 0, 127),    # (a - a_zp) * (b - b_zp) = 255 * -255: the widest product
])
@pytest.mark.parametrize("K", [1, 2, 3, 4, 1001, MAX_K])
def test_saturating_inputs_are_exact(isa, a_val, b_val, a_zp, b_zp, K):
    M, N = 3, 40
    a = np.full((M, K), a_val, np.uint8)
    b = np.full((K, N), b_val, np.int8)
    packed = _kernels.GemmPacked(b)
    got = run(packed, a, a_zp, "i32", b_zp=b_zp)
    want = (a_val - a_zp) * (b_val - (b_zp or 0)) * K
    assert -2**31 <= want < 2**31
    assert (got == want).all(), (got.min(), got.max(), want)


@pytest.mark.parametrize("scale", [0.9999999, 0.5, 3e-4, 1.0, 1.5])
@pytest.mark.parametrize("qmax", [255, 254])
def test_uint8_top_clamp_with_and_without_the_float_min(isa, scale, qmax):
    """qmax 255 with every scale below 1 leaves the top clamp to the packs (hi_free); scale 1
    or above, or a lower qmax, keeps the float min. Sums from -2^31 to 2^31 - 1 (extreme
    bias) and saturating products, at every zero point's edge."""
    rng = np.random.default_rng(int(scale * 1e7) + qmax)
    M, N, K = 13, 70, 301
    a = rng.choice(np.array([0, 255], np.uint8), (M, K))
    b = rng.choice(np.array([-128, 127], np.int8), (K, N))
    bias = rng.integers(-2**31, 2**31, N, dtype=np.int64).astype(np.int32)
    bias[:4] = [2**31 - 1, -2**31, 2**31 - 1 - 255 * 128 * K, 0]
    scales = np.full(N, scale, np.float32)
    scales[5] = np.float32(scale) / 2
    packed = _kernels.GemmPacked(b)
    for zp in (0, 77, 255):
        got = run(packed, a, 9, "u8", bias=bias, scale=scales, zero_point=zp, qmax=qmax)
        want = expected(a, 9, b, "u8", bias=bias, scale=scales, zero_point=zp, qmax=qmax)
        np.testing.assert_array_equal(got, want)


def test_k_above_the_bound_is_rejected():
    with pytest.raises(ValueError, match="exceeds"):
        _kernels.GemmPacked(np.zeros((MAX_K + 1, 2), np.int8))


def test_mixed_extremes_at_max_k(isa):
    """Alternating signs: partial sums swing far before the total comes back in range."""
    rng = np.random.default_rng(7)
    K = MAX_K
    a = rng.choice(np.array([0, 255], np.uint8), size=(5, K))
    b = rng.choice(np.array([-128, 127], np.int8), size=(K, 33))
    packed = _kernels.GemmPacked(b)
    np.testing.assert_array_equal(run(packed, a, 0, "i32"), expected(a, 0, b, "i32"))


# ---- threads, ISA memory, the serial entry ----------------------------------------------------

@pytest.mark.parametrize("M,N,K", [(300, 200, 300), (1, 2048, 512), (7, 1000, 64), (999, 16, 40)])
def test_thread_count_does_not_change_results(isa, threads, M, N, K):
    rng = np.random.default_rng(M + N + K)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    scale = (10.0 ** rng.uniform(-5, -2, N)).astype(np.float32)
    packed = _kernels.GemmPacked(b)
    got = run(packed, a, 3, "u8", scale=scale, zero_point=100)
    np.testing.assert_array_equal(got, expected(a, 3, b, "u8", scale=scale, zero_point=100))


# the register tiles of the x86 paths (qgemm_ref.c, qgemm_avx2.c, qgemm_avx512vnni.c)
X86_TILES = {"ref": (4, 16, 0), "avx2": (6, 16, 2), "avx512vnni": (6, 64, 4)}


@pytest.mark.parametrize("isa", _kernels.available_isas())
def test_packed_object_reports_its_tile(isa):
    tile = _kernels.GemmPacked(np.ones((5, 3), np.int8), isa=isa).tile
    assert all(isinstance(v, int) for v in tile) and tile[0] > 0 and tile[1] > 0
    if isa in X86_TILES:
        assert tile == X86_TILES[isa]


def test_packed_object_keeps_its_isa():
    isas = _kernels.available_isas()
    packed_isa = "avx2" if "avx2" in isas else isas[-1]
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (9, 50), dtype=np.uint8)
    b = rng.integers(-128, 128, (50, 20), dtype=np.int8)
    before = _kernels.get_isa()
    try:
        _kernels.set_isa(packed_isa)
        packed = _kernels.GemmPacked(b)
        ref_layout = _kernels.GemmPacked(b, isa="ref")
        _kernels.set_isa("ref")
        assert packed.isa == packed_isa and ref_layout.isa == "ref"
        if packed_isa == "avx2":  # int16 panels: the avx2 layout, not the reference's
            assert packed.nbytes > ref_layout.nbytes + b.size // 2
        np.testing.assert_array_equal(run(packed, a, 5, "i32"), expected(a, 5, b, "i32"))
    finally:
        _kernels.set_isa(before)


@pytest.mark.parametrize("n_begin,n_end", [(0, 1), (5, 70), (63, 65), (64, 128), (100, 150)])
def test_serial_entry_writes_only_its_columns(isa, n_begin, n_end):
    """qe_gemm_u8s8_serial, as the convolution driver calls it: any column range."""
    rng = np.random.default_rng(n_begin)
    M, N, K = 11, 150, 37
    a_full = rng.integers(0, 256, (M, K + 3), dtype=np.uint8)
    a = a_full[:, :K]
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    scale = (10.0 ** rng.uniform(-4, -2, N)).astype(np.float32)
    b_zp = rng.integers(-128, 128, N)
    packed = _kernels.GemmPacked(b)
    c = np.full((M, N), 7, np.uint8)
    _kernels._gemm_u8s8_serial(packed, a, 9, n_begin, n_end, out="u8", scale=scale, b_zp=b_zp,
                               zero_point=3, c=c)
    want = expected(a, 9, b, "u8", scale=scale, b_zp=b_zp, zero_point=3)
    np.testing.assert_array_equal(c[:, n_begin:n_end], want[:, n_begin:n_end])
    assert (c[:, :n_begin] == 7).all() and (c[:, n_end:] == 7).all()


def test_b_views_pack_like_copies(isa):
    """Packing reads B through its strides: transposed, reversed and sliced views."""
    rng = np.random.default_rng(3)
    base = rng.integers(-128, 128, (70, 66), dtype=np.int8)
    for b in (base[:33, :20], base.T[:33, :20], base[::-1][:33, ::-2], base[1::2, 3:50]):
        a = rng.integers(0, 256, (5, b.shape[0]), dtype=np.uint8)
        got = run(_kernels.GemmPacked(b), a, 1, "i32")
        np.testing.assert_array_equal(got, run(_kernels.GemmPacked(b.copy()), a, 1, "i32"))
        np.testing.assert_array_equal(got, expected(a, 1, b, "i32"))


def test_zero_rows_and_scalar_arguments(isa):
    b = np.ones((4, 3), np.int8)
    packed = _kernels.GemmPacked(b)
    assert run(packed, np.zeros((0, 4), np.uint8), 0, "i32").shape == (0, 3)
    a = np.full((2, 4), 10, np.uint8)
    got = _kernels.gemm_u8s8(packed, a, np.uint8(2), out="f32", scale=np.float64(0.5), b_zp=-1)
    np.testing.assert_array_equal(got, np.full((2, 3), 0.5 * 8 * 2 * 4, np.float32))


# ---- every bad call raises before C runs ------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    b = rng.integers(-128, 128, (8, 5), dtype=np.int8)
    return _kernels.GemmPacked(b), rng.integers(0, 256, (3, 8), dtype=np.uint8)


BAD_CALLS = [
    (TypeError, dict(a=np.zeros((3, 8), np.int8))),
    (TypeError, dict(a=np.zeros((3, 8), np.float32))),
    (TypeError, dict(a=[[1] * 8] * 3)),
    (ValueError, dict(a=np.zeros((3, 8, 1), np.uint8))),
    (ValueError, dict(a=np.zeros(8, np.uint8))),
    (ValueError, dict(a=np.zeros((3, 7), np.uint8))),
    (ValueError, dict(a_zp=-1)), (ValueError, dict(a_zp=256)), (TypeError, dict(a_zp=1.5)),
    (ValueError, dict(bias=np.zeros(4, np.int32))),
    (ValueError, dict(bias=np.full(5, 2**40))),
    (ValueError, dict(scale=np.ones(4, np.float32))),
    (ValueError, dict(scale=np.float32(np.nan))),
    (ValueError, dict(scale=-1.0)),
    (ValueError, dict(scale=np.array([1, 1, np.inf, 1, 1], np.float32))),
    (ValueError, dict(scale=None)),
    (ValueError, dict(zero_point=256)), (ValueError, dict(zero_point=-1)),
    (ValueError, dict(qmin=10, qmax=9)), (ValueError, dict(qmax=300)),
    (ValueError, dict(b_zp=128)), (ValueError, dict(b_zp=np.array([0, 0, -129, 0, 0]))),
    (ValueError, dict(b_zp=np.zeros(3))), (TypeError, dict(b_zp=np.zeros(5, np.float32))),
    (ValueError, dict(out="u16")),
    (ValueError, dict(fbias=np.zeros(5, np.float32))),
    (ValueError, dict(out="i32", scale=1.0)),
    (ValueError, dict(c=np.zeros((3, 5), np.uint8)[::-1])),
    (ValueError, dict(c=np.zeros((3, 6), np.uint8))),
    (ValueError, dict(c=np.zeros((3, 10), np.uint8)[:, ::2])),
    (TypeError, dict(c=np.zeros((3, 5), np.int32))),
    (TypeError, dict(c=[[0] * 5] * 3)),
]


@pytest.mark.parametrize("exc,change", BAD_CALLS, ids=lambda v: repr(v)[:60])
def test_bad_calls_raise(small, exc, change):
    packed, a = small
    kw = dict(a=a, a_zp=0, out="u8", scale=np.float32(0.1))
    kw.update(change)
    args = (packed, kw.pop("a"), kw.pop("a_zp"))
    with pytest.raises(exc):
        _kernels.gemm_u8s8(*args, **kw)


def test_read_only_output_is_rejected(small):
    packed, a = small
    c = np.zeros((3, 5), np.int32)
    c.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _kernels.gemm_u8s8(packed, a, 0, out="i32", c=c)


@pytest.mark.parametrize("exc,b,kw", [
    (TypeError, np.zeros((4, 4), np.uint8), {}),
    (TypeError, np.zeros((4, 4), np.int8), dict(b_is_u8=True)),
    (TypeError, np.zeros((4, 4), np.int8), dict(b_is_u8="yes")),
    (ValueError, np.zeros((0, 4), np.int8), {}),
    (ValueError, np.zeros((4, 0), np.int8), {}),
    (ValueError, np.zeros(4, np.int8), {}),
    (ValueError, np.zeros((4, 4), np.int8), dict(isa="sse9")),
])
def test_bad_packing_raises(exc, b, kw):
    with pytest.raises(exc):
        _kernels.GemmPacked(b, **kw)


def test_gemm_needs_a_packed_object():
    with pytest.raises(TypeError):
        _kernels.gemm_u8s8(None, np.zeros((1, 1), np.uint8), 0, out="i32")
    with pytest.raises(TypeError):
        _kernels.gemm_u8s8(np.zeros((1, 1), np.int8), np.zeros((1, 1), np.uint8), 0, out="i32")


def test_serial_entry_rejects_bad_ranges(small):
    packed, a = small
    for lo, hi in [(-1, 2), (2, 2), (3, 6), (4, 1)]:
        with pytest.raises(ValueError, match="n_begin"):
            _kernels._gemm_u8s8_serial(packed, a, 0, lo, hi, out="i32")


# ---- batched MatMul of two uint8 activations (attention) ------------------------------------

@settings(max_examples=60, **FIXTURE_OK)
@given(batch=st.integers(1, 5), M=st.integers(1, 40), N=st.integers(1, 70),
       K=st.integers(1, 70), bcast=st.sampled_from(["none", "a", "b"]),
       a_zp=st.integers(0, 255), b_zp=st.sampled_from([0, 128, 255, 77]),
       kind=st.sampled_from(["u8", "u8", "f32", "i32"]), seed=st.integers(0, 2**32 - 1))
def test_activation_matmul_matches_numpy(isa, threads, batch, M, N, K, bcast, a_zp, b_zp, kind,
                                         seed):
    """Each batch matrix packs its B at run time (thread-count independent split: whole
    matrices when there are enough, else one threaded GEMM each); a stride of 0 repeats one
    matrix; B's zero point 128 is the symmetric case the kernel runs without b_zp."""
    from steps import run_step_slots
    rng = np.random.default_rng(seed)
    na, nb = (1 if bcast == "a" else batch), (1 if bcast == "b" else batch)
    a = rng.integers(0, 256, (na, M, K), dtype=np.uint8)
    b = rng.integers(0, 256, (nb, K, N), dtype=np.uint8)
    kw = {} if kind == "i32" else dict(scale=np.float32(10.0 ** rng.uniform(-5, -1)))
    if kind == "u8":
        kw.update(zero_point=int(rng.integers(0, 256)), qmin=3, qmax=250)
    dt = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}[kind]
    c = np.zeros((batch, M, N), dt)
    step = _kernels.matmul_u8u8_step("mm", batch, M, K, N, (0, 0), 0 if na == 1 else M * K,
                                     (1, 0), 0 if nb == 1 else K * N, (2, 0), a_zp, b_zp,
                                     out=kind, **kw)
    run_step_slots(step, a, b, c)
    for i in range(batch):
        want = expected(a[i % na], a_zp, b[i % nb].astype(np.int64), kind,
                        b_zp=np.full(N, b_zp, np.int32), **kw)
        np.testing.assert_array_equal(c[i], want)


@settings(max_examples=60, **FIXTURE_OK)
@given(batch=st.integers(1, 5), M=st.integers(1, 30), N=st.integers(1, 70),
       K=st.integers(1, 70), b_trans=st.booleans(), interleaved_c=st.booleans(),
       a_zp=st.integers(0, 255), b_zp=st.sampled_from([0, 128, 255, 77]),
       kind=st.sampled_from(["u8", "f32", "i32"]), seed=st.integers(0, 2**32 - 1))
def test_activation_matmul_strided_operands(isa, threads, batch, M, N, K, b_trans,
                                            interleaved_c, a_zp, b_zp, kind, seed):
    """Operands read in place from permuted tensors, as attention lays them out: A as
    [M, batch, K] (heads interleaved in each row), B as [K, batch, N] or transposed as
    [N, batch, K] (a key matrix before its Transpose), C as [M, batch, N] or stacked matrices
    with padded rows; the result is the contiguous MatMul's."""
    from steps import run_step_slots
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (M, batch, K), dtype=np.uint8)
    b = rng.integers(0, 256, (N, batch, K) if b_trans else (K, batch, N), dtype=np.uint8)
    kw = {} if kind == "i32" else dict(scale=np.float32(10.0 ** rng.uniform(-5, -1)))
    if kind == "u8":
        kw.update(zero_point=int(rng.integers(0, 256)), qmin=3, qmax=250)
    dt = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}[kind]
    if interleaved_c:
        c = np.zeros((M, batch, N), dt)
        c_kw = dict(ldc=batch * N, c_stride=N)
    else:
        c = np.full((batch, M, N + 3), 7, dt)            # 3 padding columns stay untouched
        c_kw = dict(ldc=N + 3, c_stride=M * (N + 3))
    step = _kernels.matmul_u8u8_step("mm", batch, M, K, N, (0, 0), K, (1, 0),
                                     K if b_trans else N, (2, 0), a_zp, b_zp, out=kind,
                                     lda=batch * K, ldb=batch * (K if b_trans else N),
                                     b_trans=b_trans, **c_kw, **kw)
    run_step_slots(step, a, b, c)
    for i in range(batch):
        bi = b[:, i, :].T if b_trans else b[:, i, :]
        want = expected(np.ascontiguousarray(a[:, i, :]), a_zp, bi.astype(np.int64), kind,
                        b_zp=np.full(N, b_zp, np.int32), **kw)
        got = c[:, i, :] if interleaved_c else c[i, :, :N]
        np.testing.assert_array_equal(got, want)
    if not interleaved_c:
        assert (c[:, :, N:] == 7).all()


def test_activation_matmul_bad_steps_raise():
    with pytest.raises(ValueError, match="row strides"):
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 0,
                                  scale=np.float32(1), lda=3)
    with pytest.raises(ValueError, match="row strides"):   # transposed B: rows of K
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 0,
                                  scale=np.float32(1), ldb=3, b_trans=True)
    with pytest.raises(ValueError, match=">= 0"):
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), -12, (1, 0), 20, (2, 0), 0, 0,
                                  scale=np.float32(1))
    with pytest.raises(ValueError, match="overlap"):      # interleaved rows that collide
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 0,
                                  scale=np.float32(1), ldc=9, c_stride=5)
    with pytest.raises(ValueError, match="b_zp"):
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 256,
                                  scale=np.float32(1))
    with pytest.raises(ValueError, match="one output scale"):
        _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 0,
                                  scale=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="exceeds"):
        _kernels.matmul_u8u8_step("mm", 1, 1, _kernels.MAX_K + 1, 1, (0, 0), 0, (1, 0), 0,
                                  (2, 0), 0, 0, scale=np.float32(1))
    step = _kernels.matmul_u8u8_step("mm", 2, 3, 4, 5, (0, 0), 12, (1, 0), 20, (2, 0), 0, 0,
                                     scale=np.float32(1))
    with pytest.raises(ValueError, match="outside"):  # A's slot smaller than 2 matrices
        _kernels.Program([step], [10, 40, 30])
