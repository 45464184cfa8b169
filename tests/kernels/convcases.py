"""What the convolution and pooling kernel tests share: random valid windows and
convolutions (hypothesis), running a convolution through qengine and through the numpy
statement of npkern.py, and bit-exact comparison."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import npkern
from qengine import _kernels as K

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def window(draw, max_dilation, max_pad):
    """A sliding window (kernel, strides, dilations, pads (top, left, bottom, right)) and an
    input size (h, w) up to 6 past the smallest in which one window fits."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation))
    pads = tuple(draw(st.integers(0, max_pad)) for _ in range(4))
    h_min = max(1, dh * (kh - 1) + 1 - pads[0] - pads[2])
    w_min = max(1, dw * (kw - 1) + 1 - pads[1] - pads[3])
    h, w = draw(st.integers(h_min, h_min + 6)), draw(st.integers(w_min, w_min + 6))
    return (kh, kw), (sh, sw), (dh, dw), pads, (h, w)


@st.composite
def conv_case(draw, depthwise=False):
    """A random valid convolution with its data and output pipeline."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if depthwise:
        groups = draw(st.integers(1, 130))
        cin_g, cout_g = 1, 1
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        cin_g, cout_g = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    (kh, kw), (sh, sw), (dh, dw), pads, (h, w) = draw(window(max_dilation=3, max_pad=3))
    n = draw(st.integers(1, 2))
    x_zp = draw(st.sampled_from([0, 255, int(rng.integers(0, 256))]))
    x = rng.integers(0, 256, (n, h, w, cin_g * groups), dtype=np.uint8)
    if draw(st.booleans()):  # saturating inputs
        x[...] = draw(st.sampled_from([0, 255]))
    wt = rng.integers(-128, 128, (cout_g * groups, kh, kw, cin_g), dtype=np.int8)
    if draw(st.booleans()):
        wt[...] = draw(st.sampled_from([-128, -127, 127]))
    oc = cout_g * groups
    w_zp = draw(st.sampled_from([None, None, "rand"]))
    if w_zp == "rand":
        w_zp = rng.integers(-128, 128, oc)
    out = draw(st.sampled_from(["u8", "u8", "i32", "f32"]))
    kw_out = dict(out=out, bias=rng.integers(-2**20, 2**20, oc, dtype=np.int32) if draw(st.booleans()) else None)
    if out != "i32":
        lo, hi = draw(st.sampled_from([(-6, -4), (-4, -1), (-1, 2)]))
        per_channel = draw(st.booleans())
        kw_out["scale"] = (10.0 ** rng.uniform(lo, hi, oc if per_channel else 1)).astype(np.float32)
    if out == "u8":
        kw_out["zero_point"] = draw(st.sampled_from([0, 255, int(rng.integers(0, 256))]))
        q0 = draw(st.integers(0, 255))
        kw_out["qmin"], kw_out["qmax"] = (0, 255) if draw(st.booleans()) else (q0, draw(st.integers(q0, 255)))
    if out == "f32" and draw(st.booleans()):
        kw_out["fbias"] = rng.standard_normal(oc).astype(np.float32)
    geom = dict(strides=(sh, sw), dilations=(dh, dw), pads=pads, groups=groups)
    return x, x_zp, wt, w_zp, geom, kw_out


def run_both(x, x_zp, wt, w_zp, geom, kw_out, y=None):
    p = K.ConvPacked(wt, **geom)
    got = K.conv_u8s8(p, x, x_zp, w_zp=w_zp, y=y, **kw_out)
    want = npkern.conv(x, x_zp, wt, w_zp=w_zp, **geom, **kw_out)
    return p, got, want


def assert_same(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype == np.float32:  # bit for bit, not approximately
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    else:
        np.testing.assert_array_equal(got, want)
