"""execute: run a compiled QDQ graph. One Plan per input shape (built on first use and cached),
run contexts pooled so several threads can run one model at once (weights are shared)."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Optional

import numpy as np

from .. import _kernels as K
from ..errors import InputError
from ..graph import Graph, format_shape
from .plan import Plan, build_plan

__all__ = ["Executor"]


class _Compiled:
    """A plan, what one call binds (precomputed), and a pool of run contexts for it."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.free: list = []
        self.in_slots = tuple(slot for _, slot, _, _ in plan.inputs)
        self.out_specs = tuple((slot, shape, dtype) for _, slot, dtype, shape in plan.outputs)
        self.out_names = [name for name, _, _, _ in plan.outputs]

    def acquire(self) -> "K.RunContext":
        try:
            return self.free.pop()      # list.pop / append are atomic: no lock needed
        except IndexError:
            pass
        p = self.plan
        ctx = K.RunContext(p.program, p.arena_bytes, p.arena_slots)
        for slot, arr in p.constants:
            ctx.bind(slot, arr)
        return ctx

    def release(self, ctx) -> None:
        self.free.append(ctx)


class Executor:
    """Runs a QDQ graph on the int8 kernels (runtime/plan.py compiles it per input shape).

    num_threads: a cap on the kernel threads this model uses (None: the global setting).
    memory_limit: bytes; a plan whose arena would exceed it raises before allocating."""

    def __init__(self, graph: Graph, *, num_threads: Optional[int] = None,
                 memory_limit: Optional[int] = None):
        graph.validate()
        self.graph = graph
        self.num_threads = num_threads
        self.memory_limit = memory_limit
        self._cache: dict = {}       # node name -> packed weights, shared by every plan
        self._plans: dict = {}
        self._lock = threading.Lock()
        self.inputs = list(graph.inputs)
        self._names = [v.name for v in self.inputs]
        self._dtypes = [np.dtype(v.dtype) if v.dtype is not None else None for v in self.inputs]
        self.output_names = graph.output_names

    # -- compile -----------------------------------------------------------------------------
    def plan_for(self, shapes: dict) -> _Compiled:
        key = tuple(shapes[v.name] for v in self.inputs)
        c = self._plans.get(key)
        if c is None:
            with self._lock:
                c = self._plans.get(key)
                if c is None:
                    plan = build_plan(self.graph, shapes, self._cache)
                    if self.memory_limit is not None and plan.arena_bytes > self.memory_limit:
                        raise InputError(
                            f"running input shapes {dict(shapes)} needs {plan.arena_bytes:,} "
                            f"bytes of activations, above the memory limit of "
                            f"{self.memory_limit:,}")
                    c = self._plans[key] = _Compiled(plan)
        return c

    # -- run -----------------------------------------------------------------------------------
    def _check(self, feeds: Mapping) -> dict:
        names = [v.name for v in self.inputs]
        if not isinstance(feeds, Mapping):
            raise InputError(f"inputs must be a dict {{name: array}}, got {type(feeds).__name__}")
        unknown = [k for k in feeds if k not in names]
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; the model's inputs are {names}")
        missing = [k for k in names if k not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}")
        shapes, bound = {}, {}
        for v in self.inputs:
            x = feeds[v.name]
            if not isinstance(x, np.ndarray):
                raise InputError(f"input {v.name!r} must be a numpy array, got {type(x).__name__}")
            if v.dtype is not None and x.dtype != v.dtype:
                raise InputError(f"input {v.name!r} has dtype {x.dtype}, the model expects "
                                 f"{np.dtype(v.dtype).name}")
            if v.shape is not None:
                if x.ndim != len(v.shape):
                    raise InputError(f"input {v.name!r} has shape {list(x.shape)}, the model "
                                     f"expects {format_shape(v.shape)}")
                for i, (e, d) in enumerate(zip(v.shape, x.shape)):
                    if isinstance(e, int) and e != d:
                        raise InputError(f"input {v.name!r} has shape {list(x.shape)}, the "
                                         f"model expects {format_shape(v.shape)} (dim {i} must "
                                         f"be {e})")
                    if isinstance(e, str) and bound.setdefault(e, d) != d:
                        raise InputError(f"input {v.name!r}: dim {i} ({e!r}) is {d} but {e!r} "
                                         f"is {bound[e]} in another input")
            if x.size == 0:
                raise InputError(f"input {v.name!r} is empty (shape {list(x.shape)})")
            shapes[v.name] = tuple(int(d) for d in x.shape)
        return shapes

    def _lookup(self, feeds: Mapping) -> tuple:
        """(compiled plan, input arrays in order); the plan of known shapes is found without
        re-validating (a shape that compiled once is valid); anything else goes through
        _check, which names what is wrong."""
        try:
            if len(self.inputs) == 1:          # the common case, without generators
                a = feeds[self._names[0]]
                if len(feeds) == 1 and type(a) is np.ndarray and a.dtype == self._dtypes[0]:
                    c = self._plans.get((a.shape,))
                    if c is not None:
                        return c, (a,)
            else:
                arrays = tuple([feeds[n] for n in self._names])
                if len(feeds) == len(arrays) and all(
                        [type(a) is np.ndarray and a.dtype == d
                         for a, d in zip(arrays, self._dtypes)]):
                    c = self._plans.get(tuple([a.shape for a in arrays]))
                    if c is not None:
                        return c, arrays
        except (KeyError, TypeError):
            pass
        shapes = self._check(feeds)
        return self.plan_for(shapes), tuple(feeds[v.name] for v in self.inputs)

    def run(self, feeds: Mapping, times: Optional[np.ndarray] = None) -> dict:
        """{input name: array} -> {output name: array}. `times` receives per-step seconds."""
        compiled, arrays = self._lookup(feeds)
        plan = compiled.plan
        ctx = compiled.acquire()
        try:
            for slot, i, shape in plan.input_views:
                ctx.bind(slot, np.ascontiguousarray(arrays[i]).reshape(shape))
            if self.num_threads:
                K.set_thread_limit(self.num_threads)
            try:
                outs = plan.program.execute(ctx, arrays, compiled.in_slots, compiled.out_specs,
                                            times)
            finally:
                if self.num_threads:
                    K.set_thread_limit(0)
        finally:
            compiled.release(ctx)
        return dict(zip(compiled.out_names, outs))
