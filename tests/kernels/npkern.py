"""Plain numpy statements of the conv and pool semantics (qe_kernels.h), independent of the C
code: no im2col, no indirection, no zero-point folding -- padded tensors and window sums."""
from __future__ import annotations

import numpy as np

from npref import output_stage


def out_size(n, k, s, d, p0, p1, ceil_mode=False):
    ext = d * (k - 1) + 1
    span = n + p0 + p1 - ext
    if not ceil_mode:
        return span // s + 1
    o = -(-span // s) + 1
    return o - 1 if (o - 1) * s >= n + p0 else o


def wrap32(a):
    return ((np.asarray(a, dtype=np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def _tuple(v, n):
    return tuple(v) if np.ndim(v) else (int(v),) * n


def conv_acc(x, x_zp, w, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1,
             w_zp=None, bias=None):
    """int32 (wrapping) sum over the window of (x - x_zp) * (w - w_zp) + bias, NHWC / OHWI."""
    strides, dilations, pads = _tuple(strides, 2), _tuple(dilations, 2), _tuple(pads, 4)
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    oh, ow = out_size(h, kh, sh, dh, pt, pb), out_size(wd, kw, sw, dw, pl, pr)
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + wd] = x.astype(np.int64) - int(x_zp)  # padding reads x_zp: 0
    wi = w.astype(np.int64)
    if w_zp is not None:
        wi = wi - np.broadcast_to(np.asarray(w_zp, dtype=np.int64), (o,))[:, None, None, None]
    og = o // groups
    wg = wi.reshape(groups, og, kh, kw, cg)
    acc = np.zeros((n, oh, ow, groups, og), dtype=np.int64)
    for ki in range(kh):
        for kj in range(kw):
            patch = xp[:, ki * dh: ki * dh + sh * (oh - 1) + 1: sh,
                       kj * dw: kj * dw + sw * (ow - 1) + 1: sw, :]
            acc += np.einsum("nhwgc,goc->nhwgo", patch.reshape(n, oh, ow, groups, cg),
                             wg[:, :, ki, kj, :])
    acc = acc.reshape(n, oh, ow, o)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    return wrap32(acc)


def conv(x, x_zp, w, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), groups=1,
         w_zp=None, bias=None, out="u8", scale=None, zero_point=0, qmin=0, qmax=255, fbias=None):
    acc = conv_acc(x, x_zp, w, strides, dilations, pads, groups, w_zp, bias)
    return output_stage(acc, out, scale, zero_point, qmin, qmax, fbias)


def _windows(x, kernel, strides, dilations, pads, ceil_mode, fill):
    """(N, oh, ow, kh*kw, C) windows of x padded with `fill`, plus a same-shape mask of taps
    inside the input and one of taps inside the padded extent."""
    kernel, strides, dilations = _tuple(kernel, 2), _tuple(strides, 2), _tuple(dilations, 2)
    pads = _tuple(pads, 4)
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = kernel, strides, dilations, pads
    oh = out_size(h, kh, sh, dh, pt, pb, ceil_mode)
    ow = out_size(w, kw, sw, dw, pl, pr, ceil_mode)
    # room for ceil_mode windows that overhang the end padding
    eh = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    ew = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    H, W = h + pt + pb + eh, w + pl + pr + ew
    xp = np.full((n, H, W, c), fill, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + w] = x
    inside = np.zeros((H, W), dtype=bool)
    inside[pt:pt + h, pl:pl + w] = True
    padded = np.zeros((H, W), dtype=bool)
    padded[:h + pt + pb, :w + pl + pr] = True
    vals, ins, pad = [], [], []
    for ki in range(kh):
        for kj in range(kw):
            rs = slice(ki * dh, ki * dh + sh * (oh - 1) + 1, sh)
            cs = slice(kj * dw, kj * dw + sw * (ow - 1) + 1, sw)
            vals.append(xp[:, rs, cs, :])
            ins.append(inside[rs, cs])
            pad.append(padded[rs, cs])
    return np.stack(vals, 3), np.stack(ins, 2), np.stack(pad, 2)


def maxpool(x, kernel, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), ceil_mode=False):
    vals, ins, _ = _windows(x, kernel, strides, dilations, pads, ceil_mode, -1)
    vals = np.where(ins[None, :, :, :, None], vals, -1)
    return np.maximum(vals.max(axis=3), 0).astype(np.uint8)  # an empty window gives 0


def avgpool(x, kernel, x_zp, mult, y_zp, qmin=0, qmax=255, strides=(1, 1), dilations=(1, 1),
            pads=(0, 0, 0, 0), ceil_mode=False, count_include_pad=False):
    vals, ins, pad = _windows(x, kernel, strides, dilations, pads, ceil_mode, int(x_zp))
    acc = np.where(ins[None, :, :, :, None], vals - int(x_zp), 0).sum(axis=3)
    count = (pad if count_include_pad else ins).sum(axis=2)  # (oh, ow)
    m = np.float32(mult) / np.maximum(count, 1).astype(np.float32)
    v = acc.astype(np.int32).astype(np.float32) * m[None, :, :, None]
    v = np.where(count[None, :, :, None] == 0, np.float32(0), v)
    v = np.clip(v, np.float32(qmin - y_zp), np.float32(qmax - y_zp))
    return (np.rint(v).astype(np.int32) + y_zp).astype(np.uint8)
