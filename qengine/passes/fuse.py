"""Fusions that keep a graph plain ONNX: per-channel affine maps folded into the op before
them, and BatchNormalizations with no such op made convolutions.

An inference BatchNormalization is a per-channel affine map y = x * f + t with
f = scale / sqrt(var + eps) and t = B - mean * f; so is a Mul or an Add by a per-channel
constant (t = 0, or f = 1). When the op before it is a Conv, ConvTranspose or Gemm with
constant weights, whose output nobody else reads, the map folds into that op's weights and bias
(exactly in real arithmetic; in float32 up to rounding), and the quantizer then sees the
weights the network really applies (fold_channel_affines). A BatchNormalization after anything
else is the depthwise 1x1 Conv with weights f and bias t (batchnorm_to_depthwise), which the
int8 kernels run.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..graph import Graph, Node
from ..ops import dims, make_op

__all__ = ["fold_channel_affines", "batchnorm_to_depthwise"]


def _bn_affine(graph: Graph, bn: Node) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(f, t) of an inference BatchNormalization with constant parameters, else None."""
    if len([o for o in bn.outputs if o]) != 1 or not all(graph.is_constant(i) for i in bn.inputs[1:5]):
        return None
    op = make_op(bn, graph.opset)
    scale, b, mean, var = (graph.initializers[i].astype(np.float64) for i in bn.inputs[1:5])
    f = scale / np.sqrt(var + op.eps)
    return f, b - mean * f


def _sole_reader(graph: Graph, readers: dict, name: str) -> Optional[Node]:
    users = readers.get(name, [])
    if len(users) != 1 or name in graph.output_names:
        return None
    return users[0]


def _fold_into_conv(graph: Graph, conv: Node, f: np.ndarray, t: np.ndarray) -> bool:
    w = graph.initializers[conv.inputs[1]]
    M = w.shape[0]
    if f.shape != (M,):
        return False
    b = graph.initializers[conv.inputs[2]] if len(conv.inputs) > 2 and conv.inputs[2] else \
        np.zeros(M, w.dtype)
    w2 = w.astype(np.float64) * f.reshape((M,) + (1,) * (w.ndim - 1))
    b2 = b.astype(np.float64) * f + t
    _set_weights(graph, conv, w2.astype(w.dtype), b2.astype(w.dtype))
    return True


def _fold_into_conv_transpose(graph: Graph, conv: Node, f: np.ndarray, t: np.ndarray) -> bool:
    w = graph.initializers[conv.inputs[1]]  # (C, M/g, *k)
    g = int(conv.attrs.get("group", 1))
    C, Mg = w.shape[:2]
    M = Mg * g
    if f.shape != (M,) or C % g:
        return False
    b = graph.initializers[conv.inputs[2]] if len(conv.inputs) > 2 and conv.inputs[2] else \
        np.zeros(M, w.dtype)
    wg = w.astype(np.float64).reshape((g, C // g, Mg) + w.shape[2:])
    wg = wg * f.reshape((g, 1, Mg) + (1,) * (w.ndim - 2))
    _set_weights(graph, conv, wg.reshape(w.shape).astype(w.dtype),
                 (b.astype(np.float64) * f + t).astype(w.dtype))
    return True


def _fold_into_gemm(graph: Graph, gemm: Node, f: np.ndarray, t: np.ndarray) -> bool:
    w = graph.initializers[gemm.inputs[1]]
    tb = int(gemm.attrs.get("transB", 0))
    N = w.shape[0] if tb else w.shape[1]
    if f.shape != (N,) or w.ndim != 2:
        return False
    alpha, beta = float(gemm.attrs.get("alpha", 1.0)), float(gemm.attrs.get("beta", 1.0))
    c = graph.initializers[gemm.inputs[2]] if len(gemm.inputs) > 2 and gemm.inputs[2] else None
    if c is not None and c.size not in (1, N):
        return False  # a bias that varies along rows is no per-column affine map
    c = np.zeros(N) if c is None else np.broadcast_to(c.reshape(-1), (N,)).astype(np.float64)
    w2 = w.astype(np.float64) * alpha * (f[:, None] if tb else f[None, :])
    gemm.attrs["alpha"], gemm.attrs["beta"] = 1.0, 1.0
    _set_weights(graph, gemm, w2.astype(w.dtype), (c * beta * f + t).astype(w.dtype))
    return True


def _set_weights(graph: Graph, node: Node, w: np.ndarray, b: np.ndarray) -> None:
    """Give `node` fresh weight and bias initializers (old ones may be shared)."""
    wn = graph.unique_name(node.name + ".weight_folded")
    graph.add_initializer(wn, w)
    bn = graph.unique_name(node.name + ".bias_folded")
    graph.add_initializer(bn, b)
    while len(node.inputs) < 3:
        node.inputs.append("")
    node.inputs[1], node.inputs[2] = wn, bn


_FOLDERS = {"Conv": _fold_into_conv, "ConvTranspose": _fold_into_conv_transpose,
            "Gemm": _fold_into_gemm}


def _channel_vector(graph: Graph, const: str, act: str) -> Optional[np.ndarray]:
    """The float32 constant `const` as one value per channel (axis 1) of the activation `act`
    it is broadcast against, or None when it varies along another axis or would widen `act`."""
    c = graph.initializers.get(const)
    v = graph.value(act)
    if c is None or c.dtype != np.float32 or v is None or v.shape is None or len(v.shape) < 2:
        return None
    rank, M = len(v.shape), v.shape[1]
    if c.ndim > rank or not isinstance(M, int):
        return None
    if not dims.only_axis(c.shape, rank, 1) or c.size not in (1, M):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (M,))


def _affine_of(graph: Graph, node: Node, act: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(f, t) when `node` computes act * f + t per channel: an inference BatchNormalization,
    or a Mul / Add of act and a per-channel constant (Caffe2's AffineChannel, and the scale
    and shift its DenseNet exports write after each BatchNormalization)."""
    if node.op_type == "BatchNormalization":
        return _bn_affine(graph, node) if node.inputs[0] == act else None
    if node.op_type not in ("Mul", "Add") or len(node.inputs) != 2 or act not in node.inputs:
        return None
    other = node.inputs[1] if node.inputs[0] == act else node.inputs[0]
    vec = _channel_vector(graph, other, act)
    out = graph.value(node.outputs[0])
    if vec is None or out is None or out.shape != graph.value(act).shape:
        return None
    one, zero = np.ones_like(vec), np.zeros_like(vec)
    return (vec, zero) if node.op_type == "Mul" else (one, vec)


def fold_channel_affines(graph: Graph) -> int:
    """Fold every per-channel affine node (an inference BatchNormalization, a Mul or an Add by
    a per-channel constant) that follows a Conv/ConvTranspose/Gemm with constant weights into
    it. One pass in graph order folds chains too (BatchNormalization -> Mul -> Add: each link
    then follows the op that absorbed the one before). Returns the number folded; unused
    initializers are pruned."""
    folded = 0
    readers = graph.consumers_map()
    producers = graph.producers_map()
    for node in [n for n in graph.nodes if n.op_type in ("BatchNormalization", "Mul", "Add")
                 and n.domain in ("", "ai.onnx")]:
        src = next((producers[i] for i in node.inputs if i in producers and
                    producers[i].op_type in _FOLDERS), None)
        if src is None or src.domain not in ("", "ai.onnx"):
            continue
        if len(src.inputs) < 2 or not graph.is_constant(src.inputs[1]):
            continue
        if len(src.inputs) > 2 and src.inputs[2] and not graph.is_constant(src.inputs[2]):
            continue
        if _sole_reader(graph, readers, src.outputs[0]) is not node:
            continue
        affine = _affine_of(graph, node, src.outputs[0])
        if affine is None or not _FOLDERS[src.op_type](graph, src, *affine):
            continue
        # the op now writes the affine node's output directly (and the maps say so)
        old, new = src.outputs[0], node.outputs[0]
        kept = graph.values.get(new)
        graph.remove_node(node)
        src.outputs[0] = new
        if kept is not None:
            graph.values[new] = kept
        graph.values.pop(old, None)
        producers.pop(old, None)
        readers.pop(old, None)
        producers[new] = src
        folded += 1
    if folded:
        graph.prune()
    return folded


def batchnorm_to_depthwise(graph: Graph) -> int:
    """Every inference BatchNormalization left after fold_channel_affines (one that follows a
    Concat or an Add: DenseNet's and pre-activation ResNets' BN -> ReLU -> Conv) becomes the
    depthwise 1x1 Conv it equals: weights f, bias t, one group per channel. As a Conv it
    quantizes with per-channel weights and an int32 bias and runs on the int8 kernels; as a
    BatchNormalization it ran in float, between a DequantizeLinear and a QuantizeLinear (the
    ONNX model zoo's DenseNet-121, `qengine bench light_densenet121.onnx --compare
    onnxruntime-int8`: 67.3 -> 15.0 ms). Returns the number rewritten."""
    done = 0
    for bn in [n for n in graph.nodes if n.op_type == "BatchNormalization" and
               n.domain in ("", "ai.onnx")]:
        v = graph.value(bn.inputs[0])
        affine = _bn_affine(graph, bn)
        # 1-D and 2-D maps: the int8 convolutions' (a 3-D one would run in float, slower
        # than the BatchNormalization it replaced)
        if affine is None or v is None or v.shape is None or len(v.shape) not in (3, 4) or \
                v.dtype != np.float32 or graph.initializers[bn.inputs[1]].dtype != np.float32:
            continue
        f, t = affine
        C, rank = f.shape[0], len(v.shape)
        w = graph.add_initializer(graph.unique_name(bn.name + ".depthwise_weight"),
                                  f.astype(np.float32).reshape((C, 1) + (1,) * (rank - 2)))
        b = graph.add_initializer(graph.unique_name(bn.name + ".depthwise_bias"),
                                  t.astype(np.float32))
        at, out = graph.nodes.index(bn), bn.outputs[0]
        kept = graph.values.get(out)
        graph.remove_node(bn)
        graph.add_node(Node(bn.name, "Conv", [bn.inputs[0], w, b], [out],
                            {"group": int(C), "kernel_shape": [1] * (rank - 2)}), at)
        if kept is not None:
            graph.values[out] = kept
        done += 1
    if done:
        graph.prune()
    return done
