"""Calibration: run the float graph on representative inputs and observe activation ranges.

The float reference executor runs each batch once; every float activation (graph inputs and node
outputs) streams into its own observer, so memory stays bounded however many batches come.
"""
from __future__ import annotations

import sys
from typing import Iterable, Optional

import numpy as np

from ..errors import QuantizationError
from ..graph import Graph
from ..runtime.feeds import iter_batches
from ..runtime.reference import ReferenceExecutor
from .observers import Observer, make_observer

__all__ = ["calibrate", "float_activations", "observer_factory"]


def float_activations(graph: Graph) -> list[str]:
    """Names of the float32 tensors that are not constants: what calibration observes."""
    names = [v.name for v in graph.inputs]
    names += [o for n in graph.nodes for o in n.outputs if o]
    return [n for n in names
            if n not in graph.initializers and graph.value(n).dtype == np.float32]


def _progress(iterable, enabled: Optional[bool], desc: str):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; stay usable without it
        return iterable
    return tqdm(iterable, desc=desc, unit="batch", leave=False)


def observer_factory(graph: Graph, method, options: Optional[dict] = None):
    """name -> a fresh observer. `method` is an observer name (with `options`), or a dict
    choosing per tensor: {tensor name or producing op type: method or (method, options),
    "*": the default (else "minmax" with `options`)}; a tensor name wins over an op type."""
    if isinstance(method, str):
        make_observer(method, **(options or {}))          # fail early on a bad name
        return lambda name: make_observer(method, **(options or {}))
    if not isinstance(method, dict):
        raise QuantizationError(f"method must be an observer name or a dict of them, got "
                                f"{type(method).__name__}")
    op_of = {o: n.op_type for n in graph.nodes for o in n.outputs if o}

    def spec(v):
        if isinstance(v, str):
            return v, dict(options or {})
        if isinstance(v, (tuple, list)) and len(v) == 2 and isinstance(v[0], str) and \
                isinstance(v[1], dict):
            return v[0], dict(v[1])
        raise QuantizationError(f"a per-tensor method must be a name or (name, options), "
                                f"got {v!r}")

    table = {k: spec(v) for k, v in method.items()}
    default = table.get("*", ("minmax", dict(options or {})))
    for m, o in table.values():
        make_observer(m, **o)
    known = set(op_of) | set(op_of.values()) | {v.name for v in graph.inputs} | {"*"}
    unknown = sorted(k for k in table if k not in known)
    if unknown:
        raise QuantizationError(f"method keys {unknown} name no tensor or op type of the "
                                f"model")

    def make(name: str):
        m, o = table.get(name) or table.get(op_of.get(name, "")) or default
        return make_observer(m, **o)
    return make


def calibrate(graph: Graph, data, *, method="minmax", options: Optional[dict] = None,
              tensors: Optional[Iterable[str]] = None, progress: Optional[bool] = None,
              max_batch: int = 64, executor: Optional[ReferenceExecutor] = None
              ) -> dict[str, Observer]:
    """Observe every float activation of `graph` (or just `tensors`) over `data`.

    data: anything qengine.runtime.feeds.iter_batches accepts (an array, a dict, a list or a
    generator of them). method/options: the activation observer (qengine.quant.observers),
    or a per-tensor choice (observer_factory).
    progress: a progress bar over the batches (default: when stderr is a terminal).
    Returns {tensor name: observer}; QuantizationError if a tensor never got a finite value.
    """
    names = list(tensors) if tensors is not None else float_activations(graph)
    make = observer_factory(graph, method, options)
    observers = {n: make(n) for n in names}
    ex = executor or ReferenceExecutor(graph)

    def observe(name: str, value: np.ndarray) -> None:
        obs = observers.get(name)
        if obs is not None and value.dtype == np.float32:
            obs.update(value)

    seen = 0
    for feeds in _progress(iter_batches(graph.inputs, data, max_batch), progress, "calibrating"):
        ex.run(feeds, on_value=observe)
        seen += 1
    empty = [n for n, o in observers.items() if o.count is None]
    if empty:
        raise QuantizationError(f"calibration never produced tensor(s) {empty[:5]}"
                                f"{' ...' if len(empty) > 5 else ''}")
    return observers
