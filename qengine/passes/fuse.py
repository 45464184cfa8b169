"""Fusions that keep a graph plain ONNX: BatchNormalization folded into the op before it.

An inference BatchNormalization is a per-channel affine map y = x * f + t with
f = scale / sqrt(var + eps) and t = B - mean * f. When the op before it is a Conv,
ConvTranspose or Gemm with constant weights, whose output nobody else reads, the map folds into
that op's weights and bias (exactly in real arithmetic; in float32 up to rounding), and the
quantizer then sees the weights the network really applies.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..graph import Graph, Node
from ..ops import make_op

__all__ = ["fold_batchnorm"]


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


def fold_batchnorm(graph: Graph) -> int:
    """Fold every BatchNormalization that follows a Conv/ConvTranspose/Gemm with constant
    weights into it. Returns the number folded; unused initializers are pruned."""
    folded = 0
    readers = graph.consumers_map()
    producers = graph.producers_map()
    for bn in [n for n in graph.nodes if n.op_type == "BatchNormalization"]:
        src = producers.get(bn.inputs[0])
        if src is None or src.op_type not in _FOLDERS or src.domain not in ("", "ai.onnx"):
            continue
        if len(src.inputs) < 2 or not graph.is_constant(src.inputs[1]):
            continue
        if len(src.inputs) > 2 and src.inputs[2] and not graph.is_constant(src.inputs[2]):
            continue
        if _sole_reader(graph, readers, src.outputs[0]) is not bn:
            continue
        affine = _bn_affine(graph, bn)
        if affine is None or not _FOLDERS[src.op_type](graph, src, *affine):
            continue
        # the op now writes the BatchNormalization's output directly
        old, new = src.outputs[0], bn.outputs[0]
        kept = graph.values.get(new)
        graph.remove_node(bn)
        src.outputs[0] = new
        if kept is not None:
            graph.values[new] = kept
        graph.values.pop(old, None)
        folded += 1
    if folded:
        graph.prune()
    return folded
