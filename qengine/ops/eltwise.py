"""Elementwise arithmetic: unary math, broadcasting binary ops and variadic Max/Min/Sum/Mean.

Each family is one class driven by a table (op type -> numpy function). Float math stays in
the input's dtype: numpy 2 keeps float32 with Python scalars (weak scalars, NEP 50).
"""
from __future__ import annotations

import math

import numpy as np

from . import dims
from .registry import Op, register

__all__ = ["Unary", "Binary", "erf"]


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, to ~1e-15 relative (float64 inside), in x's dtype.

    |x| < 2.5: the series 2/sqrt(pi) exp(-x^2) sum 2^n x^(2n+1) / (2n+1)!! (all terms positive:
    no cancellation); beyond, 1 - erfc(x) with erfc's continued fraction (Lentz-free, evaluated
    from a fixed depth backwards). numpy has no erf and scipy is not a dependency.
    """
    x = np.asarray(x)
    v = x.astype(np.float64)
    a = np.abs(v)
    out = np.empty_like(v)
    small = a < 2.5
    if small.any():
        s = a[small]
        term = s.copy()
        total = s.copy()
        x2 = s * s
        for n in range(1, 80):
            term = term * 2.0 * x2 / (2 * n + 1)
            total += term
        out[small] = 2.0 / math.sqrt(math.pi) * np.exp(-x2) * total
    big = ~small
    if big.any():
        s = a[big]
        frac = np.zeros_like(s)
        for k in range(60, 0, -1):
            frac = (k / 2.0) / (s + frac)
        erfc = np.exp(-s * s) / math.sqrt(math.pi) / (s + frac)
        out[big] = 1.0 - erfc
    out = np.where(np.isnan(v), np.nan, np.copysign(out, v))
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64)


class Unary(Op):
    """y = f(x), same shape and dtype. Subclasses fill ``table`` (op type -> function)."""

    table: dict = {}
    elementwise = True

    def parse(self, a):
        self.fn = self.table[self.op_type]

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[0].dtype)]

    def run(self, x):
        return (np.asarray(self.fn(x), dtype=x.dtype),)


@register("Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign",
          "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
          "Atanh")
class Math(Unary):
    table = {
        "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal,
        "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
        "Round": np.rint,   # half to even, as ONNX specifies
        "Sign": np.sign, "Erf": erf, "Sin": np.sin, "Cos": np.cos, "Tan": np.tan,
        "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh,
        "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
    }


def _div(x, y):
    """ONNX Div: true division for floats, truncation toward zero for integers (C semantics)."""
    if x.dtype.kind == "f":
        return np.divide(x, y)
    q = np.floor_divide(x, y)
    if x.dtype.kind == "i":
        fix = (np.remainder(x, y) != 0) & ((x < 0) != (y < 0))
        q = q + fix.astype(q.dtype)
    return q


def _pow(x, y):
    """ONNX Pow: the result has the base's dtype, whatever the exponent's."""
    if x.dtype.kind == "f":
        return np.power(x, y.astype(x.dtype, copy=False))
    return np.power(x.astype(np.float64), y.astype(np.float64))


def _mod(x, y, fmod):
    """fmod=1: C fmod (the dividend's sign); fmod=0: the divisor's sign, like Python."""
    return np.fmod(x, y) if fmod else np.mod(x, y)


class Binary(Op):
    """z = f(x, y) with numpy (multidirectional) broadcasting."""

    n_inputs = (2, 2)
    table: dict = {}
    same_types = True   # inputs must share a dtype (ONNX type constraint T for both)
    out_dtype = None    # None: the first input's dtype
    legacy_axis = None  # opsets 1-6 "broadcast"/"axis" attributes (see parse)

    def parse(self, a):
        self.fn = self.table[self.op_type]
        self.legacy_axis = None
        if self.opset < 7 and a.int("broadcast", 0):
            # opsets 1-6: B broadcasts to A when broadcast=1, aligned at ``axis`` if given
            self.legacy_axis = a.int("axis", None)

    def _align(self, a_shape, b_shape):
        """B's shape under the opset < 7 broadcast rule (unchanged otherwise)."""
        if self.legacy_axis is None or a_shape is None or b_shape is None:
            return b_shape
        ax = self.legacy_axis + len(a_shape) if self.legacy_axis < 0 else self.legacy_axis
        return (1,) * ax + tuple(b_shape) + (1,) * (len(a_shape) - ax - len(b_shape))

    def infer(self, ins, consts):
        if self.same_types and ins[0].dtype is not None and ins[1].dtype is not None \
                and ins[0].dtype != ins[1].dtype:
            raise self.error(f"input dtypes differ: {ins[0].dtype} and {ins[1].dtype}")
        dt = self.out_dtype if self.out_dtype is not None else ins[0].dtype
        try:
            return [(dims.broadcast(ins[0].shape, self._align(ins[0].shape, ins[1].shape)), dt)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, x, y):
        if self.legacy_axis is not None:
            y = y.reshape(self._align(x.shape, y.shape))
        dt = self.out_dtype if self.out_dtype is not None else x.dtype
        return (np.asarray(self.fn(x, y), dtype=dt),)


@register("Add", "Sub", "Mul", "Div")
class Arith(Binary):
    table = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div}
    elementwise = True

    def int8_kind(self):
        return "compute" if self.op_type in ("Add", "Sub", "Mul") else None


@register("Pow")
class Pow(Binary):
    same_types = False
    elementwise = True
    table = {"Pow": _pow}


@register("Mod")
class Mod(Binary):
    def parse(self, a):
        fmod = a.int("fmod", 0)
        self.fn = lambda x, y: _mod(x, y, fmod)


@register("BitShift")
class BitShift(Binary):
    def parse(self, a):
        d = a.str("direction", choices=("LEFT", "RIGHT"))
        self.fn = np.left_shift if d == "LEFT" else np.right_shift


@register("Max", "Min", "Sum", "Mean")
class Variadic(Op):
    """Elementwise reduction of 1..n broadcast inputs."""

    n_inputs = (1, None)
    table = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}
    elementwise = True

    def parse(self, a):
        self.fn = self.table[self.op_type]

    def infer(self, ins, consts):
        ins = [v for v in ins if v is not None]
        types = {v.dtype for v in ins if v.dtype is not None}
        if len(types) > 1:
            raise self.error(f"input dtypes differ: {sorted(t.name for t in types)}")
        return [(dims.broadcast(*[v.shape for v in ins]), ins[0].dtype)]

    def run(self, *xs):
        xs = [x for x in xs if x is not None]
        acc = xs[0]
        for x in xs[1:]:
            acc = self.fn(acc, x)
        if self.op_type == "Mean":
            acc = acc / len(xs)
        acc = np.broadcast_to(acc, np.broadcast_shapes(*[x.shape for x in xs]))
        return (np.array(acc, dtype=xs[0].dtype),)
