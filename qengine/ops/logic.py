"""Comparisons, boolean logic and Where."""
from __future__ import annotations

import numpy as np

from . import dims
from .eltwise import Binary, Unary
from .registry import Op, register

_BOOL = np.dtype(np.bool_)


@register("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
class Compare(Binary):
    out_dtype = _BOOL
    table = {"Equal": np.equal, "Greater": np.greater, "Less": np.less,
             "GreaterOrEqual": np.greater_equal, "LessOrEqual": np.less_equal}


@register("And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
class Logical(Binary):
    table = {"And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
             "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or,
             "BitwiseXor": np.bitwise_xor}


@register("Not", "BitwiseNot")
class Not(Unary):
    table = {"Not": np.logical_not, "BitwiseNot": np.invert}


@register("IsNaN", "IsInf")
class IsSpecial(Op):
    def parse(self, a):
        self.pos = a.int("detect_positive", 1)
        self.neg = a.int("detect_negative", 1)

    def infer(self, ins, consts):
        return [(ins[0].shape, _BOOL)]

    def run(self, x):
        if self.op_type == "IsNaN":
            return (np.isnan(x),)
        return (np.isinf(x) & (((x > 0) & bool(self.pos)) | ((x < 0) & bool(self.neg))),)


@register("Where")
class Where(Op):
    n_inputs = (3, 3)

    def infer(self, ins, consts):
        if ins[0].dtype is not None and ins[0].dtype != _BOOL:
            raise self.error(f"condition must be bool, got {ins[0].dtype}")
        if ins[1].dtype is not None and ins[2].dtype is not None and ins[1].dtype != ins[2].dtype:
            raise self.error(f"X and Y dtypes differ: {ins[1].dtype} and {ins[2].dtype}")
        return [(dims.broadcast(ins[0].shape, ins[1].shape, ins[2].shape), ins[1].dtype)]

    def run(self, c, x, y):
        return (np.where(c, x, y).astype(x.dtype, copy=False),)
