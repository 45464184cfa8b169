"""Depthwise convolution (conv_u8s8 with groups = channels, method dwconv): bit-exact against
the numpy statement in npkern.py on every ISA path -- the channel blocks, the tap quads,
triples and fives of the VNNI kernels, rows cut by the padding, the constants kept with the
packing, and the splits among threads."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import npkern
from convcases import SETTINGS, assert_same, conv_case, run_both
from qengine import _kernels as K


@SETTINGS
@given(case=conv_case(depthwise=True))
def test_depthwise_matches_numpy(isa, case):
    p, got, want = run_both(*case)
    assert p.method == "dwconv"
    assert_same(got, want)


@pytest.mark.parametrize("channels", [1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 96, 144, 200])
@pytest.mark.parametrize("taps", [(3, 3), (1, 1), (2, 3), (5, 5)])
def test_depthwise_channel_blocks_and_interior_runs(isa, threads, channels, taps):
    """Channel counts on each side of the 16/32/64-channel blocks of the VNNI layout, windows
    whose tap count is a multiple of 4 or not, rows long enough for stepped interior runs of
    odd and even length, strides 1 and 2, into a slice of a wider output; u8 with a narrowed
    range and per-channel scales, then i32 and f32 (the natural-order path)."""
    rng = np.random.default_rng(channels * 100 + taps[0] * 10 + taps[1])
    x = rng.integers(0, 256, (2, 9, 23, channels), dtype=np.uint8)
    wt = rng.integers(-128, 128, (channels, *taps, 1), dtype=np.int8)
    for strides, out in [((1, 1), "u8"), ((2, 2), "u8"), ((1, 2), "i32"), ((1, 1), "f32")]:
        geom = dict(strides=strides, pads=(1, 2, 1, 1), groups=channels)
        kw_out = dict(out=out, bias=rng.integers(-2**16, 2**16, channels, dtype=np.int32))
        if out != "i32":
            kw_out["scale"] = (10.0 ** rng.uniform(-4, -2, channels)).astype(np.float32)
        if out == "u8":
            kw_out.update(zero_point=100, qmin=60, qmax=230)
        oh = K.conv_output_size(9, taps[0], strides[0], 1, 1, 1)
        ow = K.conv_output_size(23, taps[1], strides[1], 1, 2, 1)
        dt = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}[out]
        y = np.zeros((2, oh, ow, channels + 5), dt)[..., 3:3 + channels]
        _, got, want = run_both(x, 37, wt, None, geom, kw_out, y=y)
        assert_same(got, want)


def output_by_width(rng, width, channels):
    """Output arguments cycling with a run's width: uint8 (per-channel scales, or one scale
    when width % 3 == 0), int32, float."""
    out = ["u8", "u8", "i32", "f32"][width % 4]
    kw_out = dict(out=out, bias=rng.integers(-2**16, 2**16, channels, dtype=np.int32))
    if out != "i32":
        n_scales = channels if width % 3 else 1
        kw_out["scale"] = (10.0 ** rng.uniform(-4, -2, n_scales)).astype(np.float32)
    if out == "u8":
        kw_out.update(zero_point=int(rng.integers(0, 256)))
    return kw_out


@pytest.mark.parametrize("channels", [16, 24, 32, 40, 64, 80, 144])
@pytest.mark.parametrize("strides, dilations", [((1, 1), (1, 1)), ((2, 2), (1, 1)),
                                                ((1, 1), (1, 2))])
def test_depthwise_3x3_tap_triples(isa, channels, strides, dilations):
    """3 x 3 windows whose taps of a row sit on adjacent pixels: the VNNI kernel interleaves a
    quad of input pixels once for two outputs (stride 1: weights (w0 w1 w2 0) and (0 w0 w1 w2);
    stride 2: the next quad, carried) -- runs of odd and even length, so the last pixel alone
    is taken too, and uint8 (per-tensor and per-channel scales), int32 and float outputs.
    Dilation 2 puts the taps two pixels apart: the quads kernel then serves the run."""
    rng = np.random.default_rng(channels + 1000 * strides[0] + 100 * dilations[1])
    for width in range(3, 13):
        x = rng.integers(0, 256, (1, 4, width + 2 * dilations[1], channels), dtype=np.uint8)
        wt = rng.integers(-128, 128, (channels, 3, 3, 1), dtype=np.int8)
        geom = dict(strides=strides, dilations=dilations, pads=(1, 1, 1, 1), groups=channels)
        kw_out = output_by_width(rng, width, channels)
        _, got, want = run_both(x, int(rng.integers(0, 256)), wt, None, geom, kw_out)
        assert_same(got, want)


@pytest.mark.parametrize("channels", [16, 40, 64, 100, 240])
@pytest.mark.parametrize("kernel, strides, dilations", [
    ((5, 5), (1, 1), (1, 1)),       # the OCR backbone's windows
    ((1, 5), (1, 1), (1, 1)),       # one row of five
    ((3, 5), (2, 1), (1, 1)),       # three rows, stride 2 along the height only
    ((5, 5), (1, 2), (1, 2)),       # stride 2 and dilation 2: taps still one step apart
    ((5, 5), (1, 1), (1, 2)),       # dilation 2 alone: not adjacent, the quads kernel
    ((5, 3), (1, 1), (1, 1)),       # 15 taps in rows of three: not fives
])
def test_depthwise_tap_fives(isa, threads, channels, kernel, strides, dilations):
    """Windows in rows of five taps one step apart: the VNNI kernel interleaves two quads of
    input pixels once per row for four outputs (weights shifted by the output's offset,
    conv.h w5), and the last 1-3 outputs of a run alone -- runs of every length mod 4, blocks
    of 64 / 32 / 16 channels, the rows cut by the top and bottom padding (1..5 rows of five),
    uint8 with per-tensor and per-channel scales, int32 and float outputs, and two threads
    splitting channels."""
    rng = np.random.default_rng(channels + 10 * kernel[0] + 100 * kernel[1] + strides[1]
                                + 7 * dilations[1])
    for width in range(1, 14):
        in_w = (width - 1) * strides[1] + (kernel[1] - 1) * dilations[1] + 1 - 4
        x = rng.integers(0, 256, (1, 1 + width % 5, max(in_w, 1), channels), dtype=np.uint8)
        wt = rng.integers(-128, 128, (channels, *kernel, 1), dtype=np.int8)
        geom = dict(strides=strides, dilations=dilations, pads=(2, 2, 2, 2), groups=channels)
        kw_out = output_by_width(rng, width, channels)
        _, got, want = run_both(x, int(rng.integers(0, 256)), wt, None, geom, kw_out)
        assert_same(got, want)


@pytest.mark.parametrize("shape", [(1, 2, 70), (1, 4, 37), (2, 1, 90)])
@pytest.mark.parametrize("strides", [(1, 1), (2, 1), (1, 2)])
def test_depthwise_few_rows_split_along_columns(isa, threads, shape, strides):
    """Maps of fewer rows than tasks wanted (OCR-style 2 x 160): with 2 threads each row is
    cut into column blocks, so a block may start or end inside the left or right border, or
    hold only interior columns whose kernel rows above and below read the x_zp plane."""
    channels = 80
    rng = np.random.default_rng(shape[1] * 1000 + shape[2] + strides[0] * 10 + strides[1])
    x = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    wt = rng.integers(-128, 128, (channels, 5, 5, 1), dtype=np.int8)
    geom = dict(strides=strides, pads=(2, 2, 2, 1), groups=channels)
    kw_out = dict(out="u8", bias=rng.integers(-2**16, 2**16, channels, dtype=np.int32),
                  scale=(10.0 ** rng.uniform(-4, -2, channels)).astype(np.float32),
                  zero_point=90)
    _, got, want = run_both(x, 201, wt, None, geom, kw_out)
    assert_same(got, want)


def check_depthwise_outputs(rng, x, wt, geom, f32_w_zp=True):
    """x (NHWC) through the depthwise conv `wt` against numpy, with and without weight zero
    points: uint8 with per-channel scales and a fused lookup, int32 and float outputs."""
    channels = x.shape[-1]
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    for w_zp, out in [(None, "u8"), (rng.integers(-128, 128, channels), "u8"), (None, "i32"),
                      (rng.integers(-128, 128, channels) if f32_w_zp else None, "f32")]:
        kw_out = dict(out=out, bias=rng.integers(-2**16, 2**16, channels, dtype=np.int32))
        if out != "i32":
            kw_out["scale"] = (10.0 ** rng.uniform(-4, -2, channels)).astype(np.float32)
        if out == "u8":
            kw_out.update(zero_point=90)
        p, got, want = run_both(x, 201, wt, w_zp, geom, kw_out)
        assert p.method == "dwconv"
        assert_same(got, want)
        if out == "u8":
            fused = K.conv_u8s8(p, x, 201, w_zp=w_zp, lut=table, **kw_out)
            np.testing.assert_array_equal(fused, table[want])


@pytest.mark.parametrize("kernel, pads, rows", [
    ((5, 5), (2, 2, 2, 2), 2),      # OCR: both rows cut, kernel rows (2, 3) and (1, 2)
    ((5, 5), (2, 2, 2, 2), 4),      # the top and bottom two rows cut, the middle whole
    ((3, 3), (1, 1, 1, 1), 1),      # one row: its window loses the top and bottom rows
    ((11, 1), (9, 0, 9, 0), 3),     # more distinct cuts than a call keeps: none taken
    ((4, 3), (3, 1, 0, 1), 3),      # asymmetric pads, an even kernel
    ((1, 3), (2, 1, 2, 1), 2),      # output rows whose window lies entirely in the padding
])
@pytest.mark.parametrize("dilation", [1, 2])
def test_depthwise_rows_cut_by_the_padding(isa, threads, kernel, pads, rows, dilation):
    """Output rows whose window has kernel rows in the top or bottom padding run on the rows
    inside alone (weights and init of that cut, dwconv.c): with and without weight zero points,
    every output kind, a fused lookup, batch 2, 64+ channels split among threads."""
    channels = 72
    rng = np.random.default_rng(kernel[0] * 100 + rows * 10 + dilation)
    rows = max(rows, (kernel[0] - 1) * dilation + 1 - pads[0] - pads[2])   # one window fits
    x = rng.integers(0, 256, (2, rows, 19, channels), dtype=np.uint8)
    wt = rng.integers(-128, 128, (channels, *kernel, 1), dtype=np.int8)
    geom = dict(strides=(1, 1), dilations=(dilation, 1), pads=pads, groups=channels)
    check_depthwise_outputs(rng, x, wt, geom)


def test_depthwise_cuts_made_by_concurrent_first_calls(isa):
    """A cut's weights are packed at its first use and kept with the packed conv (dwconv.c
    dw_cut_weights): calls from several Python threads at once (the kernels release the GIL)
    on a fresh ConvPacked may make the same cut together; every call still gets the numpy
    result, and the cut one thread stored is the one all later calls use."""
    import threading
    channels, workers = 96, 6
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (1, 2, 40, channels), dtype=np.uint8)
    wt = rng.integers(-128, 128, (channels, 5, 5, 1), dtype=np.int8)
    geom = dict(strides=(1, 1), pads=(2, 2, 2, 2), groups=channels)
    kw_out = dict(out="u8", bias=rng.integers(-2**16, 2**16, channels, dtype=np.int32),
                  scale=(10.0 ** rng.uniform(-4, -2, channels)).astype(np.float32),
                  zero_point=90)
    want = npkern.conv(x, 201, wt, **geom, **kw_out)
    for _ in range(10):
        p = K.ConvPacked(wt, **geom)
        barrier = threading.Barrier(workers)
        got = [None] * workers

        def call(i):
            barrier.wait()
            got[i] = K.conv_u8s8(p, x, 201, **kw_out)
        ts = [threading.Thread(target=call, args=(i,)) for i in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for g in got:
            assert_same(g, want)
        assert_same(K.conv_u8s8(p, x, 201, **kw_out), want)


@pytest.mark.parametrize("kernel, pads, strides", [
    ((5, 5), (2, 2, 2, 2), (1, 1)),     # every padded row cut
    ((5, 5), (2, 2, 2, 2), (2, 1)),     # 3 and 4 input rows: two cuts each, not the same ones
    ((11, 1), (9, 0, 9, 0), (1, 1)),    # no cuts: stepped runs read the x_zp plane
])
def test_depthwise_constants_kept_with_the_packing(isa, threads, kernel, pads, strides):
    """The first call without weight zero points keeps its constants (x_zp plane, init, scales,
    cut inits) with the packed conv, and later calls use them only when x_zp, the bias and
    scale values, the cuts and the plane size all match (dwconv.c dw_call_consts): a call that
    changes any of them, or mutates its bias or scales in place, still gets the numpy result."""
    channels = 72
    rng = np.random.default_rng(kernel[0] + pads[0])
    wt = rng.integers(-128, 128, (channels, *kernel, 1), dtype=np.int8)
    geom = dict(strides=strides, pads=pads, groups=channels)
    p = K.ConvPacked(wt, **geom)
    bias = rng.integers(-2**16, 2**16, channels, dtype=np.int32)
    scale = (10.0 ** rng.uniform(-3.5, -2.5, channels)).astype(np.float32)  # few saturate
    x = {w: rng.integers(0, 256, (1, 3, w, channels), dtype=np.uint8) for w in (9, 40)}
    x[1] = rng.integers(0, 256, (2, 4, 9, channels), dtype=np.uint8)   # other rows: other cuts

    def call(xk, x_zp, w_zp=None, **kw_out):
        if kw_out.get("out", "u8") == "u8":
            kw_out.setdefault("zero_point", 90)
        got = K.conv_u8s8(p, x[xk], x_zp, w_zp=w_zp, **kw_out)
        assert_same(got, npkern.conv(x[xk], x_zp, wt, w_zp=w_zp, **geom, **kw_out))

    call(9, 201, w_zp=rng.integers(-128, 128, channels), bias=bias, scale=scale)  # nothing kept
    call(9, 201, bias=bias, scale=scale)      # kept
    call(9, 201, bias=bias, scale=scale)      # used
    call(40, 201, bias=bias, scale=scale)     # wider rows (a wider plane when it is used)
    call(1, 201, bias=bias, scale=scale)      # other rows
    call(9, 17, bias=bias, scale=scale)       # another x_zp
    call(9, 201, scale=scale)                 # no bias
    bias[::3] += 1000
    call(9, 201, bias=bias, scale=scale)      # the bias changed in place
    bias[::3] -= 1000
    call(9, 201, bias=bias, scale=scale)      # the kept constants again
    scale[::5] *= 2
    call(9, 201, bias=bias, scale=scale)      # the scales changed in place
    scale[::5] /= 2
    call(9, 201, bias=bias, scale=scale)      # the kept constants again
    call(9, 201, bias=bias, scale=scale[:1])  # one scale
    call(9, 201, bias=bias, out="i32")
    call(9, 201, bias=bias, scale=scale)


@pytest.mark.parametrize("channels", [128, 144, 200, 960])
@pytest.mark.parametrize("shape, strides", [((1, 7, 7), (1, 1)), ((1, 14, 14), (2, 2)),
                                            ((2, 2, 5), (1, 1))])
def test_depthwise_few_pixels_split_along_channels(isa, threads, channels, shape, strides):
    """Maps of few rows and columns but many channels (MobileNetV2's 7 x 7 x 960): on 2
    threads each task takes a block of 64 channels or more, so the kernel runs from channel
    k0 on (its weights, init and scales from block k0, input, padding and output moved by k0);
    with and without weight zero points, uint8 with per-channel scales and a fused lookup,
    int32 and float outputs."""
    rng = np.random.default_rng(channels + 10 * shape[1] + strides[0])
    x = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    wt = rng.integers(-128, 128, (channels, 3, 3, 1), dtype=np.int8)
    geom = dict(strides=strides, pads=(1, 1, 1, 1), groups=channels)
    check_depthwise_outputs(rng, x, wt, geom, f32_w_zp=False)
