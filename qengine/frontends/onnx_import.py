"""ONNX -> qengine Graph.

Reads models as exporters ship them (opsets 11..current are the target; older graphs are read
where qengine knows the old semantics, else an op reports the version it needs): weights as
initializers, as Constant nodes, or as inputs that shadow initializers (IR < 4); model-local
functions inlined; ONNX shape inference tried (strict off) and merged with qengine's own shape
rules; Identity and inference-mode Dropout removed; constants and shape chains folded.
QOperator nodes (QLinearConv, QGemm, ...) are rewritten into QDQ first (frontends/qoperator.py).
Every failure is a ModelError (UnsupportedOpError for an unknown op) naming what is wrong.
Nothing in the model is ever executed as code.
"""
from __future__ import annotations

import os
import warnings
from typing import Union

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError
from ..graph import Graph, Node, Value
from ..ops import dtype_from_onnx, make_op
from ..passes import infer_shapes, simplify
from .qoperator import rewrite_qoperator

__all__ = ["import_onnx", "load_model_proto"]

ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, onnx.ModelProto]


def load_model_proto(model: ModelLike) -> onnx.ModelProto:
    """Parse ``model`` (path, serialized bytes or ModelProto) into a fresh ModelProto."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as e:
            raise ModelError(f"not a valid ONNX model (protobuf parse failed: {e})") from None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelError(f"no ONNX model file at {path!r}")
        try:
            return onnx.load(path, load_external_data=True)
        except Exception as e:
            raise ModelError(f"cannot load ONNX model {path!r}: {type(e).__name__}: {e}") \
                from None
    raise ModelError(f"cannot import a {type(model).__name__} as an ONNX model: pass a path, "
                     f"bytes or an onnx.ModelProto")


def import_onnx(model: ModelLike, *, fold: bool = True) -> Graph:
    """Import an ONNX model as a qengine :class:`Graph`, ready to run or to quantize.

    ``fold=False`` skips constant and shape-chain folding and dead node removal; Constant
    nodes still become initializers and Identity/inference Dropout are still removed.
    """
    proto = load_model_proto(model)
    if not proto.HasField("graph"):
        raise ModelError("the ONNX model has no graph (empty or not an ONNX file)")
    opset = _opsets(proto)
    if proto.functions:
        try:
            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as e:
            raise ModelError(f"cannot inline the model's local functions: {e}") from None
    graph = _convert(proto.graph, opset)
    declared = set(graph.values)
    hints = _onnx_shape_hints(proto, declared)
    graph.toposort()
    graph.validate()
    rewrite_qoperator(graph)     # QLinearConv, QGemm, ... -> QDQ (frontends/qoperator.py)
    ops = {id(n): make_op(n, opset) for n in graph.nodes}   # unknown op / bad attribute
    _constants_to_initializers(graph, ops)
    _remove_passthrough(graph)
    if fold:
        simplify(graph, declared=declared, hints=hints)
    else:
        infer_shapes(graph, declared=declared, hints=hints)
    graph.validate()
    return graph


def _opsets(proto: onnx.ModelProto) -> dict:
    opset = {}
    for imp in proto.opset_import:
        dom = "" if imp.domain in ("", "ai.onnx") else imp.domain
        opset[dom] = int(imp.version)
    if "" not in opset:
        raise ModelError("the model imports no version of the default ONNX opset")
    if opset[""] < 1:
        raise ModelError(f"invalid default opset version {opset['']}")
    return opset


def _onnx_shape_hints(proto: onnx.ModelProto, declared: set) -> dict:
    """What ONNX's shape inference adds to the model's own declarations, as hints for our
    shape rules (best effort: real exports often defeat it in places, so a failure here only
    loses information, and our rules have the last word)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False,
                                                         data_prop=True)
    except Exception:
        return {}
    hints = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in declared:
            continue
        try:
            hints[vi.name] = _value(vi)
        except ModelError:     # a non-tensor or exotic type: no hint
            pass
    return hints


# -- protobuf -> IR -----------------------------------------------------------------------
def _tensor(t: onnx.TensorProto, what: str) -> np.ndarray:
    dtype_from_onnx(t.data_type, what)      # rejects string/bfloat16/float8/int4 early
    if t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data:
        raise ModelError(f"{what}: its data is stored in an external file; import the model "
                         f"from its path so the data can be found")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:
        raise ModelError(f"{what}: malformed tensor data ({type(e).__name__}: {e})") from None
    expect = tuple(int(d) for d in t.dims)
    if arr.shape != expect:
        raise ModelError(f"{what}: data has shape {list(arr.shape)}, dims say {list(expect)}")
    return arr if arr.flags.c_contiguous else arr.copy()


def _sparse(s: onnx.SparseTensorProto, what: str) -> np.ndarray:
    vals = _tensor(s.values, what + " (values)").reshape(-1)
    idx = _tensor(s.indices, what + " (indices)").astype(np.int64)
    shape = tuple(int(d) for d in s.dims)
    size = int(np.prod(shape))
    flat = np.zeros(size, dtype=vals.dtype)
    if idx.ndim == 2 and len(shape) > 0:
        if idx.shape[1] != len(shape):
            raise ModelError(f"{what}: sparse indices do not match rank {len(shape)}")
        idx = np.ravel_multi_index(tuple(idx.T), shape, mode="raise") if idx.size else \
            idx.reshape(-1)
    idx = idx.reshape(-1)
    if idx.shape[0] != vals.shape[0] or (idx.size and (idx.min() < 0 or idx.max() >= size)):
        raise ModelError(f"{what}: sparse indices are inconsistent with the values or dims")
    flat[idx] = vals
    return flat.reshape(shape)


def _value(vi: onnx.ValueInfoProto) -> Value:
    what = f"value {vi.name!r}"
    tt = vi.type
    if tt.WhichOneof("value") not in (None, "tensor_type"):
        raise ModelError(f"{what} has type {tt.WhichOneof('value')}: only tensors are "
                         f"supported (no sequences, maps or optionals)")
    t = tt.tensor_type
    dtype = dtype_from_onnx(t.elem_type, what) if t.elem_type else None
    if not t.HasField("shape"):
        return Value(vi.name, None, dtype)
    shape = []
    for d in t.shape.dim:
        kind = d.WhichOneof("value")
        if kind == "dim_value":
            if d.dim_value < 0:
                raise ModelError(f"{what} has a negative dimension {d.dim_value}")
            shape.append(int(d.dim_value))
        elif kind == "dim_param" and d.dim_param:
            shape.append(d.dim_param)
        else:
            shape.append(None)
    return Value(vi.name, tuple(shape), dtype)


def _attr(a: onnx.AttributeProto, node: str):
    what = f"node {node!r}: attribute {a.name!r}"
    if a.ref_attr_name:
        raise ModelError(f"{what} refers to a function attribute outside a function")
    T = onnx.AttributeProto
    if a.type == T.TENSOR:
        return _tensor(a.t, what)
    if a.type == T.SPARSE_TENSOR:
        return _sparse(a.sparse_tensor, what)
    if a.type == T.TENSORS:
        return [_tensor(t, what) for t in a.tensors]
    if a.type in (T.GRAPH, T.GRAPHS, T.TYPE_PROTO, T.TYPE_PROTOS, T.SPARSE_TENSORS):
        return a          # only control-flow ops use these, and they are not supported
    try:
        v = onnx.helper.get_attribute_value(a)
    except Exception as e:
        raise ModelError(f"{what} is malformed: {e}") from None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
    return v


def _convert(g: onnx.GraphProto, opset: dict) -> Graph:
    inits = {}
    for t in g.initializer:
        if not t.name:
            raise ModelError("an initializer has no name")
        inits[t.name] = _tensor(t, f"initializer {t.name!r}")
    for s in g.sparse_initializer:
        inits[s.values.name] = _sparse(s, f"sparse initializer {s.values.name!r}")
    # IR < 4 lists weights among the inputs too: those are constants, not inputs
    inputs = [_value(v) for v in g.input if v.name not in inits]
    outputs = [_value(v) for v in g.output]
    values = {v.name: v for v in (_value(v) for v in g.value_info)}
    for v in inputs + outputs:
        values[v.name] = v
    values = {k: v for k, v in values.items() if v.shape is not None or v.dtype is not None}
    nodes, names = [], set()
    for k, n in enumerate(g.node):
        name = n.name or f"{n.op_type or 'node'}_{k}"
        while name in names:
            name = f"{name}_{k}"
        names.add(name)
        attrs = {a.name: _attr(a, name) for a in n.attribute}
        nodes.append(Node(name, n.op_type, list(n.input), list(n.output), attrs,
                          "" if n.domain == "ai.onnx" else n.domain))
    graph = Graph(g.name or "graph", nodes, inputs, outputs, inits, values, opset)
    for v in graph.outputs:
        if not v.name:
            raise ModelError("a graph output has no name")
    return graph


# -- clean-ups -----------------------------------------------------------------------------
def _constants_to_initializers(graph: Graph, ops: dict) -> None:
    """Constant nodes are weights (or shape constants), never activations."""
    for node in list(graph.nodes):
        if node.op_type == "Constant" and node.domain == "":
            value = ops[id(node)].value
            graph.remove_node(node)
            graph.add_initializer(node.outputs[0], value)


def _is_passthrough(graph: Graph, node: Node) -> bool:
    if node.domain != "":
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type != "Dropout":
        return False
    mask = node.outputs[1] if len(node.outputs) > 1 else ""
    if mask and (graph.consumers(mask) or mask in graph.output_names):
        return False
    training = node.input(2)
    if training:     # removable only when training_mode is a constant false
        t = graph.initializers.get(training)
        return t is not None and t.size == 1 and not bool(t.reshape(-1)[0])
    return True


def _remove_passthrough(graph: Graph) -> None:
    """Drop Identity and inference Dropout: readers of the output read the input instead.
    When the output is a graph output, the producer of the input is renamed to it."""
    outputs = set(graph.output_names)
    for node in list(graph.nodes):
        if not _is_passthrough(graph, node):
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if dst not in outputs:
            graph.remove_node(node)
            graph.replace_uses(dst, src)
            continue
        if src in outputs or src in graph.initializers or src in graph.input_names:
            continue     # the output name must survive and cannot move: keep the node
        graph.remove_node(node)
        graph.values.pop(src, None)
        for n in graph.nodes:
            n.inputs = [dst if x == src else x for x in n.inputs]
            n.outputs = [dst if x == src else x for x in n.outputs]

