"""Operators: one module per op family, each op a registered class (see registry.py).

Importing this package registers every op."""
from __future__ import annotations

from . import (activation, conv, eltwise, integer, logic, matmul, misc, norm, pool,  # noqa: F401
               quantize, reduce, resize, shape, slicing)
from .registry import (ONNX_DTYPES, Attrs, Op, dtype_from_onnx, get_op, make_op,
                       onnx_from_dtype, register, supported_ops)

__all__ = ["Op", "Attrs", "register", "get_op", "make_op", "supported_ops", "ONNX_DTYPES",
           "dtype_from_onnx", "onnx_from_dtype"]
