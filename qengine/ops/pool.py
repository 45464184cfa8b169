"""Pooling: MaxPool (with the optional Indices output), AveragePool, LpPool, global pools.

Windows are strided views of the padded input (see spatial.py) reduced over their kernel
axes: whole-tensor numpy reductions, no loop over pixels.
"""
from __future__ import annotations

import numpy as np

from .registry import Op, register
from .spatial import extend_for_ceil, forward_geometry, parse_window, windows


class _Pool(Op):
    def parse(self, a):
        self.window = parse_window(a, kernel_required=True, ceil=True)

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None:
            return [(None, ins[0].dtype)] * len(self.node.outputs)
        if len(x) != len(self.window.kernel) + 2:
            raise self.error(f"input {list(x)} must have rank {len(self.window.kernel) + 2} "
                             f"for kernel_shape {self.window.kernel}")
        try:
            out = forward_geometry(self.window, x[2:])[0]
        except ValueError as e:
            raise self.error(str(e)) from None
        shape = (x[0], x[1], *out)
        return [(shape, ins[0].dtype), (shape, np.dtype(np.int64))][:len(self.node.outputs)]

    def _views(self, x, value):
        """(padded windows view, geometry) with ``value`` as padding."""
        r = x.ndim - 2
        k, s, d, _ = self.window.resolved(r)
        out, pb, pe = forward_geometry(self.window, x.shape[2:])
        xp = extend_for_ceil(x, out, k, s, d, pb, pe, value)
        return windows(xp, out, k, s, d), (out, k, s, d, pb, pe)


@register("MaxPool")
class MaxPool(_Pool):
    n_outputs = (1, 2)

    def int8_kind(self):
        # max commutes with a monotonic quantizer; the indices output is no activation
        return None if self.wants(1) else "movement"

    def parse(self, a):
        super().parse(a)
        self.storage_order = a.int("storage_order", 0, lo=0, hi=1)

    def run(self, x):
        r = x.ndim - 2
        low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        v, (out, k, s, d, pb, pe) = self._views(x, low)
        kaxes = tuple(range(2 + r, 2 + 2 * r))
        y = v.max(axis=kaxes)
        if not self.wants(1):
            return (y,)
        # Indices: first maximum of each window, flattened over the whole (N, C, *spatial)
        # input (row-major; storage_order=1 makes the spatial part column-major).
        flat = v.reshape(v.shape[:2 + r] + (-1,))
        t = np.unravel_index(flat.argmax(axis=-1), k)
        pos = [np.arange(out[i]).reshape((-1,) + (1,) * (r - 1 - i)) * s[i] - pb[i] +
               t[i] * d[i] for i in range(r)]
        sp = x.shape[2:]
        if self.storage_order == 0:
            idx = np.ravel_multi_index(pos, sp, mode="clip")
        else:
            idx = np.ravel_multi_index(pos[::-1], sp[::-1], mode="clip")
        nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * r)
        return (y, (nc * int(np.prod(sp)) + idx).astype(np.int64))


@register("AveragePool", "LpPool")
class AveragePool(_Pool):
    """AveragePool divides by the window's count of input elements, or (count_include_pad)
    of elements inside the padded extent; LpPool is (sum |x|^p)^(1/p) with zero padding."""

    def int8_kind(self):
        return "compute" if self.op_type == "AveragePool" else None

    def parse(self, a):
        super().parse(a)
        self.include_pad = a.int("count_include_pad", 0)
        self.p = a.int("p", 2) if self.op_type == "LpPool" else None

    def run(self, x):
        r = x.ndim - 2
        kaxes = tuple(range(2 + r, 2 + 2 * r))
        if self.op_type == "LpPool":
            v, _ = self._views(np.abs(x) ** self.p, 0)
            return ((v.sum(axis=kaxes) ** (1.0 / self.p)).astype(x.dtype, copy=False),)
        v, (out, k, s, d, pb, pe) = self._views(x, 0)
        total = v.sum(axis=kaxes)
        # The divisor, per output position: pooled ones over the region that counts.
        sp = x.shape[2:]
        ones = np.ones((1, 1) + sp, dtype=x.dtype)
        if self.include_pad:
            ones = np.pad(ones, [(0, 0), (0, 0)] + list(zip(pb, pe)), constant_values=1)
            cnt_pb, cnt_pe = [0] * r, [0] * r
        else:
            cnt_pb, cnt_pe = pb, pe
        cp = extend_for_ceil(ones, out, k, s, d, cnt_pb, cnt_pe, 0)
        count = windows(cp, out, k, s, d).sum(axis=kaxes)
        return ((total / count).astype(x.dtype, copy=False),)


@register("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
class GlobalPool(Op):
    def int8_kind(self):
        return {"GlobalAveragePool": "compute", "GlobalMaxPool": "movement"}.get(self.op_type)

    def parse(self, a):
        self.p = a.int("p", 2)

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is not None and len(x) < 3:
            raise self.error(f"input must have rank >= 3, got {list(x)}")
        return [(None if x is None else tuple(x[:2]) + (1,) * (len(x) - 2), ins[0].dtype)]

    def run(self, x):
        axes = tuple(range(2, x.ndim))
        if self.op_type == "GlobalAveragePool":
            y = x.mean(axis=axes, keepdims=True)
        elif self.op_type == "GlobalMaxPool":
            y = x.max(axis=axes, keepdims=True)
        else:
            y = (np.abs(x) ** self.p).sum(axis=axes, keepdims=True) ** (1.0 / self.p)
        return (y.astype(x.dtype, copy=False),)


# ---- int8 lowering (ops/int8.py) ------------------------------------------------------------------
def _pool_lower_int8(self, unit):
    """2-D pools on uint8 NHWC: max (parameters kept; a requantizing table follows when the
    output's differ), average and global average (requantized in the kernel)."""
    from .. import _kernels as K
    from ..runtime import glue
    from .int8 import NHWC, Kernel, QTensor, clamp_of

    x, y = unit.inputs[0], unit.outputs[0]
    if not isinstance(x, QTensor) or len(unit.outputs) != 1:
        return None
    kind = {"MaxPool": "max", "AveragePool": "average", "GlobalAveragePool": "global_average",
            "GlobalMaxPool": "global_max"}.get(self.op_type)
    if kind is None:
        return None
    if kind in ("max", "global_max") and (not x.same_params(y) or unit.fused is not None):
        return glue.movement(unit)
    qmin, qmax = clamp_of(unit, y)
    mult = np.float32(x.scale / y.scale)

    shape = unit.shape(x.name)
    if shape is None or len(shape) != 4 or 0 in shape:
        return None

    def make_steps(ctx):
        n, c, h, w = ctx.shape(x.name)
        if kind in ("global_average", "global_max"):
            if kind == "global_max":
                return [K.pool_step(self.name, "max", (n, h, w, c), ctx.slot(x.name),
                                    ctx.slot(y.name), kernel=(h, w))]
            return [K.pool_step(self.name, kind, (n, h, w, c), ctx.slot(x.name),
                                ctx.slot(y.name), x_zp=x.zero_point, mult=float(mult),
                                y_zp=y.zero_point, qmin=qmin, qmax=qmax)]
        k, s, d, _ = self.window.resolved(2)
        out, pb, pe = forward_geometry(self.window, (h, w))
        return [K.pool_step(self.name, "max" if kind == "max" else "average", (n, h, w, c),
                            ctx.slot(x.name), ctx.slot(y.name), kernel=tuple(k),
                            strides=tuple(s), dilations=tuple(d),
                            pads=(pb[0], pb[1], pe[0], pe[1]), ceil_mode=self.window.ceil_mode,
                            count_include_pad=bool(getattr(self, "include_pad", 0)),
                            x_zp=x.zero_point, mult=float(mult), y_zp=y.zero_point,
                            qmin=qmin, qmax=qmax)]

    k = Kernel([x.name], [y.name], make_steps, layouts={x.name: NHWC},
               out_perm=lambda perms, ctx: NHWC, label=f"{kind} pool", unit=unit)
    # a max pool without dilation can run inside the convolution before it (_fuse_maxpools)
    if kind == "max" and tuple(self.window.resolved(2)[2]) == (1, 1):
        ks, s = self.window.resolved(2)[:2]

        def window(ctx):
            _, pb, pe = forward_geometry(self.window, ctx.shape(x.name)[2:])
            return dict(kernel=tuple(ks), strides=tuple(s), pads=(pb[0], pb[1], pe[0], pe[1]),
                        ceil_mode=self.window.ceil_mode)
        k.maxpool_window = window
    return k


def _pool_lower_checked(self, unit):
    if self.op_type == "LpPool" or (self.op_type == "MaxPool" and self.wants(1)) or \
            self.op_type == "GlobalLpPool":
        return None
    if self.op_type in ("MaxPool", "AveragePool") and len(self.window.kernel) != 2:
        return None
    return _pool_lower_int8(self, unit)


MaxPool.lower_int8 = _pool_lower_checked
AveragePool.lower_int8 = _pool_lower_checked
GlobalPool.lower_int8 = _pool_lower_checked
