"""AdaRound: learned weight rounding (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020).

Nearest rounding of each weight is optimal per weight but not per layer: what matters is the
layer's output. With the scale s fixed (the same per-channel grid quantize_graph uses), each
weight rounds down or up, chosen per layer by minimizing

    || X~ W~^T - X W^T ||^2 / || X W^T ||^2  +  lambda * mean(1 - |2 h(V) - 1|^beta)
    W~ = s * clip(floor(W / s) + h(V), qmin, qmax)
    h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)       (rectified sigmoid)

X: the layer's float inputs (im2col rows for a convolution) on calibration samples, X~ the
same through the input's quantization. The regularizer drives every h to 0 or 1 as beta
anneals from 20 to 2 after a warm-up; the final code is floor(W / s) + (h >= 0.5).
Only Gram matrices enter an iteration (G = X~^T X~, T = W X^T X~; per group of a grouped or
depthwise convolution), so an iteration costs O(out x K^2), independent of the number of
samples: cheap for small and medium layers, slow for K in the thousands (expect minutes for
an ImageNet-size ResNet). numpy only, Adam, deterministic.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np

from ..graph import Graph
from ..ops import make_op
from ..ops.spatial import forward_geometry, pad_spatial, windows
from ..runtime.reference import ReferenceExecutor
from .params import QParams, fake_quantize
from .qdq import QuantizeOptions, plan_roles, quantize_weight, weight_spec

__all__ = ["adaround", "adaround_layer"]

ZETA, GAMMA = 1.1, -0.1


def adaround(graph: Graph, observers: dict, options: QuantizeOptions, samples: list[dict], *,
             iterations: int = 1000, reg: float = 0.01, lr: float = 1e-2, warmup: float = 0.2,
             max_rows: int = 8192, seed: int = 0, layers: Optional[list] = None) -> dict:
    """{node name: (int8 codes, QParams)} for quantize_graph(weight_codes=...): every Conv and
    Gemm/MatMul that will run int8 (or those named in `layers`), rounded by AdaRound on
    `samples` (calibration feeds)."""
    if not samples:
        return {}
    roles = plan_roles(graph, options)
    quantized = set(roles.quantized)
    todo = []
    for node in graph.nodes:
        if roles.role.get(node.name) != "compute" or node.op_type not in ("Conv", "Gemm",
                                                                           "MatMul"):
            continue
        if layers is not None and node.name not in layers:
            continue
        spec = weight_spec(graph, node)
        if spec is None or (node.op_type == "MatMul" and spec[1].ndim != 2):
            continue
        x = node.inputs[0]
        qp = None
        if x in quantized:
            qp = observers[roles.inherits.get(x, x)].qparams(
                bits=options.activation_bits, signed=False,
                symmetric=options.symmetric_activations)
        todo.append((node, spec, qp))
    if not todo:
        return {}
    rng = np.random.default_rng(seed)
    ex = ReferenceExecutor(graph)
    inputs = list(dict.fromkeys(n.inputs[0] for n, *_ in todo))
    rows: dict[str, list] = {n.name: [] for n, *_ in todo}
    per_feed = max(1, max_rows // len(samples))
    for feeds in samples:
        acts = ex.run(feeds, outputs=inputs)
        for node, (_, w, _), _ in todo:
            cols = _columns(graph, node, acts[node.inputs[0]], w)
            if cols.shape[1] > per_feed:
                cols = cols[:, rng.choice(cols.shape[1], per_feed, replace=False)]
            rows[node.name].append(cols)
    out = {}
    with _one_blas_thread():
        for node, (_, w, axis), qp in todo:
            out[node.name] = _round_layer(node, w, axis, qp, rows.pop(node.name), options,
                                          iterations, reg, lr, warmup)
    return out


def _one_blas_thread():
    """The optimization loop is thousands of small matrix products: a threaded BLAS spends
    more on waking its threads than on the work (20-40x slower on a busy 2-core machine).
    threadpoolctl (a scikit-learn dependency) limits it when installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _round_layer(node, w, axis, qp, cols, options, iterations, reg, lr, warmup):
    """(codes, QParams) of one layer from its collected input rows."""
    x = np.concatenate(cols, axis=1)                            # (groups, P, K)
    xq = fake_quantize(x, qp) if qp is not None else x
    _, wqp = quantize_weight(w, axis, options)
    w2 = _as_matrix(node, w, axis)                              # (groups, out, K)
    s = _as_matrix(node, np.broadcast_to(_per_out(wqp, w, axis), w.shape), axis)
    q = adaround_layer(w2, s, x, xq, wqp.qmin, wqp.qmax, iterations=iterations, reg=reg,
                       lr=lr, warmup=warmup)
    return _from_matrix(node, q, w.shape, axis).astype(np.int8), wqp


def adaround_layer(w: np.ndarray, s: np.ndarray, x: np.ndarray, xq: np.ndarray, qmin: int,
                   qmax: int, *, iterations: int = 1000, reg: float = 0.01, lr: float = 1e-2,
                   warmup: float = 0.2) -> np.ndarray:
    """Integer codes (same shape as w: (groups, out, K)) minimizing the module docstring's
    loss; s: the scale of every weight (same shape), x / xq: (groups, P, K) inputs."""
    w = w.astype(np.float64)
    s = s.astype(np.float64)
    g = np.matmul(xq.transpose(0, 2, 1), xq)                    # (groups, K, K)
    t = np.matmul(w, np.matmul(x.transpose(0, 2, 1), xq))       # (groups, out, K)
    norm = float(np.einsum("gok,gkl,gol->", w, np.matmul(x.transpose(0, 2, 1), x), w))
    norm = norm if norm > 0 else 1.0
    base = np.floor(w / s)
    rest = w / s - base
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    v = np.log(p / (1 - p))                                     # h(v) = rest at the start
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    b1, b2, eps = 0.9, 0.999, 1e-8
    start = int(warmup * iterations)
    for it in range(iterations):
        sig = 1.0 / (1.0 + np.exp(-v))
        hv = sig * (ZETA - GAMMA) + GAMMA
        inside = (hv > 0) & (hv < 1)
        h = np.clip(hv, 0.0, 1.0)
        codes = base + h
        free = (codes > qmin) & (codes < qmax)
        wq = s * np.clip(codes, qmin, qmax)
        grad_w = 2.0 * (np.matmul(wq, g) - t) / norm            # d recon / d wq
        grad_h = grad_w * s * free
        if it >= start:
            frac = (it - start) / max(1, iterations - start)
            beta = 20.0 + (2.0 - 20.0) * frac
            u = 2.0 * h - 1.0
            grad_h += reg / h.size * (-beta * np.abs(u) ** (beta - 1) * np.sign(u) * 2.0)
        grad_v = grad_h * inside * sig * (1.0 - sig) * (ZETA - GAMMA)
        m1 = b1 * m1 + (1 - b1) * grad_v
        m2 = b2 * m2 + (1 - b2) * grad_v * grad_v
        mh = m1 / (1 - b1 ** (it + 1))
        vh = m2 / (1 - b2 ** (it + 1))
        v -= lr * mh / (np.sqrt(vh) + eps)
    hv = np.clip(1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
    return np.clip(base + (hv >= 0.5), qmin, qmax)


# ---- layouts ------------------------------------------------------------------------------------
def _groups(node) -> int:
    return int(node.attrs.get("group", 1)) if node.op_type == "Conv" else 1


def _columns(graph: Graph, node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The layer's input as rows of its reduction: (groups, rows, K), K ordered as the
    weight's (Cg, *kernel) for a Conv, K for Gemm/MatMul."""
    if node.op_type != "Conv":
        x = x.reshape(-1, x.shape[-1])
        if node.op_type == "Gemm" and int(node.attrs.get("transA", 0)):
            x = x.T
        return x[None].astype(np.float32)
    op = make_op(node, graph.opset)
    r = x.ndim - 2
    k, st, d, _ = op.window.resolved(r, w.shape[2:])
    out, pb, pe = forward_geometry(op.window, x.shape[2:], k)
    v = windows(pad_spatial(x, pb, pe), out, k, st, d)         # (N, C, *out, *k)
    G = _groups(node)
    N, C = x.shape[:2]
    cols = v.reshape(N, G, C // G, *out, *k)
    cols = cols.transpose(1, 0, *range(3, 3 + r), 2, *range(3 + r, 3 + 2 * r))
    return np.ascontiguousarray(cols.reshape(G, -1, (C // G) * int(np.prod(k))),
                                dtype=np.float32)


def _as_matrix(node, w: np.ndarray, axis: int) -> np.ndarray:
    """The weight as (groups, out, K) with K in _columns' order."""
    if node.op_type == "Conv":
        G = _groups(node)
        return np.asarray(w).reshape(G, w.shape[0] // G, -1)
    return np.moveaxis(np.asarray(w), axis, 0).reshape(1, w.shape[axis], -1)


def _from_matrix(node, q: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    if node.op_type == "Conv":
        return q.reshape(shape)
    moved = list(shape)
    moved.insert(0, moved.pop(axis))
    return np.moveaxis(q.reshape(moved), 0, axis)


def _per_out(qp: QParams, w: np.ndarray, axis: int) -> np.ndarray:
    """The scale broadcastable against w (per channel along axis, or one)."""
    if not qp.is_per_axis:
        return np.asarray(qp.scale, np.float64)
    shape = [1] * w.ndim
    shape[axis] = -1
    return qp.scale.astype(np.float64).reshape(shape)
