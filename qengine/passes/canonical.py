"""Canonical spellings: an op that older exporters write another way becomes the op the
quantizer and the int8 lowering know.

- A Sum of two inputs is an Add. Caffe2's exports (the ONNX model zoo's ResNet-50 among them)
  join residual branches with Sum; left as Sum, every join ran in float, between a
  DequantizeLinear and a QuantizeLinear (`qengine bench light_resnet50.onnx --compare
  onnxruntime-int8`: 40.4 -> 19.8 ms with the rewrite). Both ops broadcast the same way from
  opset 8 on (quantization upgrades graphs to opset 13 first) and compute a + b, so the graph
  computes the same. A Sum of three or more inputs stays: as a chain of Adds it would gain a
  rounding per link.
"""
from __future__ import annotations

from ..graph import Graph

__all__ = ["sum_pairs_to_add"]


def sum_pairs_to_add(graph: Graph) -> int:
    """Rewrite every default-domain Sum of exactly two inputs as an Add; returns how many."""
    done = 0
    for node in graph.nodes:
        if node.op_type == "Sum" and node.domain in ("", "ai.onnx") and \
                len(node.inputs) == 2 and all(node.inputs):
            node.op_type = "Add"
            done += 1
    return done
