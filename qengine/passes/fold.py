"""Constant folding, shape-chain folding and dead node removal.

- ``fold_constants``: a node whose inputs are all initializers is run once with its float
  reference and replaced by initializers; so is a node whose outputs follow from static
  input shapes (Shape, Size).
- ``fold_shape_chains``: PyTorch and Paddle export ``x.view(x.size(0), -1)`` as
  Shape -> Gather -> Unsqueeze -> Concat -> Reshape. With a symbolic batch that chain cannot
  be computed at load time, but its meaning can: the chain is tracked as a vector of dims
  (int or symbol), and a Reshape whose target is such a vector gets a constant target where
  each symbol equal to the input's dim at the same position becomes 0 ("copy") and one
  remaining unknown becomes -1. The chain then dies.
- ``simplify``: shape inference, both foldings and pruning, repeated to a fixed point.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import QEngineError
from ..graph import Graph, Node
from ..ops import make_op
from .shapes import infer_shapes

__all__ = ["fold_constants", "fold_shape_chains", "simplify", "MAX_FOLD_ELEMENTS"]

#: outputs larger than this (1 GiB of float32) stay computed at run time: Expand/Tile/
#: ConstantOfShape can make huge tensors from tiny ones. Real weights are smaller (VGG-19's
#: fc6, stored as a ConstantOfShape in ONNX's test zoo, has 103M elements).
MAX_FOLD_ELEMENTS = 1 << 28


def fold_constants(graph: Graph, max_elements: int = MAX_FOLD_ELEMENTS) -> int:
    """Replace constant-computable nodes by initializers; returns how many were folded."""
    folded = 0
    for node in list(graph.nodes):
        op = make_op(node, graph.opset)
        present = [i for i in node.inputs if i]
        sizes = [graph.value(o).numel() for o in node.outputs if o]
        if any(n is not None and n > max_elements for n in sizes):
            continue    # known to be too large: do not even compute it
        if op.foldable and all(i in graph.initializers for i in present):
            try:
                outs = op.run(*[graph.initializers[i] if i else None for i in node.inputs])
            except QEngineError:
                raise
            except Exception as e:   # the model itself is inconsistent
                raise op.error(f"cannot evaluate on its constant inputs: "
                               f"{type(e).__name__}: {e}") from None
        else:
            outs = op.fold_static([graph.value(i) if i else None for i in node.inputs])
            if outs is None:
                continue
        named = [(n, o) for n, o in zip(node.outputs, outs) if n]
        if any(o is None or np.asarray(o).size > max_elements for _, o in named):
            continue
        graph.remove_node(node)
        for name, arr in named:
            graph.add_initializer(name, np.asarray(arr))
        folded += 1
    return folded


# -- shape chains -------------------------------------------------------------------------
class _Vec:
    """A 0-D or 1-D integer tensor known as a list of dims (int, symbol or None)."""

    def __init__(self, items, scalar=False, dtype=np.int64):
        self.items, self.scalar, self.dtype = list(items), scalar, np.dtype(dtype)

    def like(self, items, scalar=None) -> "_Vec":
        return _Vec(items, self.scalar if scalar is None else scalar, self.dtype)

    def constant(self) -> Optional[np.ndarray]:
        """The tensor itself when every item is a known integer."""
        if not all(isinstance(d, int) for d in self.items):
            return None
        arr = np.array(self.items, dtype=self.dtype)
        return arr.reshape(()) if self.scalar else arr


def _const_vec(arr: Optional[np.ndarray]) -> Optional[_Vec]:
    if arr is None or arr.dtype.kind not in "iu" or arr.ndim > 1 or arr.size > 64:
        return None
    return _Vec([int(v) for v in arr.reshape(-1)], arr.ndim == 0, arr.dtype)


def _vec_rule(graph: Graph, node: Node, get) -> Optional[_Vec]:
    """The dims vector a node outputs when its inputs are dims vectors, else None."""
    t, ins = node.op_type, node.inputs
    if t == "Shape":
        shape = graph.value(ins[0]).shape
        if shape is None:
            return None
        return _Vec(list(shape)[slice(node.attrs.get("start", 0), node.attrs.get("end"))])
    args = [get(i) for i in ins if i]
    if not args or any(a is None for a in args):
        return None
    if t == "Identity":
        return args[0]
    if t == "Cast" and node.attrs.get("to") in (6, 7):     # to int32 / int64
        return _Vec(args[0].items, args[0].scalar, np.int32 if node.attrs["to"] == 6 else np.int64)
    if t == "Gather" and node.attrs.get("axis", 0) == 0 and all(
            isinstance(v, int) for v in args[1].items):
        v, n = args[0].items, len(args[0].items)
        if any(not -n <= i < n for i in args[1].items):
            return None
        return args[0].like([v[i] for i in args[1].items], scalar=args[1].scalar)
    if t == "Unsqueeze" and args[0].scalar:
        return args[0].like(args[0].items, scalar=False)
    if t == "Squeeze" and not args[0].scalar and len(args[0].items) == 1:
        return args[0].like(args[0].items, scalar=True)
    if t == "Concat" and not any(a.scalar for a in args):
        return args[0].like([d for a in args for d in a.items])
    if t == "Slice" and len(args) >= 3 and all(all(isinstance(v, int) for v in a.items)
                                               for a in args[1:]):
        starts, ends = args[1].items, args[2].items
        axes = args[3].items if len(args) > 3 else [0]
        steps = args[4].items if len(args) > 4 else [1]
        if len(starts) == 1 and axes in ([0], [-1]) and steps[0] != 0:
            return args[0].like(args[0].items[slice(starts[0], ends[0], steps[0])])
    return None


def _reshape_target(data_shape, vec: _Vec, allowzero: bool) -> Optional[list]:
    """A constant Reshape target equivalent to the dims vector, or None."""
    out, unknown = [], []
    for i, d in enumerate(vec.items):
        if isinstance(d, int):
            out.append(d)
        elif (not allowzero and d is not None and data_shape is not None
              and i < len(data_shape) and data_shape[i] == d):
            out.append(0)
        else:
            out.append(None)
            unknown.append(i)
    if len(unknown) > 1 or (unknown and -1 in out):
        return None
    if unknown:
        out[unknown[0]] = -1
    return out


def fold_shape_chains(graph: Graph) -> int:
    """Fold the parts of shape chains that are static (e.g. Gather of a static dim from the
    Shape of a tensor with a symbolic batch) and give Reshapes fed by symbolic chains a
    constant target. Returns the number of changes."""
    vecs: dict[str, _Vec] = {}

    def get(name):
        return vecs.get(name) or _const_vec(graph.initializers.get(name))

    changed = 0
    for node in graph.nodes:
        if node.op_type == "Reshape" and node.input(1) in vecs:
            target = _reshape_target(graph.value(node.inputs[0]).shape, vecs[node.inputs[1]],
                                     bool(node.attrs.get("allowzero", 0)))
            if target is not None:
                name = graph.unique_name(node.inputs[1] + "_const")
                graph.add_initializer(name, np.array(target, dtype=np.int64))
                node.inputs[1] = name
                changed += 1
            continue
        v = _vec_rule(graph, node, get)
        if v is None or not node.outputs or not node.outputs[0]:
            continue
        vecs[node.outputs[0]] = v
        value = v.constant()
        if value is not None and len(node.outputs) == 1:
            graph.remove_node(node)
            graph.add_initializer(node.outputs[0], value)
            changed += 1
    return changed


def simplify(graph: Graph, max_rounds: int = 16, declared=None, hints=None) -> Graph:
    """Infer shapes, fold constants and shape chains, prune dead nodes, until nothing
    changes. Edits ``graph`` in place and returns it. ``declared``/``hints``: see
    :func:`~qengine.passes.shapes.infer_shapes`."""
    for _ in range(max_rounds):
        infer_shapes(graph, declared=declared, hints=hints)
        changed = fold_constants(graph) + fold_shape_chains(graph)
        changed += graph.prune()
        if not changed:
            break
    infer_shapes(graph, declared=declared, hints=hints)
    return graph
