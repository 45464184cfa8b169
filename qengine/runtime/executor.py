"""execute: run a compiled QDQ graph. One Plan per input shape (built on first use and cached),
each wrapped in a K.CompiledPlan that runs one call in compiled code, its run contexts pooled so
several threads can run one model at once (weights are shared)."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Optional

import numpy as np

from .. import _kernels as K
from ..errors import ExecutionError, InputError, ModelError, QEngineError
from ..graph import Graph, format_shape
from .plan import Plan, build_plan

__all__ = ["Executor"]


class Executor:
    """Runs a QDQ graph on the int8 kernels (runtime/plan.py compiles it per input shape).

    num_threads: a cap on the kernel threads this model uses (None: the global setting).
    memory_limit: bytes; a plan whose arena would exceed it raises before allocating."""

    def __init__(self, graph: Graph, *, num_threads: Optional[int] = None,
                 memory_limit: Optional[int] = None):
        if memory_limit is not None and (isinstance(memory_limit, bool) or
                                         not isinstance(memory_limit, (int, np.integer)) or
                                         memory_limit < 0):
            raise InputError(f"memory_limit must be a number of bytes >= 0 (or None), got "
                             f"{memory_limit!r}")
        graph.validate()
        self.graph = graph
        self.num_threads = num_threads
        # the cap handed to each call (0: none); more threads than 1024 is no cap on any CPU
        self._thread_cap = min(int(num_threads), 1024) if num_threads else 0
        self.memory_limit = memory_limit
        self._cache: dict = {}       # node name -> packed weights, shared by every plan
        self._plans: dict = {}
        self._lock = threading.Lock()
        self.inputs = list(graph.inputs)
        self._names = [v.name for v in self.inputs]
        self._dtypes = [np.dtype(v.dtype) if v.dtype is not None else None for v in self.inputs]
        self._single = len(self.inputs) == 1
        self.output_names = graph.output_names

    # -- compile -----------------------------------------------------------------------------
    def plan_for(self, shapes: dict) -> K.CompiledPlan:
        key = tuple(shapes[v.name] for v in self.inputs)
        c = self._plans.get(key)
        if c is None:
            with self._lock:
                c = self._plans.get(key)
                if c is None:
                    plan = _compile(self.graph, shapes, self._cache)
                    threads = K.get_num_threads()
                    need = plan.activation_bytes(min(self._thread_cap or threads, threads))
                    if self.memory_limit is not None and need > self.memory_limit:
                        raise InputError(
                            f"running input shapes {dict(shapes)} needs {need:,} "
                            f"bytes of activations, above the memory limit of "
                            f"{self.memory_limit:,}")
                    c = self._plans[key] = K.CompiledPlan(plan)
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
        try:
            outs = compiled.call(arrays, self._thread_cap, times)
        except MemoryError as e:      # a run context, the outputs or a float op did not fit
            raise _out_of_memory(compiled.plan, e) from e
        return dict(zip(compiled.out_names, outs))

    def run_compiled(self, x) -> Optional[list]:
        """The common call Model.run(array) without dicts: the outputs, in order, of a
        one-input model run on x when x's dtype and shape already have a compiled plan, else
        None (the caller takes the general path, which checks x and compiles)."""
        if self._single and type(x) is np.ndarray and x.dtype == self._dtypes[0]:
            compiled = self._plans.get((x.shape,))
            if compiled is not None:
                try:
                    return compiled.call((x,), self._thread_cap)
                except MemoryError as e:
                    raise _out_of_memory(compiled.plan, e) from e
        return None


def _compile(graph: Graph, shapes: dict, cache: dict) -> Plan:
    """build_plan with one guarantee: whatever goes wrong surfaces as a qengine error naming
    the input shapes (the cause stays chained for bug reports)."""
    try:
        return build_plan(graph, shapes, cache)
    except QEngineError:
        raise
    except MemoryError as e:
        raise ModelError(f"compiling for input shapes {dict(shapes)} ran out of memory: "
                         f"{e}") from e
    except Exception as e:
        raise ModelError(f"cannot compile the model for input shapes {dict(shapes)}: "
                         f"{type(e).__name__}: {e}") from e


def _out_of_memory(plan: Plan, e: MemoryError) -> ExecutionError:
    outs = sum(int(np.prod(shape, dtype=np.float64)) * np.dtype(dt).itemsize
               for _, _, dt, shape in plan.outputs)
    return ExecutionError(f"out of memory: this input shape needs "
                          f"{plan.activation_bytes(K.get_num_threads()):,} bytes "
                          f"of activations and {outs:,.0f} bytes of outputs ({e})")
