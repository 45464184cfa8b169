"""Plain numpy statement of the quantization semantics of ../shared/DESIGN.md.

Independent of the C code: kernel tests compare against these, bit for bit. Float steps are
float32, in the same order as the kernels (no fused multiply-add), with round-half-to-even.
"""
from __future__ import annotations

import numpy as np


def requantize(acc, mult, zero_point, qmin=0, qmax=255):
    """y = clamp(rint(float32(acc) * mult) + zp, qmin, qmax); mult broadcasts over the last axis."""
    v = np.asarray(acc, dtype=np.int32).astype(np.float32) * np.asarray(mult, dtype=np.float32)
    v = np.clip(v, np.float32(qmin - zero_point), np.float32(qmax - zero_point))
    return (np.rint(v).astype(np.int32) + zero_point).astype(np.uint8)


def quantize(x, scale, zero_point, qmin=0, qmax=255, dtype=np.uint8):
    """clamp(rint(x / scale) + zp): NaN -> zp, +inf -> qmax, -inf -> qmin."""
    v = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    v = np.where(np.isnan(v), np.float32(0), v)
    zp = np.asarray(zero_point, dtype=np.int64)
    v = np.clip(v, (qmin - zp).astype(np.float32), (qmax - zp).astype(np.float32))
    return (np.rint(v).astype(np.int64) + zp).astype(dtype)


def dequantize(q, scale, zero_point=0):
    """float32(q - zp) * scale."""
    d = np.asarray(q, dtype=np.int64) - np.asarray(zero_point, dtype=np.int64)
    return d.astype(np.float32) * np.asarray(scale, dtype=np.float32)


def gemm_acc(a, a_zp, b, b_zp=None, bias=None):
    """int32 (wrapping) sum_k (a - a_zp) * (b - b_zp) + bias; a uint8 (M,K), b int8 (K,N)."""
    ai = a.astype(np.int64) - int(a_zp)
    bi = b.astype(np.int64)
    if b_zp is not None:
        bi = bi - np.asarray(b_zp, dtype=np.int64)
    acc = ai @ bi
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    return ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)


def output_stage(acc, kind, scale=None, zero_point=0, qmin=0, qmax=255, fbias=None):
    """The output pipeline applied to int32 accumulators (bias already added)."""
    if kind == "i32":
        return acc.astype(np.int32)
    if kind == "f32":
        y = acc.astype(np.float32) * np.asarray(scale, dtype=np.float32)
        return y + np.asarray(fbias, dtype=np.float32) if fbias is not None else y
    return requantize(acc, scale, zero_point, qmin, qmax)
