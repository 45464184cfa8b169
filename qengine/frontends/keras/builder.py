"""GraphBuilder: emits ONNX nodes into a qengine Graph while a Keras model is walked.

Every node's output shapes are inferred as it is added (with the op registry's own shape
rules), so a layer converter can ask for the shape of any tensor made so far: 'same' padding,
axis normalisation and weight checks need it. Names stay readable: a node is called
``<layer>/<what>`` and its output tensor carries the same name; constants are
``<layer>/<what>`` too.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ...errors import ModelError, QEngineError
from ...graph import Graph, Node, Value
from ...ops import make_op

__all__ = ["GraphBuilder", "OPSET"]

#: ONNX opset of the graphs we write: 17 has LayerNormalization, keeps ReduceMean's axes as an
#: attribute, and predates Gelu/Mish (20/18), which we spell out with older ops instead.
OPSET = 17


class GraphBuilder:
    """A Graph under construction plus the helpers that keep names unique."""

    def __init__(self, name: str):
        self.graph = Graph(name or "keras_model", opset={"": OPSET})
        self._taken: set[str] = set()

    # -- names --------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        """``base``, else ``base_1``, ``base_2``...: unique among tensors and nodes."""
        base = base or "t"
        name, i = base, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    # -- values -------------------------------------------------------------------------------
    def add_input(self, name: str, shape: Sequence, dtype=np.float32) -> str:
        name = self.unique(name)
        v = Value(name, tuple(shape), dtype)
        self.graph.inputs.append(v)
        self.graph.values[name] = v
        return name

    def const(self, name: str, array, dtype=None) -> str:
        """A new initializer (float arrays become float32, integer arrays int64 unless given)."""
        arr = np.asarray(array)
        if dtype is None:
            dtype = np.int64 if arr.dtype.kind in "iub" else np.float32
        name = self.unique(name)
        self.graph.add_initializer(name, np.ascontiguousarray(arr, dtype=dtype))
        return name

    def shape(self, tensor: str) -> Optional[tuple]:
        return self.graph.value(tensor).shape

    def rank(self, tensor: str) -> int:
        s = self.shape(tensor)
        if s is None:
            raise ModelError(f"the rank of tensor {tensor!r} is unknown")
        return len(s)

    # -- nodes --------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs) -> str:
        """Add one single-output node named ``name`` (made unique; its output tensor has the
        same name) and infer the output's shape at once."""
        node_name = self.unique(name)
        node = Node(node_name, op_type, list(inputs), [node_name], attrs)
        self.graph.nodes.append(node)
        self._infer(node)
        return node_name

    def _infer(self, node: Node) -> None:
        op = make_op(node, self.graph.opset)
        ins = [self.graph.value(i) if i else None for i in node.inputs]
        consts = [self.graph.initializers.get(i) if i else None for i in node.inputs]
        try:
            specs = op.infer(ins, consts)
        except QEngineError:
            raise
        except (ValueError, TypeError, IndexError, ZeroDivisionError) as e:
            raise op.error(f"shape inference failed: {e}") from None
        for out, (shape, dtype) in zip(node.outputs, specs):
            self.graph.set_value(out, shape, dtype)

    def rename(self, old: str, new: str) -> str:
        """Rename tensor ``old`` (a node output) to a unique form of ``new``."""
        new = self.unique(new)
        self.graph.rename_value(old, new)
        return new

    def identity(self, x: str, name: str) -> str:
        return self.op("Identity", [x], name)

    # -- common small patterns ------------------------------------------------------------------
    def transpose(self, x: str, perm: Sequence[int], name: str) -> str:
        return self.op("Transpose", [x], name, perm=[int(p) for p in perm])
