"""Dynamic quantization: weights int8 (per output channel) offline, activations quantized at
each run with the range of that run's values -- no calibration data.

The graph form is the one onnxruntime.quantization.quantize_dynamic writes, so a saved model
runs in onnxruntime too:

    x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zp)          (one per activation)
    scale = Mul(x_scale, w_scale)                                (w_scale per column / channel)
    y = Add(Mul(Cast(MatMulInteger(x_q, W_q, x_zp, w_zp), to=float), scale), bias)

(ConvInteger for Conv, the scale and bias shaped (M, 1, 1) to broadcast over NCHW). The
compiler runs "MatMulInteger -> Cast -> Mul -> Add" as one GEMM with a float epilogue
(ops/integer_lowering.py), reading x_zp and the scales per run.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import QuantizationError
from ..graph import Graph, Node
from .observers import make_observer
from .params import quantize

__all__ = ["quantize_dynamic_graph", "DYNAMIC_OPS"]

DYNAMIC_OPS = ("MatMul", "Gemm", "Conv")


class _Writer:
    def __init__(self, g: Graph, bits: int, per_channel: bool):
        self.g, self.bits, self.per_channel = g, bits, per_channel
        self.dql: dict[str, tuple] = {}      # activation -> (x_q, x_scale, x_zp)

    def const(self, base: str, array) -> str:
        return self.g.add_initializer(self.g.unique_name(base), np.asarray(array))

    def quantized_input(self, x: str) -> tuple:
        """The DynamicQuantizeLinear outputs of activation x (one node per activation)."""
        if x not in self.dql:
            g = self.g
            outs = [g.unique_name(x + suffix) for suffix in ("_quantized", "_scale",
                                                             "_zero_point")]
            g.add_node(Node(g.unique_name(x + "_DynamicQuantizeLinear"),
                            "DynamicQuantizeLinear", [x], outs))
            self.dql[x] = tuple(outs)
        return self.dql[x]

    def weight(self, base: str, w: np.ndarray, axis: int):
        """(int8 values, scale, zero point) of a float weight, symmetric, per channel along
        `axis` (or per tensor). The zero point is the scalar 0 even per channel: it is 0 for
        every channel, and onnxruntime's ConvInteger takes only a scalar."""
        obs = make_observer("minmax", axis=axis if self.per_channel else None)
        obs.update(np.asarray(w, np.float32))
        qp = obs.qparams(bits=self.bits, signed=True, symmetric=True)
        return quantize(w, qp), qp.scale, np.zeros((), np.int8)

    def integer_op(self, node: Node, op_type: str, x: str, wq, w_scale, w_zp, bias,
                   attrs: Optional[dict] = None) -> None:
        """Replace `node` by the integer op and its float epilogue (module docstring)."""
        g = self.g
        xq, xs, xz = self.quantized_input(x)
        name = node.name
        w = self.const(name + ".weight_quantized", wq)
        ws = self.const(name + ".weight_scale", w_scale)
        wz = self.const(name + ".weight_zero_point", w_zp)
        scale = g.unique_name(name + "_scale")
        acc = g.unique_name(name + "_int32")
        acc_f = g.unique_name(name + "_int32_float")
        y = node.outputs[0]
        scaled = g.unique_name(name + "_scaled") if bias is not None else y
        nodes = [Node(g.unique_name(name + "_scale_Mul"), "Mul", [xs, ws], [scale]),
                 Node(g.unique_name(name + "_" + op_type), op_type, [xq, w, xz, wz], [acc],
                      dict(attrs or {})),
                 Node(g.unique_name(name + "_Cast"), "Cast", [acc], [acc_f], {"to": 1}),
                 Node(g.unique_name(name + "_Mul"), "Mul", [acc_f, scale], [scaled])]
        if bias is not None:
            nodes.append(Node(g.unique_name(name + "_bias_Add"), "Add",
                              [scaled, self.const(name + ".bias", bias)], [y]))
        at = g.nodes.index(node)
        g.nodes[at:at + 1] = nodes


def _float_act(g: Graph, name: str) -> bool:
    return bool(name) and name not in g.initializers and g.value(name).dtype == np.float32


def _matmul(wr: _Writer, node: Node) -> None:
    g = wr.g
    a, b = node.inputs
    w = g.initializers.get(b)
    if w is None or w.ndim != 2 or w.dtype != np.float32 or not _float_act(g, a):
        return
    wq, s, z = wr.weight(node.name, w, 1)
    wr.integer_op(node, "MatMulInteger", a, wq, s, z, None)


def _gemm(wr: _Writer, node: Node) -> None:
    g = wr.g
    a, b, c = node.inputs[0], node.inputs[1], node.input(2)
    w = g.initializers.get(b)
    if w is None or w.dtype != np.float32 or int(node.attrs.get("transA", 0)) or \
            not _float_act(g, a) or (c and c not in g.initializers):
        return
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    w = w.T if int(node.attrs.get("transB", 0)) else w            # MatMulInteger wants [K, N]
    w = (w * np.float32(alpha)).astype(np.float32) if alpha != 1.0 else w
    bias = None
    if c and beta != 0.0:
        bias = (g.initializers[c] * np.float32(beta)).astype(np.float32)
    wq, s, z = wr.weight(node.name, np.ascontiguousarray(w), 1)
    wr.integer_op(node, "MatMulInteger", a, wq, s, z, bias)


def _conv(wr: _Writer, node: Node) -> None:
    g = wr.g
    x, wname, b = node.inputs[0], node.inputs[1], node.input(2)
    w = g.initializers.get(wname)
    if w is None or w.dtype != np.float32 or w.ndim not in (3, 4) or not _float_act(g, x) or \
            (b and b not in g.initializers):
        return
    wq, s, z = wr.weight(node.name, w, 0)
    trail = (1,) * (w.ndim - 2)                    # (M, 1, 1): broadcasts over NCHW
    s = s.reshape(s.shape + trail) if s.ndim else s
    bias = g.initializers[b].astype(np.float32).reshape((-1,) + trail) if b else None
    wr.integer_op(node, "ConvInteger", x, wq, s, z, bias, node.attrs)


_REWRITERS = {"MatMul": _matmul, "Gemm": _gemm, "Conv": _conv}


def quantize_dynamic_graph(graph: Graph, *, weight_bits: int = 8, per_channel: bool = True,
                           op_types=("MatMul", "Gemm")) -> Graph:
    """The dynamically quantized form of a float graph (a copy; opset >= 11 needed): each
    MatMul / Gemm (/ Conv) of op_types with constant float weights and a float activation.
    Other nodes stay float."""
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, (int, np.integer)) or \
            not 2 <= weight_bits <= 8:
        raise QuantizationError(f"weight_bits must be an integer in [2, 8], got {weight_bits!r}")
    if isinstance(op_types, str):
        op_types = (op_types,)
    unknown = sorted(set(op_types) - set(DYNAMIC_OPS))
    if unknown:
        raise QuantizationError(f"dynamic quantization handles op types {list(DYNAMIC_OPS)}, "
                                f"not {unknown}")
    if graph.opset.get("", 0) < 11:
        raise QuantizationError(f"dynamic quantization needs opset >= 11 (DynamicQuantizeLinear),"
                                f" the graph has {graph.opset.get('')}")
    g = graph.copy()
    wr = _Writer(g, int(weight_bits), bool(per_channel))
    for node in list(g.nodes):
        if node.domain == "" and node.op_type in op_types:
            _REWRITERS[node.op_type](wr, node)
    g.toposort()
    g.prune()
    return g
