"""QuantizeLinear and DequantizeLinear (opsets 10..current): per tensor, per axis (13+) and
blocked (21+), for the integer types numpy has (uint8/int8/uint16/int16/int32...).

These are the float reference of the QDQ representation the int8 pipeline produces and
reads. The maps are the ONNX ones, which match DESIGN.md:
    q = saturate(round_half_even(x / scale) + zero_point)      (x / scale in float32)
    x = float32(q - zero_point) * scale
A NaN input quantizes to the zero point (as tests/npref.py states it).
DequantizeLinear is not constant-folded: DQ(int8 weight) is the pattern that tells the int8
pipeline a weight is already quantized.
"""
from __future__ import annotations

import numpy as np

from ..graph import format_shape
from . import dims
from .registry import Op, dtype_from_onnx, register


class _Linear(Op):
    n_inputs = (2, 3)

    def parse(self, a):
        self.axis = a.int("axis", 1)
        self.block = a.int("block_size", 0, lo=0)
        code = a.int("output_dtype", 0)
        self.out_dtype = dtype_from_onnx(code, f"node {self.name!r}") if code else None

    def _check_params(self, ins, consts) -> None:
        """Constant scale / zero point that cannot fit the input fail here, at load, with
        the node named (not later inside a run): sizes that disagree, an axis out of range,
        a per-axis length that is not the input's size along the axis."""
        scale = consts[1] if len(consts) > 1 else None
        zp = consts[2] if len(consts) > 2 else None
        if scale is not None and scale.dtype.kind != "f":
            raise self.error(f"scale must be a float tensor, got {scale.dtype}")
        if zp is not None and zp.dtype.kind not in "iu":
            raise self.error(f"zero point must be an integer tensor, got {zp.dtype}")
        if scale is not None and zp is not None and scale.size != zp.size:
            raise self.error(f"scale {list(scale.shape)} and zero point {list(zp.shape)} "
                             f"differ in size")
        x_shape = ins[0].shape if ins and ins[0] is not None else None
        for p in (scale, zp):
            if p is None or x_shape is None or p.ndim == 0 or (p.size == 1 and not self.block):
                continue
            ax = dims.norm_axis(self.axis, len(x_shape))
            if not self.block and (p.ndim != 1 or (isinstance(x_shape[ax], int) and
                                                   p.shape[0] != x_shape[ax])):
                raise self.error(f"per-axis parameter shape {list(p.shape)} does not match "
                                 f"axis {ax} of input {format_shape(x_shape)}")

    def _expand(self, p: np.ndarray, x_shape) -> np.ndarray:
        """A scale/zero point shaped to broadcast against x (per tensor, axis or block)."""
        if p.ndim == 0 or p.size == 1 and self.block == 0:
            return p.reshape(())
        r = len(x_shape)
        ax = dims.norm_axis(self.axis, r)
        if self.block == 0:
            if p.ndim != 1 or p.shape[0] != x_shape[ax]:
                raise self.error(f"per-axis parameter shape {list(p.shape)} does not match "
                                 f"axis {ax} of input {list(x_shape)}")
            return p.reshape((-1,) + (1,) * (r - 1 - ax))
        want = tuple(-(-d // self.block) if i == ax else d for i, d in enumerate(x_shape))
        if p.shape != want:
            raise self.error(f"blocked parameter shape {list(p.shape)} should be {list(want)} "
                             f"for input {list(x_shape)} and block_size {self.block}")
        return np.repeat(p, self.block, axis=ax)[tuple(slice(0, d) for d in x_shape)]


@register("QuantizeLinear", since=10)
class QuantizeLinear(_Linear):
    def _qtype(self, zp_dtype):
        dt = zp_dtype or self.out_dtype or np.dtype(np.uint8)
        if dt.kind not in "iu":
            raise self.error(f"quantized type {dt} is not an integer type")
        return np.dtype(dt)

    def infer(self, ins, consts):
        self._check_params(ins, consts)
        zp = ins[2].dtype if len(ins) > 2 and ins[2] is not None else None
        return [(ins[0].shape, self._qtype(zp))]

    def run(self, x, scale, zp=None):
        qt = self._qtype(zp.dtype if zp is not None else None)
        info = np.iinfo(qt)
        ft = np.promote_types(np.promote_types(x.dtype, scale.dtype), np.float32)
        v = x.astype(ft, copy=False) / self._expand(scale, x.shape).astype(ft, copy=False)
        v = np.rint(np.where(np.isnan(v), 0, v))
        if zp is not None:
            v = v + self._expand(zp, x.shape).astype(np.float64)
        return (np.clip(v, info.min, info.max).astype(qt),)


@register("DequantizeLinear", since=10)
class DequantizeLinear(_Linear):
    foldable = False

    def infer(self, ins, consts):
        self._check_params(ins, consts)
        dt = self.out_dtype or ins[1].dtype
        return [(ins[0].shape, dt)]

    def run(self, x, scale, zp=None):
        out = self.out_dtype or scale.dtype
        d = x.astype(np.int64)
        if zp is not None:
            d = d - self._expand(zp, x.shape).astype(np.int64)
        y = d.astype(np.float32) * self._expand(scale, x.shape).astype(np.float32)
        return (y.astype(out, copy=False),)
