"""Types and constants: Cast, CastLike, Constant, ConstantOfShape, Range, Dropout, CumSum."""
from __future__ import annotations

import math

import numpy as np

from . import dims
from .registry import Op, dtype_from_onnx, register


@register("Cast", since=6)
class Cast(Op):
    def parse(self, a):
        self.to = dtype_from_onnx(a.int("to"), f"node {self.name!r} (Cast)")

    def infer(self, ins, consts):
        return [(ins[0].shape, self.to)]

    def run(self, x):
        return (x.astype(self.to),)


@register("CastLike")
class CastLike(Op):
    n_inputs = (2, 2)

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[1].dtype)]

    def run(self, x, like):
        return (x.astype(like.dtype),)


_CONST_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints",
                "value_string", "value_strings", "sparse_value")


def constant_value(op: Op, a) -> np.ndarray:
    """The tensor a Constant node holds (exactly one of its value* attributes)."""
    given = [k for k in _CONST_ATTRS if a.has(k)]
    if len(given) != 1:
        raise op.error(f"needs exactly one of {list(_CONST_ATTRS)}, got {given}")
    k = given[0]
    if k == "value":
        return a.tensor("value")
    if k == "value_float":
        return np.array(a.float(k), dtype=np.float32)
    if k == "value_floats":
        return np.array(a.floats(k), dtype=np.float32)
    if k == "value_int":
        return np.array(a.int(k), dtype=np.int64)
    if k == "value_ints":
        return np.array(a.ints(k), dtype=np.int64)
    if k == "sparse_value" and isinstance(op.node.attrs[k], np.ndarray):
        return op.node.attrs[k]     # the frontend densified it
    raise op.error(f"attribute {k!r} (string or sparse constant) is not supported")


@register("Constant")
class Constant(Op):
    n_inputs = (0, 0)

    def parse(self, a):
        self.value = constant_value(self, a)

    def infer(self, ins, consts):
        return [(self.value.shape, self.value.dtype)]

    def run(self):
        return (self.value,)


@register("ConstantOfShape")
class ConstantOfShape(Op):
    def parse(self, a):
        v = a.tensor("value", None)
        if v is None:
            v = np.zeros(1, dtype=np.float32)
        if v.size != 1:
            raise self.error(f"value must hold one element, got shape {list(v.shape)}")
        self.value = v.reshape(())

    def infer(self, ins, consts):
        spec = dims.as_ints(consts[0])
        if spec is None:
            s = ins[0].shape
            n = s[0] if s is not None and len(s) == 1 else None
            return [(None if not isinstance(n, int) else (None,) * n, self.value.dtype)]
        if any(d < 0 for d in spec):
            raise self.error(f"negative dimension in shape {spec}")
        return [(tuple(spec), self.value.dtype)]

    def run(self, shape):
        spec = dims.as_ints(shape)
        if any(d < 0 for d in spec):
            raise self.error(f"negative dimension in shape {spec}")
        return (np.full(spec, self.value, dtype=self.value.dtype),)


@register("Range")
class Range(Op):
    """start + i * delta for i < max(ceil((limit - start) / delta), 0)."""

    n_inputs = (3, 3)

    @staticmethod
    def _count(start, limit, delta):
        if delta == 0:
            raise ValueError("delta is 0")
        return max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)

    def infer(self, ins, consts):
        if all(c is not None for c in consts):
            try:
                n = self._count(*(np.asarray(c).reshape(-1)[0] for c in consts))
            except (ValueError, IndexError) as e:
                raise self.error(f"invalid range: {e}") from None
            return [((n,), ins[0].dtype)]
        return [((None,), ins[0].dtype)]

    def run(self, start, limit, delta):
        s, l, d = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
        try:
            n = self._count(s, l, d)
        except ValueError as e:
            raise self.error(str(e)) from None
        return ((s + np.arange(n, dtype=start.dtype) * d).astype(start.dtype),)


@register("Dropout")
class Dropout(Op):
    """Inference: y = x and an all-true mask. Training mode with a non-zero ratio is random
    and is refused."""

    n_inputs = (1, 3)
    n_outputs = (1, 2)

    def parse(self, a):
        self.ratio = a.float("ratio", 0.5) if self.opset < 12 else None
        if self.opset < 7 and not a.int("is_test", 0):
            raise self.error("Dropout in training mode (is_test=0) is not supported")

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[0].dtype), (ins[0].shape, np.dtype(np.bool_))]

    def run(self, x, ratio=None, training=None):
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            r = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
            if r != 0:
                raise self.error("Dropout in training mode is random and not supported")
        mask = np.ones(x.shape, dtype=np.bool_) if self.wants(1) else None
        return (x, mask)


@register("CumSum")
class CumSum(Op):
    n_inputs = (2, 2)

    def parse(self, a):
        self.exclusive = a.int("exclusive", 0)
        self.reverse = a.int("reverse", 0)

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[0].dtype)]

    def run(self, x, axis):
        ax = dims.norm_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
        y = np.flip(x, ax) if self.reverse else x
        c = np.cumsum(y, axis=ax, dtype=x.dtype)
        if self.exclusive:
            c = c - y
        return (np.flip(c, ax) if self.reverse else c,)
