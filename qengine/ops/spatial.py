"""Sliding-window geometry shared by convolution and pooling (NCHW and its 1-D/3-D kin).

``Window`` holds the parsed attributes; ``forward_geometry`` turns them and the input's
spatial dims into output dims and explicit begin/end pads (auto_pad and ceil_mode resolved);
``windows`` is the zero-copy im2col view (N, C, *out, *kernel) of a padded input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Window", "parse_window", "forward_geometry", "pad_spatial", "windows"]

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass
class Window:
    kernel: Optional[list]      # None: taken from the weight's shape (Conv)
    strides: Optional[list]
    dilations: Optional[list]
    pads: Optional[list]        # [b0, b1, ..., e0, e1, ...] as ONNX orders them
    auto_pad: str
    ceil_mode: bool

    def resolved(self, r: int, kernel=None):
        """(kernel, strides, dilations, pads) as lists of length r (pads 2r)."""
        k = list(kernel if self.kernel is None else self.kernel)
        s = self.strides or [1] * r
        d = self.dilations or [1] * r
        p = self.pads or [0] * (2 * r)
        for what, v, n in (("kernel_shape", k, r), ("strides", s, r), ("dilations", d, r),
                           ("pads", p, 2 * r)):
            if len(v) != n:
                raise ValueError(f"attribute {what!r} has {len(v)} values, the input has "
                                 f"{r} spatial dims (needs {n})")
        return k, s, d, p


def parse_window(a, kernel_required: bool, ceil: bool = False) -> Window:
    kernel = a.ints("kernel_shape", lo=1) if kernel_required else \
        a.ints("kernel_shape", None, lo=1)
    return Window(kernel=kernel,
               strides=a.ints("strides", None, lo=1), dilations=a.ints("dilations", None, lo=1),
               pads=a.ints("pads", None, lo=0), auto_pad=a.str("auto_pad", "NOTSET",
                                                               choices=AUTO_PADS),
               ceil_mode=bool(a.int("ceil_mode", 0)) if ceil else False)


def forward_geometry(w: Window, in_dims, kernel=None):
    """Output dims and (begin, end) pads for a convolution/pooling window over ``in_dims``.

    Dims that are not static give None outputs and 0 pads. ValueError when the window does
    not fit. Rules (as ONNX and ONNX Runtime): SAME_* -> out = ceil(in / stride), the extra
    pad goes at the end (UPPER) or the beginning (LOWER); ceil_mode keeps a last window only
    if it starts inside the input or its left padding.
    """
    r = len(in_dims)
    k, s, d, p = w.resolved(r, kernel)
    out, pb, pe = [], [], []
    for i, n in enumerate(in_dims):
        ek = (k[i] - 1) * d[i] + 1
        if not isinstance(n, int):
            out.append(None)
            pb.append(p[i] if w.auto_pad == "NOTSET" else 0)
            pe.append(p[i + r] if w.auto_pad == "NOTSET" else 0)
            continue
        if w.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s[i])
            total = max(0, (o - 1) * s[i] + ek - n)
            b = total // 2 if w.auto_pad == "SAME_UPPER" else total - total // 2
            out.append(o), pb.append(b), pe.append(total - b)
            continue
        b, e = (0, 0) if w.auto_pad == "VALID" else (p[i], p[i + r])
        span = n + b + e - ek
        if span < 0:
            raise ValueError(f"window of extent {ek} does not fit spatial dim {i} of size {n} "
                             f"with pads ({b}, {e})")
        o = span // s[i] + 1
        if w.ceil_mode:
            o = -(-span // s[i]) + 1
            if (o - 1) * s[i] >= n + b:
                o -= 1
        out.append(o), pb.append(b), pe.append(e)
    return out, pb, pe


def pad_spatial(x: np.ndarray, pb, pe, value=0) -> np.ndarray:
    """Pad the trailing len(pb) axes of x (no copy when all pads are 0)."""
    if not any(pb) and not any(pe):
        return x
    lead = x.ndim - len(pb)
    return np.pad(x, [(0, 0)] * lead + list(zip(pb, pe)), mode="constant",
                  constant_values=value)


def windows(xp: np.ndarray, out, kernel, step, dil) -> np.ndarray:
    """Read-only view (N, C, *out, *kernel) of the padded input ``xp`` (N, C, *spatial):
    element [n, c, o.., k..] = xp[n, c, o*step + k*dil ...]."""
    r = len(kernel)
    for i in range(r):   # the view must stay inside the buffer
        assert out[i] == 0 or (out[i] - 1) * step[i] + (kernel[i] - 1) * dil[i] < xp.shape[2 + i]
    st = xp.strides
    shape = xp.shape[:2] + tuple(out) + tuple(kernel)
    strides = st[:2] + tuple(st[2 + i] * step[i] for i in range(r)) + \
        tuple(st[2 + i] * dil[i] for i in range(r))
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def extend_for_ceil(x, out, k, s, d, pb, pe, value):
    """Pad so every one of ``out`` windows lies inside the buffer (ceil_mode may need more
    than the declared end pad)."""
    r = len(out)
    n = x.shape[-r:]
    extra = [max(0, (out[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - (n[i] + pb[i] + pe[i]))
             for i in range(r)]
    return pad_spatial(x, pb, [pe[i] + extra[i] for i in range(r)], value)
