"""NHWC uint8 pooling (max, average, global average): bit-exact against npkern.py on every ISA
path, with dilations, asymmetric pads, ceil_mode and count_include_pad both ways."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npkern
from convcases import SETTINGS, window
from qengine import _kernels as K


@st.composite
def pool_case(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    (kh, kw), (sh, sw), (dh, dw), pads, (h, w) = draw(window(max_dilation=2, max_pad=2))
    c = draw(st.sampled_from([1, 3, 15, 16, 17, 31, 33, 64, 65, 100]))
    x = rng.integers(0, 256, (draw(st.integers(1, 2)), h, w, c), dtype=np.uint8)
    if draw(st.booleans()):
        x[...] = draw(st.sampled_from([0, 255]))
    geom = dict(kernel=(kh, kw), strides=(sh, sw), dilations=(dh, dw), pads=pads,
                ceil_mode=draw(st.booleans()))
    return x, geom, rng


@SETTINGS
@given(case=pool_case())
def test_maxpool_matches_numpy(isa, case):
    x, g, _ = case
    got = K.maxpool_u8(x, g["kernel"], strides=g["strides"], dilations=g["dilations"],
                       pads=g["pads"], ceil_mode=g["ceil_mode"])
    want = npkern.maxpool(x, g["kernel"], g["strides"], g["dilations"], g["pads"], g["ceil_mode"])
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(case=pool_case(), cip=st.booleans(), x_zp=st.sampled_from([0, 255, 37]),
       y_zp=st.sampled_from([0, 255, 128]), mult_exp=st.floats(-6, 2), clamp=st.booleans())
def test_avgpool_matches_numpy(isa, case, cip, x_zp, y_zp, mult_exp, clamp):
    x, g, rng = case
    mult = float(np.float32(10.0 ** mult_exp))
    qmin, qmax = (10, 200) if clamp else (0, 255)
    got = K.avgpool_u8(x, g["kernel"], x_zp, mult, y_zp, qmin=qmin, qmax=qmax,
                       strides=g["strides"], dilations=g["dilations"], pads=g["pads"],
                       ceil_mode=g["ceil_mode"], count_include_pad=cip)
    want = npkern.avgpool(x, g["kernel"], x_zp, mult, y_zp, qmin, qmax, g["strides"],
                          g["dilations"], g["pads"], g["ceil_mode"], cip)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), hw=st.sampled_from([(1, 1), (7, 7), (1, 300), (20, 30)]),
       c=st.sampled_from([1, 7, 16, 33, 64, 100, 300]), x_zp=st.sampled_from([0, 255, 99]),
       mult_exp=st.floats(-6, 2), y_zp=st.sampled_from([0, 255, 77]))
def test_global_avgpool_matches_numpy(isa, seed, n, hw, c, x_zp, mult_exp, y_zp):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *hw, c), dtype=np.uint8)
    mult = float(np.float32(10.0 ** mult_exp))
    got = K.global_avgpool_u8(x, x_zp, mult, y_zp)
    np.testing.assert_array_equal(got, npkern.avgpool(x, hw, x_zp, mult, y_zp))


def test_saturating_global_average_over_many_pixels(isa):
    """Over 256 pixels of 255: the uint16 partial sums must be flushed, never wrap."""
    x = np.full((1, 64, 64, 40), 255, np.uint8)
    got = K.global_avgpool_u8(x, 0, 1.0 / 255, 0)
    np.testing.assert_array_equal(got, np.full((1, 1, 1, 40), 1, np.uint8))
    big = K.avgpool_u8(np.full((1, 20, 20, 70), 255, np.uint8), (20, 20), 0, 1.0, 0)
    np.testing.assert_array_equal(big, 255)


@pytest.mark.parametrize("kernel, width", [((1, 100), 900), ((2, 2), 9000)])
def test_wide_rows_and_long_windows(isa, kernel, width):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (1, 3, width, 5), dtype=np.uint8)
    np.testing.assert_array_equal(K.maxpool_u8(x, kernel, pads=(0, 1, 1, 0)),
                                  npkern.maxpool(x, kernel, 1, 1, (0, 1, 1, 0)))
    np.testing.assert_array_equal(
        K.avgpool_u8(x, kernel, 3, 0.7, 9, pads=(0, 1, 1, 0), count_include_pad=True),
        npkern.avgpool(x, kernel, 3, 0.7, 9, pads=(0, 1, 1, 0), count_include_pad=True))


def test_resnet_and_mobilenet_shapes(isa, threads):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (1, 112, 112, 64), dtype=np.uint8)
    got = K.maxpool_u8(x, 3, strides=2, pads=1)
    np.testing.assert_array_equal(got, npkern.maxpool(x, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)))
    x = rng.integers(0, 256, (2, 7, 7, 1280), dtype=np.uint8)
    np.testing.assert_array_equal(K.global_avgpool_u8(x, 3, 0.5, 5),
                                  npkern.avgpool(x, (7, 7), 3, 0.5, 5))


def test_one_and_two_threads_identical(isa):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (2, 33, 31, 48), dtype=np.uint8)
    before = K.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            K.set_num_threads(t)
            outs.append((K.maxpool_u8(x, 3, strides=2, pads=1),
                         K.avgpool_u8(x, 3, 5, 0.9, 7, pads=(1, 0, 2, 1), count_include_pad=True),
                         K.global_avgpool_u8(x, 5, 0.9, 7)))
    finally:
        K.set_num_threads(before)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fn, kwargs, err", [
    ("max", dict(x=np.zeros((1, 4, 4, 2), np.int8)), TypeError),
    ("max", dict(x=np.zeros((4, 4, 2), np.uint8)), ValueError),
    ("max", dict(kernel=0), ValueError),
    ("max", dict(kernel=(2, 2, 2)), ValueError),
    ("max", dict(kernel=5), ValueError),                 # larger than the input
    ("max", dict(kernel=(300, 300)), ValueError),        # too many taps
    ("max", dict(strides=0), ValueError),
    ("max", dict(pads=-1), ValueError),
    ("max", dict(dilations=0), ValueError),
    ("max", dict(y=np.zeros((1, 3, 3, 2), np.uint8)), ValueError),
    ("max", dict(y=np.zeros((1, 2, 2, 2), np.int32)), TypeError),
    ("avg", dict(mult=0.0), ValueError),
    ("avg", dict(mult=float("nan")), ValueError),
    ("avg", dict(mult=float("inf")), ValueError),
    ("avg", dict(mult=1e39), ValueError),                # not a finite float32
    ("avg", dict(x_zp=256), ValueError),
    ("avg", dict(y_zp=-1), ValueError),
    ("avg", dict(qmin=200, qmax=100), ValueError),
    ("global", dict(x=np.zeros((1, 0, 4, 2), np.uint8)), ValueError),
    ("global", dict(mult=-1.0), ValueError),
    ("global", dict(x_zp=1.5), TypeError),
])
def test_bad_calls_raise(fn, kwargs, err):
    a = dict(x=np.zeros((1, 4, 4, 2), np.uint8), kernel=3, x_zp=0, mult=1.0, y_zp=0)
    a.update(kwargs)
    with pytest.raises(err):
        if fn == "max":
            K.maxpool_u8(a["x"], a["kernel"], **{k: v for k, v in a.items()
                                                   if k in ("strides", "pads", "dilations", "y")})
        elif fn == "avg":
            K.avgpool_u8(a["x"], a["kernel"], a["x_zp"], a["mult"], a["y_zp"],
                         **{k: v for k, v in a.items() if k in ("qmin", "qmax")})
        else:
            K.global_avgpool_u8(a["x"], a["x_zp"], a["mult"], a["y_zp"])
