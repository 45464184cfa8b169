"""The ONNX integer ops: MatMulInteger and ConvInteger (uint8/int8 in, exact int32 out) and
DynamicQuantizeLinear (uint8 out, its scale and zero point computed from each input).

They have no QDQ form -- their outputs are raw integers, and DynamicQuantizeLinear's parameters
exist only at run time -- so they lower through `lower_native` (runtime/lowering.py):
- MatMulInteger / ConvInteger with constant weights: the GEMM / conv kernels with out='i32',
  or, when the graph goes on as "-> Cast(float) -> Mul(scale) [-> Add(bias)]" (what
  onnxruntime's quantize_dynamic writes), one GEMM / conv with that float epilogue (out='f32',
  scales read per run from the Mul's other operand, the bias fused). The activation's zero point
  may be a constant or a tensor read at each run (DynamicQuantizeLinear's output).
- with weights that are run-time tensors: a step that packs them at each run.
- DynamicQuantizeLinear: a step computing min/max, scale and zero point, then the quantize
  kernel.
The numpy references are exact: integer arithmetic, int32 results wrapping as the kernels'.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .conv import Conv, _infer
from .matmul import matmul_shape
from .registry import Op, register

__all__ = ["MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "dynamic_qparams"]

_INT8 = (np.dtype(np.uint8), np.dtype(np.int8))


def _wrap_int32(acc: np.ndarray) -> np.ndarray:
    """int64 accumulators -> int32, wrapping modulo 2^32 like the kernels' accumulators."""
    return acc.astype(np.int64).astype(np.int32)


def _check_types(op, ins, pairs):
    """Each (data index, zero point index): data uint8/int8, the zero point of the same type."""
    for d, z in pairs:
        dt = ins[d].dtype if d < len(ins) and ins[d] is not None else None
        if dt is not None and np.dtype(dt) not in _INT8:
            raise op.error(f"input {d} must be uint8 or int8, got {np.dtype(dt).name}")
        zt = ins[z].dtype if z < len(ins) and ins[z] is not None else None
        if dt is not None and zt is not None and np.dtype(zt) != np.dtype(dt):
            raise op.error(f"zero point (input {z}) is {np.dtype(zt).name} but its tensor "
                           f"(input {d}) is {np.dtype(dt).name}")


# ---- the ops ------------------------------------------------------------------------------------
@register("MatMulInteger", since=10)
class MatMulInteger(Op):
    """Y = (A - a_zero_point) @ (B - b_zero_point) in int32. a_zero_point: scalar or per row
    ((M,) for 2-D A, [..., M, 1] for N-D); b_zero_point: scalar or per column ((N,),
    [..., 1, N])."""
    n_inputs = (2, 4)

    def infer(self, ins, consts):
        _check_types(self, ins, [(0, 2), (1, 3)])
        try:
            return [(matmul_shape(ins[0].shape, ins[1].shape), np.dtype(np.int32))]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, a, b, a_zp=None, b_zp=None):
        A = a.astype(np.int64)
        if a_zp is not None:
            z = np.asarray(a_zp, np.int64)
            if z.ndim == 1 and z.size > 1 and a.ndim >= 2:
                z = z.reshape(-1, 1)                     # per row of a 2-D A
            A = A - z
        B = b.astype(np.int64)
        if b_zp is not None:
            B = B - np.asarray(b_zp, np.int64)
        try:
            return (_wrap_int32(np.matmul(A, B)),)
        except ValueError as e:
            raise self.error(f"cannot multiply {list(a.shape)} by {list(b.shape)} with their "
                             f"zero points: {e}") from None


@register("ConvInteger", since=10)
class ConvInteger(Conv):
    """y = conv(x - x_zero_point, w - w_zero_point) in int32 (pads read as x_zero_point).
    x_zero_point: a scalar; w_zero_point: scalar or per output channel (M,)."""
    int8_role = None
    lower_int8 = None       # raw integer operands: no QDQ unit (lower_native instead)
    n_inputs = (2, 4)

    def infer(self, ins, consts):
        _check_types(self, ins, [(0, 2), (1, 3)])
        out = _infer(self, ins[:2], False, lambda sp, k: self._geometry(sp, k))
        return [(out[0][0], np.dtype(np.int32))]

    def _geometry(self, sp, k):
        from .spatial import forward_geometry
        return forward_geometry(self.window, sp, k)

    def run(self, x, w, x_zp=None, w_zp=None):
        X = x.astype(np.float64)      # float64 holds these integer sums exactly (< 2^53)
        if x_zp is not None:
            X = X - np.asarray(x_zp, np.float64).reshape(())
        W = w.astype(np.float64)
        if w_zp is not None:
            z = np.asarray(w_zp, np.float64)
            W = W - (z.reshape((-1,) + (1,) * (w.ndim - 1)) if z.size > 1 else z.reshape(()))
        y = super().run(X, W)[0]
        return (_wrap_int32(np.rint(y).astype(np.int64)),)


def dynamic_qparams(x: np.ndarray) -> tuple[np.float32, np.uint8]:
    """DynamicQuantizeLinear's (scale, zero point) of x, in float32 as the ONNX spec computes
    them: the range widened to include 0, scale = range / 255 (1/255 for an all-zero x), zero
    point = clamp(round_half_even(0 - min / scale), 0, 255)."""
    if x.size == 0:
        raise InputError("DynamicQuantizeLinear: the input is empty, it has no range")
    mn, mx = x.min(), x.max()
    if not (np.isfinite(mn) and np.isfinite(mx)):    # NaN propagates through min and max
        raise InputError("DynamicQuantizeLinear: the input holds NaN or infinity, so it has "
                         "no range to quantize")
    lo, hi = np.float32(min(0, mn)), np.float32(max(0, mx))
    scale = np.float32(np.float32(1.0) if hi == lo else np.float32(hi - lo)) / np.float32(255)
    zp = np.float32(0) - lo / scale
    return scale, np.uint8(np.rint(np.clip(zp, np.float32(0), np.float32(255))))


@register("DynamicQuantizeLinear", since=11)
class DynamicQuantizeLinear(Op):
    """(y uint8, y_scale, y_zero_point) = x quantized with parameters of its own range."""
    n_outputs = (3, 3)

    def infer(self, ins, consts):
        dt = ins[0].dtype
        if dt is not None and np.dtype(dt) != np.float32:
            raise self.error(f"input must be float32, got {np.dtype(dt).name}")
        return [(ins[0].shape, np.dtype(np.uint8)), ((), np.dtype(np.float32)),
                ((), np.dtype(np.uint8))]

    def run(self, x):
        scale, zp = dynamic_qparams(x)
        v = np.rint(x / scale) + np.float32(zp)
        y = np.clip(v, 0, 255).astype(np.uint8)
        return (y, np.array(scale, np.float32), np.array(zp, np.uint8))


# ---- native lowering ---------------------------------------------------------------------
from . import integer_lowering as _low  # noqa: E402  (the lowering half of this family)

MatMulInteger.lower_native = _low.matmul_integer_native
ConvInteger.lower_native = _low.conv_integer_native
DynamicQuantizeLinear.lower_native = _low.dynamic_quantize_native
