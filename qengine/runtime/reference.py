"""The float reference executor: runs any qengine Graph in numpy.

Prepared once (ops resolved, attributes parsed, tensor lifetimes planned), then run many
times, with any value of the symbolic (batch) dims. Its outputs are the ground truth that
calibration and every fidelity figure compare against.

    ex = ReferenceExecutor(graph)
    ex.run({"x": batch})                         # graph outputs, {name: array}
    ex.run({"x": batch}, outputs="all")          # every tensor: inputs and node outputs
    ex.run({"x": batch}, on_value=observer)      # observer(name, array) as tensors appear
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import ExecutionError, InputError, QEngineError
from ..graph import Graph, format_shape
from ..ops import make_op

__all__ = ["ReferenceExecutor", "run_reference"]

Observer = Callable[[str, np.ndarray], None]


class ReferenceExecutor:
    """Runs ``graph`` with the ops' float references.

    ``check_shapes=True`` also verifies that every tensor produced matches the graph's
    inferred shape and dtype (symbols bound consistently): a debugging aid used by the tests.
    The graph is read once, here: edit it afterwards and prepare a new executor.
    """

    def __init__(self, graph: Graph, *, check_shapes: bool = False):
        graph.validate()
        self.graph = graph
        self.check_shapes = check_shapes
        self._ops = [make_op(n, graph.opset) for n in graph.nodes]
        self._inputs = list(graph.inputs)
        self._outputs = graph.output_names
        self._tensors = graph.tensor_names()
        # after step k, the tensors whose last reader is step k can be freed
        last: dict[str, int] = {}
        for k, n in enumerate(graph.nodes):
            for i in n.inputs:
                if i and i not in graph.initializers:
                    last[i] = k
        self._free: list[list[str]] = [[] for _ in graph.nodes]
        for name, k in last.items():
            self._free[k].append(name)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, feeds: Mapping, outputs: Union[None, str, Sequence[str]] = None,
            on_value: Optional[Observer] = None) -> dict:
        """Run the graph on ``feeds`` ({input name: array}).

        ``outputs``: None for the graph outputs, a list of tensor names, or "all" for every
        graph input and node output. Returns {name: array} in that order.
        """
        env, bound = self._check_feeds(feeds)
        want_all = isinstance(outputs, str) and outputs == "all"
        names = self._wanted(outputs)
        keep = set(names)
        if on_value is not None:
            for v in self._inputs:
                on_value(v.name, env[v.name])
        produced = list(self.input_names)
        env.update(self.graph.initializers)
        with np.errstate(all="ignore"):
            for k, (op, node) in enumerate(zip(self._ops, self.graph.nodes)):
                args = [env[i] if i else None for i in node.inputs]
                try:
                    res = op.run(*args)
                except QEngineError:
                    raise
                except Exception as e:
                    shapes = ", ".join("-" if a is None else
                                       f"{a.dtype}{list(a.shape)}" for a in args)
                    raise ExecutionError(f"node {node.name!r} ({node.op_type}) failed on "
                                         f"inputs ({shapes}): {type(e).__name__}: {e}") from e
                assert len(res) >= len(node.outputs), node
                for name, arr in zip(node.outputs, res):
                    if not name:
                        continue
                    if type(arr) is not np.ndarray:    # numpy ufuncs give scalars for 0-d
                        arr = np.asarray(arr)
                    if self.check_shapes:
                        self._check(node, name, arr, bound)
                    env[name] = arr
                    if want_all:
                        produced.append(name)
                    if on_value is not None:
                        on_value(name, arr)
                for name in self._free[k]:
                    if name not in keep:
                        env.pop(name, None)
        if want_all:
            names = produced
        out = {}
        for n in names:
            a = env[n]
            out[n] = a.copy() if n in self.graph.initializers else a
        return out

    __call__ = run

    # -- validation ----------------------------------------------------------------------------
    def _wanted(self, outputs) -> list[str]:
        if outputs is None:
            return list(self._outputs)
        if isinstance(outputs, str):
            if outputs == "all":
                return list(self.input_names) + [o for n in self.graph.nodes
                                                 for o in n.outputs if o]
            outputs = [outputs]
        bad = [o for o in outputs if o not in self._tensors]
        if bad:
            raise InputError(f"unknown output name(s) {bad}: no tensor of the graph is called so")
        return list(outputs)

    def _check_feeds(self, feeds) -> tuple[dict, dict]:
        """Validate the feeds; returns (env with the feeds, {symbol: size})."""
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a dict {{input name: array}}, got "
                             f"{type(feeds).__name__}")
        expected = self.input_names
        unknown = [k for k in feeds if k not in expected]
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; the model's inputs are {expected}")
        missing = [k for k in expected if k not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {expected}")
        env: dict = {}
        bound: dict = {}
        for v in self._inputs:
            x = feeds[v.name]
            if not isinstance(x, np.ndarray):
                try:
                    x = np.asarray(x, dtype=v.dtype)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input {v.name!r}: cannot convert to an array of "
                                     f"{v.dtype}: {e}") from None
            if v.dtype is not None and x.dtype != v.dtype:
                raise InputError(f"input {v.name!r} has dtype {x.dtype}, the model expects "
                                 f"{v.dtype}")
            if v.shape is not None:
                self._match(f"input {v.name!r}", v.shape, x.shape, bound, InputError)
            env[v.name] = x
        return env, bound

    @staticmethod
    def _match(what, expect, got, bound, exc):
        if len(expect) != len(got):
            raise exc(f"{what} has shape {list(got)} (rank {len(got)}), the model expects "
                      f"{format_shape(expect)} (rank {len(expect)})")
        for i, (e, g) in enumerate(zip(expect, got)):
            if isinstance(e, int) and e != g:
                raise exc(f"{what} has shape {list(got)}, the model expects "
                          f"{format_shape(expect)} (dim {i} must be {e})")
            if isinstance(e, str):
                if bound.setdefault(e, g) != g:
                    raise exc(f"{what} has shape {list(got)}: dim {i} ({e!r}) is {g} but "
                              f"{e!r} is {bound[e]} elsewhere")

    def _check(self, node, name, arr, bound):
        v = self.graph.values.get(name)
        if v is None:
            return
        if v.dtype is not None and arr.dtype != v.dtype:
            raise ExecutionError(f"node {node.name!r} ({node.op_type}): {name!r} is "
                                 f"{arr.dtype}, its shape rule says {v.dtype}")
        if v.shape is not None:
            self._match(f"node {node.name!r} ({node.op_type}) output {name!r}", v.shape,
                        arr.shape, bound, ExecutionError)


def run_reference(graph: Graph, feeds: Mapping, outputs=None) -> dict:
    """One-shot convenience: prepare and run."""
    return ReferenceExecutor(graph).run(feeds, outputs)
