"""Resize (opsets 10..19) and Upsample (7..9): nearest, linear and cubic, separable per axis.

Each resized axis is done in one vectorised step: the output coordinates are mapped back to
input coordinates (coordinate_transformation_mode), every output position gets a few input
taps and weights (nearest: 1, linear: 2, cubic: 4, more with antialias when downscaling),
and the axis becomes sum_t take(x, tap_t) * weight_t. Out-of-range taps are clamped (edge
replication), as ONNX's reference does. Weights are float64 and the sum runs in the input's
float dtype; integer inputs are rounded half-to-even and saturated.

Opset 10 Resize and Upsample map coordinates as ``x / scale`` (asymmetric) and pick the
nearest pixel as ONNX Runtime does: floor when enlarging, ceil when shrinking.
"""
from __future__ import annotations

import math

import numpy as np

from . import dims
from .registry import Op, register

COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def source_coords(mode, out_len, in_len, scale, roi=None):
    """Input coordinate of each output index along one axis (float64), and a mask of the
    positions outside the input (tf_crop_and_resize only, else None)."""
    y = np.arange(out_len, dtype=np.float64)
    width = scale * in_len          # the real-valued output length
    if mode == "asymmetric":
        return y / scale, None
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if mode == "pytorch_half_pixel":
        return ((y + 0.5) / scale - 0.5 if width != 1 else np.full(out_len, -0.5)), None
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale, None
    if mode == "align_corners":
        return (y * (in_len - 1) / (width - 1) if width != 1 else np.zeros(out_len)), None
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        return offset + (y + 0.5) / scale - 0.5, None
    # tf_crop_and_resize: sample the [start, end] box of the (normalised) input
    start, end = roi
    if width != 1:
        x = start * (in_len - 1) + y * (end - start) * (in_len - 1) / (width - 1)
    else:
        x = np.full(out_len, start * (in_len - 1) + (end - start) * (in_len - 1) / 2)
    return x, (x < 0) | (x > in_len - 1)


def _cubic(t, A):
    """Keys' cubic convolution kernel at distances |t|."""
    t = np.abs(t)
    near = ((A + 2) * t - (A + 3)) * t * t + 1
    far = ((A * t - 5 * A) * t + 8 * A) * t - 4 * A
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def taps(x, in_len, kind, scale, nearest="round_prefer_floor", A=-0.75, antialias=False,
         exclude_outside=False):
    """(indices, weights), each (out_len, T): the input taps of every output position.

    Writing x = x0 + r with r in (0, 1] (an integer x has r = 1), taps sit at x0 + i for a
    window of i around 0; that is how ONNX's reference picks neighbours.
    """
    x0 = np.ceil(x) - 1
    r = x - x0
    if kind == "nearest":
        if nearest == "simple":
            pick = np.floor(x) if scale >= 1 else np.ceil(x)
        else:
            up = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5,
                  "floor": r == 1, "ceil": np.ones_like(r, dtype=bool)}[nearest]
            pick = x0 + up
        idx = pick.astype(np.int64)[:, None]
        return np.clip(idx, 0, in_len - 1), np.ones(idx.shape)
    s = min(scale, 1.0) if antialias else 1.0
    if kind == "linear":
        start = int(math.floor(-1 / s)) + 1
        offs = np.arange(start, 2 - start)
        w = np.clip(1 - np.abs((offs[None, :] - r[:, None]) * s), 0, 1)
    else:   # cubic
        start = int(math.floor(-2 / s)) + 1
        offs = np.arange(start, 2 - start)
        w = _cubic((offs[None, :] - r[:, None]) * s, A)
    idx = x0.astype(np.int64)[:, None] + offs[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total == 0, 1, total)
    return np.clip(idx, 0, in_len - 1), w


def resize_axis(x, axis, idx, w, out_dtype):
    """Apply the taps along ``axis``: sum_t take(x, idx[:, t]) * w[:, t]."""
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    acc = None
    wt = w.astype(out_dtype) if out_dtype.kind == "f" else w
    for t in range(idx.shape[1]):
        term = np.take(x, idx[:, t], axis=axis)
        if idx.shape[1] > 1 or not np.all(w == 1):
            term = term * wt[:, t].reshape(shape)
        acc = term if acc is None else acc + term
    return acc


class _ResizeBase(Op):
    """Shared geometry: output sizes and per-axis scales from ``scales`` or ``sizes``."""

    # Defaults are Upsample's and Resize-10's behaviour; Resize-11+ parses its attributes.
    mode = "nearest"
    coord = "asymmetric"
    nearest = "simple"
    A = -0.75                 # cubic_coeff_a
    exclude = False           # exclude_outside
    extrap = 0.0              # extrapolation_value
    antialias = False
    axes = None
    policy = "stretch"        # keep_aspect_ratio_policy

    def _plan(self, in_shape, scales, sizes):
        """(out sizes, scale per axis) for all axes of the input."""
        r = len(in_shape)
        axes = list(range(r)) if self.axes is None else dims.norm_axes(self.axes, r)
        if sizes is not None:
            sizes = dims.as_ints(sizes)
            if len(sizes) != len(axes):
                raise self.error(f"sizes {sizes} need one value per resized axis ({len(axes)})")
            sc = {a: (s / in_shape[a] if in_shape[a] else 1.0) for a, s in zip(axes, sizes)}
            out = dict(zip(axes, sizes))
            if self.policy != "stretch":
                pick = min if self.policy == "not_larger" else max
                k = pick(sc.values())
                sc = {a: k for a in axes}
                out = {a: int(k * in_shape[a] + 0.5) for a in axes}
        else:
            vals = [float(v) for v in np.asarray(scales, dtype=np.float32).reshape(-1)]
            if len(vals) != len(axes):
                raise self.error(f"scales {vals} need one value per resized axis "
                                 f"({len(axes)})")
            if any(v <= 0 for v in vals):
                raise self.error(f"scales must be positive, got {vals}")
            sc = dict(zip(axes, vals))
            out = {a: int(math.floor(in_shape[a] * sc[a])) for a in axes}
        return ([out.get(i, in_shape[i]) for i in range(r)],
                [sc.get(i, 1.0) for i in range(r)], axes)

    def _resize(self, x, scales, sizes, roi=None):
        out, sc, axes = self._plan(x.shape, scales, sizes)
        r = x.ndim
        if roi is not None and roi.size:
            roi = [float(v) for v in roi.reshape(-1)]
            if len(roi) == 2 * len(axes) and len(axes) != r:
                full = [0.0] * r + [1.0] * r
                for i, a in enumerate(axes):
                    full[a], full[a + r] = roi[i], roi[i + len(axes)]
                roi = full
            if len(roi) != 2 * r:
                raise self.error(f"roi has {len(roi)} values, needs {2 * r}")
        else:
            roi = None
        if self.coord == "tf_crop_and_resize" and roi is None:
            raise self.error("tf_crop_and_resize needs the roi input")
        dt = x.dtype
        # nearest only copies elements: integer codes (the uint8 tensors of an int8 model)
        # stay in their dtype; converting them to float64 and back cost 40x the copy
        exact_copy = self.mode == "nearest" and self.coord != "tf_crop_and_resize"
        y = x if dt.kind == "f" or exact_copy else x.astype(np.float64)
        for a in range(r):
            box = (roi[a], roi[a + r]) if roi is not None else None
            if out[a] == x.shape[a] and sc[a] == 1.0 and (
                    box is None or box == (0.0, 1.0)):
                continue
            if x.shape[a] == 0 or out[a] == 0:
                shape = list(y.shape)
                shape[a] = out[a]
                y = np.zeros(shape, y.dtype)
                continue
            xs, outside = source_coords(self.coord, out[a], x.shape[a], sc[a], box)
            idx, w = taps(xs, x.shape[a], self.mode, sc[a], self.nearest, self.A,
                          self.antialias, self.exclude)
            y = resize_axis(y, a, idx, w, y.dtype)
            if outside is not None and outside.any():
                shape = [1] * r
                shape[a] = out[a]
                y = np.where(outside.reshape(shape), np.asarray(self.extrap, y.dtype), y)
        if dt.kind in "iu" and not exact_copy:   # ONNX's reference: round half-even, saturate
            info = np.iinfo(dt)
            y = np.clip(np.rint(y), info.min, info.max)
        return (np.ascontiguousarray(y).astype(dt, copy=False),)

    def _infer(self, ins, scales, sizes):
        """Output shape; symbolic input dims stay symbolic on axes that are not resized."""
        x, dt = ins[0].shape, ins[0].dtype
        if x is None:
            return [(None, dt)]
        probe = [d if isinstance(d, int) else 1 for d in x]
        out, sc, axes = self._plan(probe, scales, sizes)
        coupled = sizes is not None and self.policy != "stretch" and \
            any(not isinstance(x[a], int) for a in axes)
        res = []
        for i, d in enumerate(x):
            if i not in axes or (scales is not None and sc[i] == 1.0):
                res.append(d)
            elif coupled:
                res.append(None)
            elif isinstance(d, int) or sizes is not None:
                res.append(out[i])
            else:
                res.append(None)
        return [(tuple(res), dt)]


@register("Resize", since=10)
class Resize(_ResizeBase):
    n_inputs = (1, 4)

    def int8_kind(self):
        return "movement" if self.mode == "nearest" else None

    def parse(self, a):
        self.mode = a.str("mode", "nearest", choices=("nearest", "linear", "cubic"))
        if self.opset < 11:
            if self.mode == "cubic":
                raise self.error("mode 'cubic' needs opset >= 11")
            return
        self.coord = a.str("coordinate_transformation_mode", "half_pixel", choices=COORD_MODES)
        self.nearest = a.str("nearest_mode", "round_prefer_floor", choices=NEAREST_MODES[:4])
        self.A = a.float("cubic_coeff_a", -0.75)
        self.exclude = bool(a.int("exclude_outside", 0))
        self.extrap = a.float("extrapolation_value", 0.0)
        self.antialias = bool(a.int("antialias", 0)) and self.mode != "nearest"
        if a.int("antialias", 0) and self.mode == "nearest":
            raise self.error("antialias is not defined for mode 'nearest'")
        self.axes = a.ints("axes", None)
        self.policy = a.str("keep_aspect_ratio_policy", "stretch",
                            choices=("stretch", "not_larger", "not_smaller"))

    def _inputs(self, xs):
        """(roi, scales, sizes) from the node inputs of this opset (empty -> None)."""
        if self.opset < 11:
            roi, scales, sizes = None, xs[1] if len(xs) > 1 else None, None
        else:
            xs = list(xs) + [None] * 4
            roi, scales, sizes = xs[1], xs[2], xs[3]
        scales = None if scales is None or scales.size == 0 else scales
        sizes = None if sizes is None or sizes.size == 0 else sizes
        return roi, scales, sizes

    def infer(self, ins, consts):
        x = ins[0].shape
        _, scales, sizes = self._inputs(consts)
        geometry = (1,) if self.opset < 11 else (2, 3)
        unknown = any(i < len(ins) and ins[i] is not None and consts[i] is None
                      for i in geometry)
        if x is not None and (unknown or (scales is None and sizes is None)):
            return [((None,) * len(x), ins[0].dtype)]
        return self._infer(ins, scales, sizes)

    def run(self, *xs):
        roi, scales, sizes = self._inputs(xs)
        if (scales is None) == (sizes is None):
            raise self.error("exactly one of scales and sizes must be given")
        return self._resize(xs[0], scales, sizes, roi if self.coord == "tf_crop_and_resize"
                            else None)


@register("Upsample", since=7, until=9)
class Upsample(_ResizeBase):
    n_inputs = (1, 2)

    def int8_kind(self):
        return "movement" if self.mode == "nearest" else None

    def parse(self, a):
        self.mode = a.str("mode", "nearest", choices=("nearest", "linear", "bilinear"))
        if self.mode == "bilinear":
            self.mode = "linear"
        self.scales = a.floats("scales", None) if self.opset < 9 else None

    def infer(self, ins, consts):
        scales = self.scales if self.opset < 9 else consts[1]
        if scales is None:
            x = ins[0].shape
            return [(None if x is None else (None,) * len(x), ins[0].dtype)]
        return self._infer(ins, np.asarray(scales, dtype=np.float32), None)

    def run(self, x, scales=None):
        s = self.scales if self.opset < 9 else scales
        if s is None:
            raise self.error("scales are missing")
        return self._resize(x, np.asarray(s, dtype=np.float32), None)
