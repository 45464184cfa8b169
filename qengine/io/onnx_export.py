"""Graph -> ONNX ModelProto: saves float graphs and quantized (QDQ) graphs as standard ONNX.

A quantized model saves as the QDQ graph it is (docs/pipeline.md): per-axis DequantizeLinear
needs opset >= 13, which quantization guarantees. `qengine.load` reads the file back into the
same graph, so a saved model reruns bit for bit; onnxruntime runs it as it runs its own.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from ..graph import Graph, Value
from ..ops.registry import onnx_from_dtype

__all__ = ["to_onnx", "save_onnx"]

_MAX_PROTO = 2 ** 31 - 1


def _value_info(v: Value) -> onnx.ValueInfoProto:
    elem = onnx_from_dtype(v.dtype) if v.dtype is not None else onnx.TensorProto.UNDEFINED
    shape = None if v.shape is None else [d if d is not None else None for d in v.shape]
    return helper.make_tensor_value_info(v.name, elem, shape)


def _attribute(name: str, value):
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, numpy_helper.from_array(value))
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(name, [numpy_helper.from_array(v) for v in value])
    if isinstance(value, onnx.AttributeProto):
        return value
    if isinstance(value, (list, tuple)) and not value:
        # an empty list has lost its element type; every empty list attribute ONNX defines
        # (axes, pads, perm, ...) is a list of ints
        return helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS)
    return helper.make_attribute(name, value)


def to_onnx(graph: Graph, *, producer: str = "qengine", doc: str = "") -> onnx.ModelProto:
    """The graph as an ONNX model (opsets from graph.opset)."""
    nodes = []
    for n in graph.nodes:
        node = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name,
                                domain=n.domain or None)
        node.attribute.extend(_attribute(k, v) for k, v in sorted(n.attrs.items()))
        nodes.append(node)
    # (np.ascontiguousarray makes 0-d arrays 1-d: scalar scales would come back as [1])
    inits = [numpy_helper.from_array(np.ascontiguousarray(a).reshape(a.shape), name)
             for name, a in graph.initializers.items()]
    io_names = set(graph.input_names) | set(graph.output_names) | set(graph.initializers)
    infos = [_value_info(v) for name, v in graph.values.items()
             if name not in io_names and v.dtype is not None]
    g = helper.make_graph(nodes, graph.name, [_value_info(graph.value(v.name) if v.dtype is None
                                                          else v) for v in graph.inputs],
                          [_value_info(graph.value(v.name) if v.dtype is None else v)
                           for v in graph.outputs], inits, value_info=infos, doc_string=doc)
    opsets = [helper.make_opsetid(d, v) for d, v in sorted(graph.opset.items())]
    model = helper.make_model(g, opset_imports=opsets, producer_name=producer)
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime releases in use
    return model


def save_onnx(graph: Graph, path: Union[str, os.PathLike], **kw) -> None:
    """Write the graph to `path` (weights inline; external data beyond 2 GiB)."""
    model = to_onnx(graph, **kw)
    try:
        if model.ByteSize() > _MAX_PROTO:
            onnx.save(model, os.fspath(path), save_as_external_data=True,
                      location=os.path.basename(os.fspath(path)) + ".data")
        else:
            onnx.save(model, os.fspath(path))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot write {os.fspath(path)!r}: {e}") from None
