"""Shape and dtype inference over a graph with the ops' own shape rules.

Three sources meet here. The ops' rules are the authority. Shapes the model *declares*
(graph inputs/outputs, an exporter's value_info) must agree with them: two different static
dims are a shape mismatch, a ModelError naming the node. *Hints* from a weaker source (ONNX's
own shape inference, which has its own gaps and a few disagreements with ONNX's reference,
e.g. MaxPool's ceil_mode) only fill dims the rules leave unknown, and are dropped where they
disagree. When merging, a static dim beats a symbol, and our symbols (carried from the graph
inputs, e.g. the batch "N") beat invented ones.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ModelError, QEngineError
from ..graph import Graph, Shape, format_shape
from ..ops import make_op

__all__ = ["infer_shapes", "merge_shapes"]


def merge_shapes(ours: Shape, theirs: Shape) -> Shape:
    """Combine two descriptions of one tensor's shape; ValueError when they conflict."""
    if ours is None:
        return theirs
    if theirs is None:
        return ours
    if len(ours) != len(theirs):
        raise ValueError(f"rank {len(ours)} vs {len(theirs)}")
    out = []
    for a, b in zip(ours, theirs):
        if isinstance(a, int) and isinstance(b, int) and a != b:
            raise ValueError(f"dim {a} vs {b}")
        if isinstance(a, int) or a is not None and not isinstance(b, int):
            out.append(a)
        else:
            out.append(b)
    return tuple(out)


def _merge_dtype(ours, theirs) -> Optional[np.dtype]:
    if ours is None or theirs is None:
        return ours if theirs is None else theirs
    if np.dtype(ours) != np.dtype(theirs):
        raise ValueError(f"dtype {np.dtype(ours)} vs {np.dtype(theirs)}")
    return ours


def _hint(shape: Shape, dtype, hint) -> tuple:
    """Fill unknowns of (shape, dtype) from a hint Value; ignore the hint on any conflict."""
    if hint is None:
        return shape, dtype
    try:
        if shape is not None and hint.shape is not None:
            filled = tuple(h if d is None else d for d, h in zip(shape, hint.shape))
            merge_shapes(shape, hint.shape)
            shape = filled
        elif shape is None:
            shape = hint.shape
        dtype = _merge_dtype(dtype, hint.dtype)
    except ValueError:
        pass
    return shape, dtype


def infer_shapes(graph: Graph, *, declared: Optional[set] = None,
                 hints: Optional[dict] = None) -> None:
    """Fill ``graph.values`` for every node output, in topological order.

    ``declared``: names whose stored Value is authoritative (None: every stored value is);
    other stored values are recomputed. ``hints``: name -> Value that may fill unknowns.
    """
    hints = hints or {}
    for node in graph.nodes:
        op = make_op(node, graph.opset)
        ins = [graph.value(i) if i else None for i in node.inputs]
        consts = [graph.initializers.get(i) if i else None for i in node.inputs]
        try:
            specs = op.infer(ins, consts)
        except QEngineError:
            raise
        except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError) as e:
            raise op.error(f"shape inference failed on inputs "
                           f"{[format_shape(v.shape) if v else '-' for v in ins]}: {e}") from None
        for name, (shape, dtype) in zip(node.outputs, specs):
            if not name:
                continue
            shape, dtype = _hint(shape, dtype, hints.get(name))
            old = graph.values.get(name)
            if declared is not None and name not in declared:
                old = None
            try:
                shape = merge_shapes(shape, old.shape if old else None)
                dtype = _merge_dtype(dtype, old.dtype if old else None)
            except (ValueError, ModelError) as e:
                raise op.error(f"output {name!r}: the op gives {format_shape(shape)} "
                               f"{_name(dtype)} but the model declares "
                               f"{format_shape(old.shape)} {_name(old.dtype)} ({e})") from None
            graph.set_value(name, shape, dtype)


def _name(dt) -> str:
    return "?" if dt is None else np.dtype(dt).name
