"""NHWC int8 convolution (qengine._kernels.conv_u8s8): bit-exact against the numpy statement
in npkern.py on every ISA path, for every method (dwconv, gemm_1x1, gemm_im2col); the
depthwise kernels' own cases are in test_dwconv.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npkern
from convcases import SETTINGS, assert_same, conv_case, run_both
from qengine import _kernels as K


@SETTINGS
@given(case=conv_case())
def test_conv_matches_numpy(isa, case):
    p, got, want = run_both(*case)
    assert p.isa == isa
    assert_same(got, want)


@st.composite
def interior_case(draw):
    """Convolutions whose interior strips the VNNI path reads in place (one group, whole
    64-column panels and a narrower last one -- 16 to 48 columns, or a masked part of one --,
    kernel rows of a multiple of 4 bytes), with borders, leftovers, odd strides, dilated rows,
    and the cases that must fall back (dilated columns, b_zp)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cin = draw(st.sampled_from([3, 4, 8, 12, 16, 20, 64]))
    cout = draw(st.sampled_from([16, 32, 48, 20, 64, 80, 100, 128, 192]))
    kh, kw = draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 3, 4, 5, 7]))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.sampled_from([1, 1, 1, 2]))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h_min = max(1, dh * (kh - 1) + 1 - pads[0] - pads[2])
    w_min = max(1, dw * (kw - 1) + 1 - pads[1] - pads[3])
    h, w = draw(st.integers(h_min, h_min + 8)), draw(st.integers(w_min, w_min + 40))
    n = draw(st.integers(1, 3))
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, kh, kw, cin), dtype=np.int8)
    w_zp = rng.integers(-128, 128, cout) if draw(st.integers(0, 5)) == 0 else None
    out = draw(st.sampled_from(["u8", "u8", "i32", "f32"]))
    kw_out = dict(out=out, bias=rng.integers(-2**20, 2**20, cout, dtype=np.int32))
    if out != "i32":
        kw_out["scale"] = (10.0 ** rng.uniform(-5, -2, cout)).astype(np.float32)
    if out == "u8":
        kw_out["zero_point"] = int(rng.integers(0, 256))
    geom = dict(strides=(sh, sw), dilations=(dh, dw), pads=pads)
    return x, int(rng.integers(0, 256)), wt, w_zp, geom, kw_out


@SETTINGS
@given(case=interior_case(), into_slice=st.booleans())
def test_interior_read_in_place_matches_numpy(isa, threads, case, into_slice):
    x, x_zp, wt, w_zp, geom, kw_out = case
    y = None
    if into_slice:       # output rows further apart than the channels (a Concat's slice)
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = geom["strides"], geom["dilations"], geom["pads"]
        oh = K.conv_output_size(x.shape[1], wt.shape[1], sh, dh, pt, pb)
        ow = K.conv_output_size(x.shape[2], wt.shape[2], sw, dw, pl, pr)
        dt = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}[kw_out["out"]]
        y = np.zeros((x.shape[0], oh, ow, wt.shape[0] + 32), dt)[..., 16:16 + wt.shape[0]]
    p, got, want = run_both(x, x_zp, wt, w_zp, geom, kw_out, y=y)
    assert_same(got, want)


@pytest.mark.parametrize("n, h, w, cin, cout, stride", [
    (1, 14, 14, 256, 192, 1), (1, 14, 14, 256, 320, 2), (1, 9, 20, 256, 128, 1),
    (1, 7, 7, 256, 256, 1), (4, 7, 7, 512, 256, 1)])
@pytest.mark.parametrize("out", ["u8", "i32"])
def test_interior_and_border_rows_over_several_blocks_of_b(isa, threads, n, h, w, cin, cout,
                                                           stride, out):
    """Late-layer shapes: K >= 2304 puts each 64-column panel of B in an n-block of its own,
    so in-place strips and the border rows (im2col) take turns in every block; each kind must
    see every block (a pass that skipped a block for either leaves columns unwritten). 4 x 7 x 7
    with K = 4608 (M = 196) makes 3 row blocks, 4 on 2 threads (whole rounds)."""
    rng = np.random.default_rng(n * 10000 + h * 1000 + cout + stride)
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, 3, 3, cin), dtype=np.int8)
    kw_out = dict(out=out, bias=rng.integers(-2**20, 2**20, cout, dtype=np.int32))
    if out == "u8":
        kw_out.update(scale=(10.0 ** rng.uniform(-6, -4, cout)).astype(np.float32), zero_point=9)
    geom = dict(strides=(stride, stride), dilations=(1, 1), pads=(1, 1, 1, 1))
    p, got, want = run_both(x, 5, wt, None, geom, kw_out)
    assert p.method == "gemm_im2col"
    assert_same(got, want)


@pytest.mark.parametrize("k, pad, h, w", [(7, 3, 31, 29), (7, 3, 8, 8), (7, 0, 13, 7),
                                          (3, 1, 30, 33), (3, 0, 5, 17), (3, 1, 2, 2)])
@pytest.mark.parametrize("out", ["u8", "i32"])
def test_stems_on_three_channels(isa, threads, k, pad, h, w, out):
    """7x7 and 3x3 stride-2 stems on 3 channels: their interior rows are copied by fixed-size
    copies with the kernel rows unrolled (im2col_interior), the windows whose last copy would
    read past the input by exact ones, the borders by im2col_border; batch 2, so a copy may
    also run into the next image. (The 7x7 maps of 8 or more output rows take column strips
    instead, as in test_column_strips.)"""
    rng = np.random.default_rng(k * 1000 + h * 10 + w)
    x = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    wt = rng.integers(-128, 128, (64, k, k, 3), dtype=np.int8)
    kw_out = dict(out=out, bias=rng.integers(-2**16, 2**16, 64, dtype=np.int32))
    if out == "u8":
        kw_out.update(scale=(10.0 ** rng.uniform(-4, -2, 64)).astype(np.float32), zero_point=4)
    geom = dict(strides=(2, 2), dilations=(1, 1), pads=(pad,) * 4)
    p, got, want = run_both(x, 11, wt, None, geom, kw_out)
    assert p.method == "gemm_im2col"
    assert_same(got, want)


@pytest.mark.parametrize("cin, k, strides, dil_w, pads, h, w", [
    (3, (7, 7), (2, 2), 1, (3, 3, 3, 3), 33, 29),   # ResNet's stem
    (3, (5, 5), (2, 1), 1, (2, 0, 1, 3), 21, 12),   # asymmetric pads and strides
    (8, (3, 3), (1, 1), 2, (4, 0, 5, 2), 6, 11),    # dilated taps; padding rows > the kernel
    (4, (4, 8), (1, 3), 1, (0, 7, 0, 7), 13, 5),    # windows wider than the input
])
@pytest.mark.parametrize("out, w_zp", [("u8", False), ("u8", True), ("i32", False),
                                       ("f32", True)])
def test_column_strips(isa, threads, cin, k, strides, dil_w, pads, h, w, out, w_zp):
    """Short kernel rows (kernel_w * C <= 32 bytes, K >= 64, >= 8 output rows) run one GEMM per
    output column over its strip of input rows, rows overlapping (conv_colstrip.c): the strip's
    padding rows and columns, copies that would read past the input (the last column of the
    last image), outputs out_w pixels apart into a slice of a wider tensor, a fused table, and
    3 images over 4 or 8 tasks (task ranges cross images)."""
    rng = np.random.default_rng(cin * 1000 + k[0] * 100 + h)
    x = rng.integers(0, 256, (3, h, w, cin), dtype=np.uint8)
    cout = 40
    wt = rng.integers(-128, 128, (cout, *k, cin), dtype=np.int8)
    zp = rng.integers(-128, 128, cout) if w_zp else None
    kw_out = dict(out=out, bias=rng.integers(-2**16, 2**16, cout, dtype=np.int32))
    if out != "i32":
        kw_out["scale"] = (10.0 ** rng.uniform(-4, -2, cout)).astype(np.float32)
    if out == "u8":
        kw_out.update(zero_point=30, qmin=10, qmax=250)
    geom = dict(strides=strides, dilations=(1, dil_w), pads=pads)
    oh = K.conv_output_size(h, k[0], strides[0], 1, pads[0], pads[2])
    ow = K.conv_output_size(w, k[1], strides[1], dil_w, pads[1], pads[3])
    assert oh >= 8 and k[1] * cin <= 32 and k[0] * k[1] * cin >= 64
    dt = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}[out]
    big = np.full((3, oh, ow, cout + 9), 77, dt)
    p, got, want = run_both(x, 201, wt, zp, geom, kw_out, y=big[..., 4:4 + cout])
    assert p.method == "gemm_im2col"
    assert_same(got, want)
    assert (big[..., :4] == 77).all() and (big[..., 4 + cout:] == 77).all()
    if out == "u8":
        table = rng.permutation(256).astype(np.uint8)
        big[...] = 77
        fused = K.conv_u8s8(p, x, 201, w_zp=zp, lut=table, y=big[..., 4:4 + cout], **kw_out)
        np.testing.assert_array_equal(fused, table[want])
        assert (big[..., :4] == 77).all() and (big[..., 4 + cout:] == 77).all()
        fused = K.conv_u8s8(p, x, 201, w_zp=zp, lut=table, **kw_out)  # pixels abut
        np.testing.assert_array_equal(fused, table[want])


@pytest.mark.parametrize("k, strides, pads, cout, pool", [
    ((7, 7), (2, 2), (3, 3, 3, 3), 64, dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))),
    ((5, 5), (2, 1), (2, 0, 1, 3), 40, dict(kernel=(3, 2), strides=(2, 2), pads=(1, 0, 1, 1),
                                            ceil_mode=True)),
    ((7, 7), (2, 2), (3, 3, 3, 3), 72, dict(kernel=(2, 2), strides=(3, 3), pads=(0, 0, 0, 0))),
    ((4, 8), (1, 1), (1, 2, 0, 3), 130, dict(kernel=(2, 4), strides=(1, 2), pads=(1, 2, 0, 1),
                                             ceil_mode=True)),
    ((7, 7), (2, 2), (3, 3, 3, 3), 20, dict(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1))),
])
@pytest.mark.parametrize("lut, w_zp, into_slice", [(False, False, False), (True, True, True)])
def test_max_pool_fused_into_column_strips(isa, threads, k, strides, pads, cout, pool, lut,
                                           w_zp, into_slice):
    """conv_maxpool_u8 equals maxpool_u8(conv_u8s8()) bit for bit: overlapping windows
    (columns shared by neighbouring tasks), gaps (stride > kernel), ceil_mode windows that
    overhang, padding on every side, channel counts off the vector widths (20, 40, 72, 130),
    a fused table, weight zero points, into a channel slice; 3 images over 1 or 2 tasks (a
    task range crosses an image)."""
    rng = np.random.default_rng(cout + k[0] + len(pool))
    cin = 3 if k[1] > 4 else 4
    x = rng.integers(0, 256, (3, 29, 23, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, *k, cin), dtype=np.int8)
    p = K.ConvPacked(wt, strides=strides, pads=pads)
    assert K.conv_maxpool_supported(p, 29, 23)
    kw = dict(bias=rng.integers(-2**16, 2**16, cout, dtype=np.int32),
              scale=(10.0 ** rng.uniform(-4, -2, cout)).astype(np.float32), zero_point=7,
              qmin=3, qmax=250, w_zp=rng.integers(-128, 128, cout) if w_zp else None)
    table = rng.permutation(256).astype(np.uint8) if lut else None
    conv = K.conv_u8s8(p, x, 13, lut=table, **kw)
    want = K.maxpool_u8(conv, **pool)
    y = None
    if into_slice:
        big = np.full((*want.shape[:3], cout + 9), 77, np.uint8)
        y = big[..., 4:4 + cout]
    got = K.conv_maxpool_u8(p, x, 13, lut=table, y=y, **pool, **kw)
    assert_same(got, want)
    if into_slice:
        assert (big[..., :4] == 77).all() and (big[..., 4 + cout:] == 77).all()


def test_fused_max_pool_refuses_what_it_cannot_run():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (1, 16, 16, 64), dtype=np.uint8)
    p = K.ConvPacked(rng.integers(-128, 128, (32, 3, 3, 64), dtype=np.int8), pads=1)
    assert not K.conv_maxpool_supported(p, 16, 16)     # read in place, not by column strips
    with pytest.raises(ValueError, match="column strips"):
        K.conv_maxpool_u8(p, x, 0, (3, 3), strides=2, scale=0.01)
    stem = K.ConvPacked(rng.integers(-128, 128, (32, 7, 7, 3), dtype=np.int8), strides=2, pads=3)
    x3 = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    assert K.conv_maxpool_supported(stem, 32, 32) and not K.conv_maxpool_supported(stem, 8, 8)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        K.conv_maxpool_u8(stem, x3, 0, (20, 20), scale=0.01)   # larger than the 16 x 16 map
    with pytest.raises(ValueError, match="shape"):
        K.conv_maxpool_u8(stem, x3, 0, (3, 3), strides=2, pads=1, scale=0.01,
                          y=np.empty((1, 9, 8, 32), np.uint8))


@pytest.mark.parametrize("cin, cout, k", [(160, 960, 1), (320, 1280, 1), (96, 320, 1),
                                          (32, 200, 3)])
def test_small_maps_split_by_columns(isa, threads, cin, cout, k):
    """MobileNetV2's last stage: M = 49 rows against hundreds of columns, split on 2 threads
    by panels (into blocks of 1-3 panels that differ by at most one, rounded to whole
    rounds), or by rows where the panels share out worse; both must cover every output."""
    rng = np.random.default_rng(cin + cout + k)
    x = rng.integers(0, 256, (1, 7, 7, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, k, k, cin), dtype=np.int8)
    kw_out = dict(out="u8", bias=rng.integers(-2**16, 2**16, cout, dtype=np.int32),
                  scale=(10.0 ** rng.uniform(-5, -3, cout)).astype(np.float32), zero_point=3)
    geom = dict(strides=(1, 1), dilations=(1, 1), pads=(k // 2,) * 4)
    p, got, want = run_both(x, 7, wt, None, geom, kw_out)
    assert_same(got, want)


@pytest.mark.parametrize("geom, method", [
    (dict(groups=40, pads=1), "dwconv"),
    (dict(), "gemm_1x1"),
    (dict(pads=1), "gemm_im2col"),            # interior strips read in place
    (dict(pads=1, groups=2), "gemm_im2col"),  # per-group im2col blocks
])
def test_fused_lookup_equals_conv_then_table(isa, threads, geom, method):
    """conv_u8s8(lut=t) is t[conv_u8s8()] for every output, whichever task wrote it: into a
    channel slice of a wider tensor (the bytes beside it untouched), with a map that splits
    along rows and columns on 2 threads."""
    rng = np.random.default_rng(len(method) + 7 * geom.get("groups", 1))
    x = rng.integers(0, 256, (2, 9, 37, 40), dtype=np.uint8)
    g = geom.get("groups", 1)
    k = 3 if geom.get("pads") else 1
    wt = rng.integers(-128, 128, (40, k, k, 40 // g), dtype=np.int8)
    p = K.ConvPacked(wt, **geom)
    assert p.method == method
    kw = dict(bias=rng.integers(-2**12, 2**12, 40, dtype=np.int32),
              scale=(10.0 ** rng.uniform(-4, -2, 40)).astype(np.float32), zero_point=120)
    table = rng.permutation(256).astype(np.uint8)
    want = table[K.conv_u8s8(p, x, 9, **kw)]
    big = np.full((*want.shape[:3], 47), 77, np.uint8)
    got = K.conv_u8s8(p, x, 9, lut=table, y=big[..., 3:43], **kw)
    assert_same(got, want)
    assert (big[..., :3] == 77).all() and (big[..., 43:] == 77).all()


def test_fused_lookup_rejects_bad_tables():
    p = K.ConvPacked(np.ones((4, 1, 1, 4), np.int8))
    x = np.zeros((1, 2, 2, 4), np.uint8)
    with pytest.raises(ValueError, match="256 uint8"):
        K.conv_u8s8(p, x, 0, scale=0.1, lut=np.arange(255, dtype=np.uint8))
    with pytest.raises(ValueError, match="256 uint8"):
        K.conv_u8s8(p, x, 0, scale=0.1, lut=np.arange(256, dtype=np.int32))
    with pytest.raises(ValueError, match="uint8 outputs"):
        K.conv_u8s8(p, x, 0, out="i32", lut=np.arange(256, dtype=np.uint8))


@pytest.mark.parametrize("geom, method", [
    (dict(groups=8), "dwconv"),
    (dict(), "gemm_1x1"),
    (dict(groups=2), "gemm_1x1"),
    (dict(strides=2), "gemm_im2col"),
    (dict(pads=(0, 0, 1, 0)), "gemm_im2col"),
])
def test_method_routing(geom, method):
    wt = np.ones((8, 1, 1, 8 // geom.get("groups", 1)), np.int8)
    assert K.ConvPacked(wt, **geom).method == method


def test_1x1_grouped_and_strided_paths(isa):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 7, 5, 12), dtype=np.uint8)
    for geom in [dict(groups=3), dict(groups=4, strides=2), dict(groups=1, strides=(1, 2))]:
        wt = rng.integers(-128, 128, (8 if geom["groups"] != 3 else 9, 1, 1, 12 // geom["groups"]),
                          dtype=np.int8)
        _, got, want = run_both(x, 9, wt, None, geom, dict(out="i32"))
        assert_same(got, want)


@pytest.mark.parametrize("depthwise", [False, True])
def test_saturating_extremes_at_max_k(isa, depthwise):
    """all-255 inputs x (-128 - 127) weights at K = QE_MAX_K: |acc| ~ 2^31 without overflow."""
    if depthwise:
        x = np.full((1, 128, 256, 1), 255, np.uint8)
        wt = np.full((1, 128, 256, 1), -128, np.int8)
    else:
        x = np.full((1, 8, 8, 512), 255, np.uint8)
        wt = np.full((2, 8, 8, 512), -128, np.int8)
    assert wt[0].size == K.MAX_K
    w_zp = np.full(wt.shape[0], 127)
    _, got, want = run_both(x, 0, wt, w_zp, dict(), dict(out="i32"))
    assert_same(got, want)
    assert got.min() == -255 * 255 * K.MAX_K


@pytest.mark.parametrize("kernel, width", [((1, 5), 3000), ((1, 9000), 9100), ((3, 3), 4000)])
def test_wide_rows_and_long_kernels(isa, kernel, width):
    """Rows wider than one indirection chunk, and windows longer than a chunk."""
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (1, 3, width, 3), dtype=np.uint8)
    wt = rng.integers(-128, 128, (3, *kernel, 1), dtype=np.int8)
    _, got, want = run_both(x, 200, wt, None, dict(groups=3, pads=(1, 2, 1, 2)), dict(out="i32"))
    assert_same(got, want)


@pytest.mark.parametrize("groups", [1, 16])
def test_output_into_concat_slice(isa, groups):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 6, 7, 16), dtype=np.uint8)
    wt = rng.integers(-128, 128, (16, 3, 3, 16 // groups), dtype=np.int8)
    big = np.full((2, 6, 7, 40), 77, np.uint8)
    view = big[..., 9:25]
    geom = dict(pads=1, groups=groups)
    kw_out = dict(scale=np.float32(0.001), zero_point=3)
    _, got, want = run_both(x, 5, wt, None, geom, kw_out, y=view)
    assert got is view
    assert_same(big[..., 9:25], want)
    assert (big[..., :9] == 77).all() and (big[..., 25:] == 77).all()


@pytest.mark.parametrize("groups", [1, 2, 24])
def test_batch_and_size_change_with_same_packing(isa, groups):
    rng = np.random.default_rng(3)
    wt = rng.integers(-128, 128, (24, 3, 3, 24 // groups), dtype=np.int8)
    p = K.ConvPacked(wt, strides=2, pads=(1, 0, 1, 2), groups=groups)
    out = K.ConvOutput(24, scale=np.full(24, 0.002, np.float32), zero_point=128)
    for shape in [(1, 9, 9, 24), (3, 5, 11, 24), (2, 2, 1, 24)]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        want = npkern.conv(x, 7, wt, strides=(2, 2), pads=(1, 0, 1, 2), groups=groups,
                           scale=np.full(24, 0.002, np.float32), zero_point=128)
        assert_same(K.conv_u8s8(p, x, 7, output=out), want)


@pytest.mark.parametrize("geom", [dict(groups=64, pads=1), dict(pads=1), dict(),
                                  dict(strides=2, groups=2)])
def test_one_and_two_threads_identical(isa, threads, geom):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 17, 19, 64), dtype=np.uint8)
    wt = rng.integers(-128, 128, (64, 3 if geom.get("pads") else 1, 3 if geom.get("pads") else 1,
                                  64 // geom.get("groups", 1)), dtype=np.int8)
    kw_out = dict(scale=np.linspace(1e-4, 1e-3, 64, dtype=np.float32), zero_point=100)
    _, got, want = run_both(x, 30, wt, np.arange(64) - 32, geom, kw_out)
    assert_same(got, want)


# ---- bad calls raise before C runs -----------------------------------------------------------
GOOD_W = np.ones((4, 3, 3, 2), np.int8)


@pytest.mark.parametrize("kwargs, err", [
    (dict(w=np.ones((4, 3, 3, 2), np.float32)), TypeError),
    (dict(w=np.ones((4, 3, 3), np.int8)), ValueError),
    (dict(w=np.ones((0, 3, 3, 2), np.int8)), ValueError),
    (dict(strides=0), ValueError),
    (dict(strides=(1, 1, 1)), ValueError),
    (dict(dilations=-1), ValueError),
    (dict(pads=-1), ValueError),
    (dict(pads=(1, 1)), ValueError),
    (dict(pads=1.5), TypeError),
    (dict(groups=3), ValueError),
    (dict(groups=0), ValueError),
    (dict(w=np.ones((1, 64, 64, 9), np.int8)), ValueError),  # K > MAX_K
    (dict(isa="sse9"), ValueError),
])
def test_bad_packing_raises(kwargs, err):
    args = dict(w=GOOD_W)
    args.update(kwargs)
    with pytest.raises(err):
        K.ConvPacked(args.pop("w"), **args)


@pytest.mark.parametrize("call, err", [
    (dict(x=np.zeros((1, 5, 5, 2), np.float32)), TypeError),
    (dict(x=np.zeros((5, 5, 2), np.uint8)), ValueError),
    (dict(x=np.zeros((1, 5, 5, 3), np.uint8)), ValueError),       # channel mismatch
    (dict(x=np.zeros((1, 0, 5, 2), np.uint8)), ValueError),       # kernel > padded input
    (dict(x_zp=256), ValueError),
    (dict(x_zp=-1), ValueError),
    (dict(x_zp=1.0), TypeError),
    (dict(scale=np.float32(0)), ValueError),
    (dict(scale=np.float32(np.nan)), ValueError),
    (dict(scale=np.float32(np.inf)), ValueError),
    (dict(scale=np.full(4, -1, np.float32)), ValueError),
    (dict(scale=np.ones(3, np.float32)), ValueError),
    (dict(scale=None), ValueError),
    (dict(bias=np.ones(4, np.float32)), TypeError),
    (dict(bias=np.ones(5, np.int32)), ValueError),
    (dict(zero_point=256), ValueError),
    (dict(qmin=10, qmax=5), ValueError),
    (dict(out="u16"), ValueError),
    (dict(out="i32", scale=np.float32(1)), ValueError),
    (dict(w_zp=np.full(4, 128)), ValueError),
    (dict(w_zp=np.ones(3, np.int32)), ValueError),
    (dict(y=np.zeros((1, 3, 3, 4), np.uint8)), ValueError),
    (dict(y=np.zeros((1, 5, 5, 4), np.int32)), TypeError),
    (dict(y=np.zeros((1, 5, 5, 8), np.uint8)[..., ::2]), ValueError),  # channels not contiguous
    (dict(y=np.zeros((1, 5, 5, 4), np.uint8, order="F")), ValueError),
])
def test_bad_call_raises(call, err):
    p = K.ConvPacked(GOOD_W, pads=1)
    args = dict(x=np.zeros((1, 5, 5, 2), np.uint8), x_zp=0, scale=np.float32(0.1))
    args.update(call)
    with pytest.raises(err):
        K.conv_u8s8(p, args.pop("x"), args.pop("x_zp"), **args)


def test_readonly_and_overlapping_outputs_raise():
    p = K.ConvPacked(np.ones((2, 1, 1, 2), np.int8))
    x = np.zeros((1, 4, 4, 2), np.uint8)
    ro = np.zeros((1, 4, 4, 2), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        K.conv_u8s8(p, x, 0, scale=1.0, y=ro)
    with pytest.raises(ValueError):
        K.conv_u8s8(p, x, 0, scale=1.0, y=x)
    out = K.ConvOutput(2, scale=1.0)
    with pytest.raises(ValueError):
        K.conv_u8s8(p, x, 0, output=out, scale=2.0)
    with pytest.raises(ValueError):
        K.conv_u8s8(p, x, 0, output=K.ConvOutput(3, scale=1.0))


def test_output_size_helpers():
    assert K.conv_output_size(224, 7, 2, 1, 3, 3) == 112
    assert K.conv_output_size(5, 2, 2, ceil_mode=True) == 3
    assert K.conv_output_size(6, 3, 2, 1, 0, 1, ceil_mode=True) == 3
    with pytest.raises(ValueError):
        K.conv_output_size(2, 5)
    assert K.conv_auto_pads("SAME_UPPER", 7, 4, 2) == (1, 2)
    assert K.conv_auto_pads("SAME_LOWER", 7, 4, 2) == (2, 1)
    assert K.conv_auto_pads("VALID", 7, 4, 2) == (0, 0)
    with pytest.raises(ValueError):
        K.conv_auto_pads("SAME", 7, 4)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no aarch64 cross compiler")
def test_neon_sources_compile_for_aarch64(tmp_path):
    """The aarch64 files of conv, pool, eltwise and peak (and what they include) compile with the
    cross compiler, with the build's flags (setup.py), warnings as errors."""
    root = Path(__file__).resolve().parents[2]
    flags = ["-std=c11", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter",
             "-Werror", "-D_GNU_SOURCE", f"-I{root / 'csrc'}", "-c"]
    for family in ("conv", "pool", "eltwise", "peak"):
        for src in sorted((root / "csrc" / family).glob("*.c")):
            if src.name.endswith(("_avx2.c", "_avx512vnni.c")):
                continue
            extra = ["-march=armv8.2-a+dotprod"] if src.name.endswith("_neondot.c") else []
            r = subprocess.run(["aarch64-linux-gnu-gcc", *flags, *extra, str(src), "-o",
                                str(tmp_path / (src.stem + ".o"))], capture_output=True, text=True)
            assert r.returncode == 0, f"{src.name}:\n{r.stderr}"
