"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019).

For y = W2 f(W1 x + b1) with f positive homogeneous per channel (ReLU, LeakyReLU, PReLU,
max/average pooling, identity): f(x / s) = f(x) / s for s > 0, so scaling output channel c
of layer 1 by 1/s_c and input channel c of layer 2 by s_c leaves the function unchanged.
With r1_c = max |W1[c, ...]| and r2_c = max |W2[:, c, ...]|, s_c = sqrt(r1_c / r2_c) makes
both ranges sqrt(r1_c r2_c): per-tensor weight scales then fit every channel, and the
activation between the layers loses its outlier channels too. Chains (Conv -> ReLU -> depthwise
Conv -> ReLU -> Conv, as in MobileNets) are equalized pair by pair until the scales settle.

ReLU6 / Clip(0, 6) is not positive homogeneous (the clip would have to move per channel), so
it ends a pair; DFQ replaces it with ReLU first, which changes the model -- qengine does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..graph import Graph, Node

__all__ = ["equalize", "find_pairs", "Pair"]

#: Ops between the two layers that commute with a positive per-channel scale.
HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
               "GlobalMaxPool", "Identity", "Dropout")


@dataclass
class Pair:
    first: str        # node whose output channels are scaled down
    second: str       # node whose input channels are scaled up


def _weight_axes(graph: Graph, node: Node, role: str) -> Optional[tuple]:
    """(weight name, how the channels of `role` ("out" of the first layer, "in" of the second)
    sit in the weight) or None when the node cannot take part."""
    init = graph.initializers
    if len(node.inputs) < 2 or node.inputs[1] not in init:
        return None
    w = init[node.inputs[1]]
    t = node.op_type
    if t == "Conv" and w.ndim >= 3:
        group = int(node.attrs.get("group", 1))
        if role == "out":
            return node.inputs[1], ("axis", 0)
        if group == 1:
            return node.inputs[1], ("axis", 1)
        if w.shape[1] == 1 and w.shape[0] % group == 0:     # depthwise, multiplier m
            return node.inputs[1], ("rows", w.shape[0] // group)
        return None
    if t == "Gemm" and w.ndim == 2 and not int(node.attrs.get("transA", 0)):
        tb = int(node.attrs.get("transB", 0))
        if role == "out":
            return node.inputs[1], ("axis", 0 if tb else 1)
        return node.inputs[1], ("axis", 1 if tb else 0)
    if t == "MatMul" and w.ndim == 2:
        return node.inputs[1], ("axis", 1 if role == "out" else 0)
    return None


def _channel_max(w: np.ndarray, how: tuple, channels: int) -> np.ndarray:
    kind, v = how
    a = np.abs(w.astype(np.float64))
    if kind == "axis":
        return np.moveaxis(a, v, 0).reshape(a.shape[v], -1).max(axis=1)
    return a.reshape(channels, -1).max(axis=1)          # depthwise: m rows per channel


def _scale(w: np.ndarray, how: tuple, s: np.ndarray, divide: bool) -> np.ndarray:
    kind, v = how
    f = 1.0 / s if divide else s
    if kind == "axis":
        shape = [1] * w.ndim
        shape[v] = -1
        return (w.astype(np.float64) * f.reshape(shape)).astype(w.dtype)
    rows = np.repeat(f, v)                              # depthwise: m rows per channel
    return (w.astype(np.float64) * rows.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)


def find_pairs(graph: Graph) -> list[Pair]:
    """Layer pairs joined by a chain of HOMOGENEOUS ops, each tensor read by the next op
    only and no graph output; weights (and the first layer's bias) constants read by no one
    else."""
    readers = graph.consumers_map()
    outs = set(graph.output_names)
    uses = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i in graph.initializers:
                uses[i] = uses.get(i, 0) + 1
    pairs = []
    for n1 in graph.nodes:
        a = _weight_axes(graph, n1, "out")
        if a is None or uses.get(a[0], 0) != 1 or \
                (n1.input(2) and (n1.input(2) not in graph.initializers or uses[n1.input(2)] != 1)):
            continue
        t = n1.outputs[0]
        while True:
            rd = readers.get(t, [])
            if t in outs or len(rd) != 1:
                break
            nxt = rd[0]
            if nxt.op_type in HOMOGENEOUS and nxt.inputs[0] == t and \
                    all(i in graph.initializers or not i for i in nxt.inputs[1:]):
                t = nxt.outputs[0]
                continue
            b = _weight_axes(graph, nxt, "in")
            if b is not None and nxt.inputs[0] == t and uses.get(b[0], 0) == 1:
                pairs.append(Pair(n1.name, nxt.name))
            break
    return pairs


def equalize(graph: Graph, iterations: int = 20, tol: float = 1e-3) -> tuple[Graph, int]:
    """(an equalized copy of `graph`, the number of layer pairs equalized). The function the
    graph computes is unchanged up to float rounding."""
    g = graph.copy()
    pairs = find_pairs(g)
    nodes = {n.name: n for n in g.nodes}
    done = []
    for _ in range(iterations):
        worst = 0.0
        for p in pairs:
            n1, n2 = nodes[p.first], nodes[p.second]
            w1n, h1 = _weight_axes(g, n1, "out")
            w2n, h2 = _weight_axes(g, n2, "in")
            w1, w2 = g.initializers[w1n], g.initializers[w2n]
            c = w1.shape[h1[1]]
            r1 = _channel_max(w1, h1, c)
            r2 = _channel_max(w2, h2, c) if h2[0] == "axis" or w2.shape[0] == c * h2[1] \
                else None
            if r2 is None or r2.shape != r1.shape:
                continue
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            if not np.all(np.isfinite(s)):
                continue
            g.initializers[w1n] = _scale(w1, h1, s, divide=True)
            g.initializers[w2n] = _scale(w2, h2, s, divide=False)
            if n1.input(2):              # a scalar bias becomes one per channel
                b = g.initializers[n1.inputs[2]].astype(np.float64).reshape(-1)
                b = np.full(c, b[0]) if b.size == 1 else b
                g.initializers[n1.inputs[2]] = (b / s).astype(w1.dtype)
            worst = max(worst, float(np.max(np.abs(np.log(s)))))
            if p not in done:
                done.append(p)
        if worst < tol:
            break
    return g, len(done)
