"""Reductions (Reduce*), ArgMax/ArgMin and TopK.

Reduce* take their axes as an attribute up to a version (ReduceSum 11, the others 17) and as
an optional second input after it; an empty/absent axes list reduces everything unless
noop_with_empty_axes is set.
"""
from __future__ import annotations

import numpy as np

from . import dims
from .registry import Op, register


def _min_value(dt):
    """The identity of max over dtype ``dt`` (what ReduceMax of an empty set gives)."""
    return -np.inf if dt.kind == "f" else (False if dt.kind == "b" else np.iinfo(dt).min)


def _max_value(dt):
    return np.inf if dt.kind == "f" else (True if dt.kind == "b" else np.iinfo(dt).max)


# op type -> (reduction(x, axes, keepdims), opset since which axes is an input)
_REDUCERS = {
    "ReduceSum": (lambda x, ax, kd: np.sum(x, axis=ax, keepdims=kd), 13),
    "ReduceMean": (lambda x, ax, kd: np.mean(x, axis=ax, keepdims=kd), 18),
    "ReduceMax": (lambda x, ax, kd: np.max(x, axis=ax, keepdims=kd,
                                           initial=_min_value(x.dtype)), 18),
    "ReduceMin": (lambda x, ax, kd: np.min(x, axis=ax, keepdims=kd,
                                           initial=_max_value(x.dtype)), 18),
    "ReduceProd": (lambda x, ax, kd: np.prod(x, axis=ax, keepdims=kd), 18),
    "ReduceL1": (lambda x, ax, kd: np.sum(np.abs(x), axis=ax, keepdims=kd), 18),
    "ReduceL2": (lambda x, ax, kd: np.sqrt(np.sum(x * x, axis=ax, keepdims=kd)), 18),
    "ReduceSumSquare": (lambda x, ax, kd: np.sum(x * x, axis=ax, keepdims=kd), 18),
    "ReduceLogSum": (lambda x, ax, kd: np.log(np.sum(x, axis=ax, keepdims=kd)), 18),
    "ReduceLogSumExp": (lambda x, ax, kd: _logsumexp(x, ax, kd), 18),
}


def _logsumexp(x, axes, keepdims):
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    y = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return y if keepdims else np.squeeze(y, axis=axes)


@register(*_REDUCERS)
class Reduce(Op):
    n_inputs = (1, 2)

    def parse(self, a):
        self.fn, since = _REDUCERS[self.op_type]
        self.axes_input = self.opset >= since
        self.keepdims = bool(a.int("keepdims", 1))
        self.noop = bool(a.int("noop_with_empty_axes", 0))
        self.axes = None if self.axes_input else a.ints("axes", None)
        if not self.axes_input and len(self.node.inputs) > 1:
            raise self.error(f"axes is an attribute before opset {since}, not an input")

    def _axes(self, rank, axes_arr):
        axes = self.axes if not self.axes_input else dims.as_ints(axes_arr)
        if not axes:
            return None if not self.noop else ()
        return tuple(dims.norm_axes(axes, rank))

    def infer(self, ins, consts):
        x = ins[0].shape
        known = not self.axes_input or len(ins) < 2 or ins[1] is None or consts[1] is not None
        if x is None or not known:
            return [(None, ins[0].dtype)]
        try:
            axes = self._axes(len(x), consts[1] if self.axes_input and len(ins) > 1 else None)
        except ValueError as e:
            raise self.error(str(e)) from None
        if axes == ():
            return [(x, ins[0].dtype)]
        axes = range(len(x)) if axes is None else axes
        out = tuple(1 if i in axes else d for i, d in enumerate(x)) if self.keepdims else \
            tuple(d for i, d in enumerate(x) if i not in axes)
        return [(out, ins[0].dtype)]

    def run(self, x, axes=None):
        ax = self._axes(x.ndim, axes)
        if ax == ():
            return (x,)
        return (np.asarray(self.fn(x, ax, self.keepdims)).astype(x.dtype, copy=False),)


@register("ArgMax", "ArgMin")
class ArgMax(Op):
    def parse(self, a):
        self.axis = a.int("axis", 0)
        self.keepdims = bool(a.int("keepdims", 1))
        self.last = bool(a.int("select_last_index", 0))

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None:
            return [(None, np.dtype(np.int64))]
        try:
            ax = dims.norm_axis(self.axis, len(x))
        except ValueError as e:
            raise self.error(str(e)) from None
        out = tuple(1 if i == ax else d for i, d in enumerate(x)) if self.keepdims else \
            tuple(d for i, d in enumerate(x) if i != ax)
        return [(out, np.dtype(np.int64))]

    def run(self, x):
        ax = dims.norm_axis(self.axis, x.ndim)
        f = np.argmax if self.op_type == "ArgMax" else np.argmin
        if self.last:
            idx = x.shape[ax] - 1 - f(np.flip(x, axis=ax), axis=ax)
        else:
            idx = f(x, axis=ax)
        if self.keepdims:
            idx = np.expand_dims(idx, ax)
        return (np.asarray(idx, dtype=np.int64),)


@register("TopK")
class TopK(Op):
    """The k largest (or smallest) along ``axis``, sorted; ties keep the lower index first."""

    n_inputs = (1, 2)
    n_outputs = (2, 2)

    def parse(self, a):
        self.axis = a.int("axis", -1)
        self.largest = bool(a.int("largest", 1))
        a.int("sorted", 1)   # unsorted output may be in any order: sorted is one of them
        self.k = a.int("k", lo=0) if self.opset < 10 else None

    def _k(self, k_arr):
        if self.k is not None:
            return self.k
        k = dims.as_ints(k_arr)
        if len(k) != 1 or k[0] < 0:
            raise self.error(f"K must hold one non-negative value, got {k}")
        return k[0]

    def infer(self, ins, consts):
        x = ins[0].shape
        k = self.k if self.k is not None else (
            self._k(consts[1]) if len(consts) > 1 and consts[1] is not None else None)
        if x is None:
            return [(None, ins[0].dtype), (None, np.dtype(np.int64))]
        try:
            ax = dims.norm_axis(self.axis, len(x))
        except ValueError as e:
            raise self.error(str(e)) from None
        if isinstance(k, int) and isinstance(x[ax], int) and k > x[ax]:
            raise self.error(f"K={k} exceeds the axis size {x[ax]}")
        out = tuple(k if i == ax else d for i, d in enumerate(x))
        return [(out, ins[0].dtype), (out, np.dtype(np.int64))]

    def run(self, x, k_arr=None):
        k = self._k(k_arr)
        ax = dims.norm_axis(self.axis, x.ndim)
        n = x.shape[ax]
        if k > n:
            raise self.error(f"K={k} exceeds the axis size {n}")
        if self.largest:
            # Stable ascending sort of the reversed axis, read backwards: descending values,
            # equal values in ascending original index.
            order = np.argsort(np.flip(x, axis=ax), axis=ax, kind="stable")
            idx = (n - 1) - np.flip(order, axis=ax)
        else:
            idx = np.argsort(x, axis=ax, kind="stable")
        idx = np.take(idx, np.arange(k), axis=ax)
        return (np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64))
