"""Empirical bias correction (Nagel et al. 2019, section 4.2; Finkelstein et al. 2019).

Quantizing a layer's weights and input shifts the mean of its output: E[W~ x~] != E[W x],
most of all with few weight bits, per-tensor scales or depthwise layers (few taps per output).
A per-channel shift in the pre-activation is exactly what a bias absorbs, so for every layer
that will run int8:

    shift[c] = mean over samples and positions of ( op(x, W)[c] - op(fq(x), W~)[c] )
    bias[c] += shift[c]

x: the layer's float input on calibration samples; fq(x): x through the input's own
quantization (rounding and clipping); W~: the weights exactly as quantize_graph will store
them (AdaRound's rounding when given). Each layer is corrected for the error it adds itself,
independently of the others (a correction measured on the quantized model's inputs would
also re-correct upstream errors that upstream layers already correct).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..graph import Graph
from ..ops import make_op
from ..runtime.reference import ReferenceExecutor
from .params import dequantize, fake_quantize
from .qdq import QuantizeOptions, plan_roles, quantize_weight, weight_spec

__all__ = ["bias_correction"]

_OPS = ("Conv", "ConvTranspose", "Gemm")


def bias_correction(graph: Graph, observers: dict, options: QuantizeOptions,
                    samples: list[dict], *, weight_codes: Optional[dict] = None) -> dict:
    """{node name: float32 shift per output channel} for quantize_graph(bias_shift=...).

    samples: calibration feeds (quant/holdout.py keeps the first ones)."""
    if not samples:
        return {}
    roles = plan_roles(graph, options)
    quantized = set(roles.quantized)
    layers = []
    for node in graph.nodes:
        if roles.role.get(node.name) != "compute" or node.op_type not in _OPS:
            continue
        spec = weight_spec(graph, node)
        if spec is None:
            continue
        _, w, axis = spec
        given = (weight_codes or {}).get(node.name)
        codes, wqp = given if given is not None else quantize_weight(w, axis, options)
        x = node.inputs[0]
        qp = None
        if x in quantized:
            root = roles.inherits.get(x, x)
            qp = observers[root].qparams(bits=options.activation_bits, signed=False,
                                         symmetric=options.symmetric_activations)
        layers.append((node, w, dequantize(codes, wqp), qp))
    if not layers:
        return {}
    sums = {n.name: None for n, *_ in layers}
    counts = dict.fromkeys(sums, 0)
    ex = ReferenceExecutor(graph)
    wanted = list(dict.fromkeys(n.inputs[0] for n, *_ in layers))
    for feeds in samples:
        acts = ex.run(feeds, outputs=wanted)
        for node, w, wq, qp in layers:
            x = acts[node.inputs[0]]
            xq = fake_quantize(x, qp) if qp is not None else x
            d = _linear(graph, node, x, w) - _linear(graph, node, xq, wq)
            axes = tuple(i for i in range(d.ndim) if i != 1)    # channels: axis 1 of NC... / MN
            s = d.astype(np.float64).sum(axis=axes)
            sums[node.name] = s if sums[node.name] is None else sums[node.name] + s
            counts[node.name] += d.size // d.shape[1]
    return {k: (v / counts[k]).astype(np.float32) for k, v in sums.items()
            if v is not None and counts[k]}


def _linear(graph: Graph, node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The node's op on (x, w) without bias (a Gemm's alpha is already in w)."""
    n = node.copy()
    n.inputs = [n.inputs[0], n.inputs[1]]
    if n.op_type == "Gemm":
        n.attrs["alpha"] = 1.0
    (y,) = make_op(n, graph.opset).run(x, w)[:1]
    return y
