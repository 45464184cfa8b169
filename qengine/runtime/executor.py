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
    """A plan and a pool of run contexts for it."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.free: list = []
        self.lock = threading.Lock()

    def acquire(self) -> "K.RunContext":
        with self.lock:
            if self.free:
                return self.free.pop()
        p = self.plan
        ctx = K.RunContext(p.program, p.arena_bytes, p.arena_slots)
        for slot, arr in p.constants:
            ctx.bind(slot, arr)
        return ctx

    def release(self, ctx) -> None:
        with self.lock:
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

    def run(self, feeds: Mapping, times: Optional[np.ndarray] = None) -> dict:
        """{input name: array} -> {output name: array}. `times` receives per-step seconds."""
        shapes = self._check(feeds)
        compiled = self.plan_for(shapes)
        plan = compiled.plan
        ctx = compiled.acquire()
        try:
            arrays = []
            for name, slot, dtype, _ in plan.inputs:
                x = np.ascontiguousarray(feeds[name])
                arrays.append(x)
                ctx.bind(slot, x)
            for slot, i, shape in plan.input_views:
                ctx.bind(slot, arrays[i].reshape(shape))
            result = {}
            for name, slot, dtype, shape in plan.outputs:
                y = np.empty(shape, dtype=dtype)
                ctx.bind(slot, y)
                result[name] = y
            if self.num_threads:
                K.set_thread_limit(self.num_threads)
            try:
                plan.program.run(ctx, times)
            finally:
                if self.num_threads:
                    K.set_thread_limit(0)
        finally:
            compiled.release(ctx)
        return result
