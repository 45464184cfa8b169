"""QOperator models -> the QDQ form every other part of qengine reads (docs/pipeline.md).

onnxruntime's quantize_static(quant_format=QOperator) and other tools write quantized ops that
take integer tensors plus their scales and zero points: ONNX's QLinearConv and QLinearMatMul,
com.microsoft's QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool,
QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearReduceMean,
QLinearWhere and QGemm. Each is rewritten at import into what it means:

    y = QuantizeLinear(op(DequantizeLinear(x, x_scale, x_zp), ...), y_scale, y_zp)

so the compiler lowers it exactly like the QDQ graphs qengine writes. Conventions kept:
- per-channel weight scales become per-axis DequantizeLinear (QLinearConv: axis 0; QGemm: the
  column axis of B; QLinearMatMul: b per column, a and y per row);
- QLinearConv's / QGemm's int32 bias is dequantized with scale x_scale * w_scale (QGemm:
  times alpha, which is folded into B's scale when it is constant);
- QGemm without y_scale has a float output: with a constant B it becomes MatMulInteger ->
  Add(C) -> Cast -> Mul(a_scale * b_scale), which the compiler fuses into one GEMM;
- QLinearConcat's inputs are (y_scale, y_zp, then (x, x_scale, x_zp) triples);
- channels_last (com.microsoft QLinearConv / pools) transposes on the quantized tensors;
- ops that move int8 data without arithmetic (onnxruntime runs Reshape, Transpose, MaxPool,
  Resize, Split, Pad... directly on uint8) get DequantizeLinear / QuantizeLinear with their
  input's parameters, which the compiler turns back into uint8 data movement;
- a missing zero point is 0 of the tensor's type (uint8 when the type is unknown).
int8 activations need nothing here: QDQ carries their type and the compiler shifts them.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..errors import ModelError
from ..graph import Graph, Node
from ..ops import get_op, make_op

__all__ = ["rewrite_qoperator", "QOPERATOR_OPS"]


class _Rewriter:
    """Builds the replacement nodes; tracks the parameters of every quantized tensor it sees."""

    def __init__(self, g: Graph):
        self.g = g
        self.taken = g.tensor_names() | {n.name for n in g.nodes} | set(g.values)
        self.consts = {n.outputs[0]: n.attrs["value"] for n in g.nodes
                       if n.op_type == "Constant" and n.domain == "" and
                       isinstance(n.attrs.get("value"), np.ndarray)}
        self.params: dict[str, tuple] = {}    # quantized tensor -> (scale name, zp name)
        self.dtypes: dict[str, np.dtype] = {}
        self.dq_cache: dict[tuple, str] = {}
        self.out: list[Node] = []
        self.source = ""                     # the name of the node being rewritten

    # -- names, constants, types ---------------------------------------------------------------
    def name(self, base: str) -> str:
        n, i = base, 0
        while n in self.taken:
            i += 1
            n = f"{base}_{i}"
        self.taken.add(n)
        return n

    def const(self, name: str) -> Optional[np.ndarray]:
        if not name:
            return None
        a = self.g.initializers.get(name)
        return a if a is not None else self.consts.get(name)

    def add_const(self, base: str, array) -> str:
        n = self.name(base)
        self.g.add_initializer(n, np.asarray(array))
        return n

    def dtype(self, name: str) -> Optional[np.dtype]:
        c = self.const(name)
        if c is not None:
            return c.dtype
        if name in self.dtypes:
            return self.dtypes[name]
        v = self.g.values.get(name)
        return np.dtype(v.dtype) if v is not None and v.dtype is not None else None

    def size(self, name: str) -> Optional[int]:
        """Number of elements of a parameter (None: unknown)."""
        c = self.const(name)
        if c is not None:
            return int(c.size)
        v = self.g.values.get(name)
        return int(np.prod(v.shape)) if v is not None and v.is_static else None

    def zero_point(self, zp: str, qtype: Optional[np.dtype]) -> str:
        """zp, or for a missing one a 0 of the output's type when it is not uint8 (the type a
        QuantizeLinear without zero point has; a DequantizeLinear takes its input's)."""
        if zp or qtype is None or qtype == np.uint8:
            return zp
        return self.add_const("zero_point", np.zeros((), qtype))

    # -- node emitters -------------------------------------------------------------------------
    def node(self, op_type: str, inputs: list, base: str, attrs: Optional[dict] = None,
             outputs: Optional[list] = None) -> list:
        outs = outputs or [self.name(base)]
        # named after the node it comes from, so errors point at the model's own node
        self.out.append(Node(self.name(f"{self.source}/{op_type}"), op_type, list(inputs), outs,
                             dict(attrs or {})))
        return outs

    def dq(self, x: str, scale: str, zp: str, axis: Optional[int] = None) -> str:
        """DequantizeLinear of x (per axis when the scale has more than one element)."""
        if not x:
            return ""
        per_axis = axis is not None and (self.size(scale) or 1) > 1
        key = (x, scale, zp, axis if per_axis else None)
        if key not in self.dq_cache:
            attrs = {"axis": axis} if per_axis else {}
            self.dq_cache[key] = self.node("DequantizeLinear", [x, scale] + ([zp] if zp else []),
                                           x + "_dequantized", attrs)[0]
        return self.dq_cache[key]

    def q(self, x: str, scale: str, zp: str, out: str, qtype: Optional[np.dtype],
          axis: Optional[int] = None) -> str:
        """QuantizeLinear of the float x into the existing tensor name `out`."""
        zp = self.zero_point(zp, qtype)
        per_axis = axis is not None and (self.size(scale) or 1) > 1
        self.node("QuantizeLinear", [x, scale] + ([zp] if zp else []), out,
                  {"axis": axis} if per_axis else {}, outputs=[out])
        self.params[out] = (scale, zp)
        self.dtypes[out] = self.dtype(zp) if zp else np.dtype(np.uint8)
        return out

    def qop(self, node: Node, op_type: str, ins: list, outs: list, attrs: Optional[dict] = None,
            qtype: Optional[np.dtype] = None):
        """The float op on dequantized inputs, each output (tensor, scale, zp) quantized."""
        floats = self.node(op_type, ins, node.outputs[0] + "_float", attrs,
                           outputs=[self.name(o + "_float") for o, _, _ in outs])
        for f, (o, s, z) in zip(floats, outs):
            self.q(f, s, z, o, qtype)

    def transpose_q(self, x: str, perm: list, scale: str, zp: str) -> str:
        """A Transpose of quantized x that keeps its parameters (movement on uint8 data)."""
        t = self.node("Transpose", [self.dq(x, scale, zp)], x + "_transposed",
                      {"perm": list(perm)})[0]
        return self.q(t, scale, zp, self.name(x + "_transposed_q"), self.dtype(x))

    def bias_scale(self, a: str, b: str, alpha: float = 1.0) -> str:
        """The scale of an int32 bias: a_scale * b_scale (float32, as quantizers compute it)."""
        ca, cb = self.const(a), self.const(b)
        if ca is not None and cb is not None:
            s = np.float32(ca.reshape(-1)[0]) * cb.astype(np.float32).reshape(-1)
            if alpha != 1.0:
                s = (s * np.float32(alpha)).astype(np.float32)
            return self.add_const(a + "_times_" + b, s if s.size > 1 else s.reshape(()))
        s = self.node("Mul", [a, b], a + "_times_" + b)[0]
        if alpha != 1.0:
            s = self.node("Mul", [s, self.add_const("alpha", np.float32(alpha))], s)[0]
        return s


def _inputs(node: Node, n: int) -> list:
    return list(node.inputs) + [""] * (n - len(node.inputs))


# ---- one rewriter per op ------------------------------------------------------------------
def _conv(r: _Rewriter, node: Node) -> None:
    x, xs, xz, w, ws, wz, ys, yz, b = _inputs(node, 9)
    attrs = {k: v for k, v in node.attrs.items() if k != "channels_last"}
    qt = r.dtype(x)
    last = bool(node.attrs.get("channels_last", 0))
    y = node.outputs[0]
    if last:
        wc = r.const(w)
        rank = wc.ndim if wc is not None else 4
        x = r.transpose_q(x, [0, rank - 1] + list(range(1, rank - 1)), xs, xz)
        y = r.name(y + "_nchw")
    bd = r.dq(b, r.bias_scale(xs, ws), "", 0) if b else ""
    ins = [r.dq(x, xs, xz), r.dq(w, ws, wz, 0)] + ([bd] if bd else [])
    floats = r.node("Conv", ins, y + "_float", attrs)
    r.q(floats[0], ys, yz, y, r.dtype(yz) or qt)
    if last:
        rank = len(r.const(w).shape) if r.const(w) is not None else 4
        t = r.transpose_q(y, [0] + list(range(2, rank)) + [1], ys, yz)
        r.node("Identity", [t], node.outputs[0], outputs=[node.outputs[0]])
        r.params[node.outputs[0]] = r.params[t]
        r.dtypes[node.outputs[0]] = r.dtypes[t]


def _matmul(r: _Rewriter, node: Node) -> None:
    a, as_, az, b, bs, bz, ys, yz = _inputs(node, 8)
    ins = [r.dq(a, as_, az, -2), r.dq(b, bs, bz, -1)]
    f = r.node("MatMul", ins, node.outputs[0] + "_float")[0]
    r.q(f, ys, yz, node.outputs[0], r.dtype(yz) or r.dtype(a), axis=-2)


def _gemm(r: _Rewriter, node: Node) -> None:
    a, as_, az, b, bs, bz, c, ys, yz = _inputs(node, 9)
    alpha = float(node.attrs.get("alpha", 1.0))
    tb = int(node.attrs.get("transB", 0))
    attrs = {"transA": int(node.attrs.get("transA", 0)), "transB": tb}
    cb = r.const(bs)
    if alpha != 1.0 and cb is not None:      # fold alpha into B's scale: the Gemm stays plain
        bs = r.add_const(bs + "_alpha", (cb.astype(np.float32) * np.float32(alpha)))
        alpha = 1.0
    if not ys and _gemm_integer_form(r, node, bs, alpha):
        return
    if alpha != 1.0:
        attrs["alpha"] = alpha
    ins = [r.dq(a, as_, az), r.dq(b, bs, bz, 0 if tb else 1)]
    if c:
        cc = r.const(c)
        ins.append(r.dq(c, r.bias_scale(as_, bs, alpha), "",
                        (cc.ndim - 1) if cc is not None and cc.ndim else 0))
    y = node.outputs[0]
    if not ys:                                # no y_scale: the output is float
        r.node("Gemm", ins, y, attrs, outputs=[y])
        return
    f = r.node("Gemm", ins, y + "_float", attrs)[0]
    r.q(f, ys, yz, y, r.dtype(yz) or r.dtype(a))


def _gemm_integer_form(r: _Rewriter, node: Node, bs: str, alpha: float) -> bool:
    """QGemm with a float output as what it computes: Cast(A'B + C in int32) * (a_scale *
    b_scale * alpha), written as MatMulInteger -> Add(C) -> Cast -> Mul (which the compiler
    runs as one GEMM with a float epilogue). Needs B constant and A untransposed."""
    a, as_, az, b, _, bz, c = _inputs(node, 9)[:7]
    cb = r.const(b)
    if cb is None or cb.ndim != 2 or int(node.attrs.get("transA", 0)):
        return False
    if int(node.attrs.get("transB", 0)):
        b = r.add_const(b + "_kn", np.ascontiguousarray(cb.T))
    y = node.outputs[0]
    acc = r.node("MatMulInteger", [a, b, az, bz] if bz else [a, b, az], y + "_int32")[0]
    if c:
        acc = r.node("Add", [acc, c], y + "_int32_biased")[0]
    f = r.node("Cast", [acc], y + "_int32_float", {"to": 1})[0]
    r.node("Mul", [f, r.bias_scale(as_, bs, alpha)], y, outputs=[y])
    return True


def _binary(op_type: str) -> Callable:
    def rewrite(r: _Rewriter, node: Node) -> None:
        a, as_, az, b, bs, bz, cs, cz = _inputs(node, 8)
        r.qop(node, op_type, [r.dq(a, as_, az), r.dq(b, bs, bz)],
              [(node.outputs[0], cs, cz)], qtype=r.dtype(cz) or r.dtype(a))
    return rewrite


def _unary(op_type: str, attrs: Callable = lambda node: {}) -> Callable:
    """X, x_scale, x_zp, y_scale, y_zp -> Y: Sigmoid, LeakyRelu, pools."""
    def rewrite(r: _Rewriter, node: Node) -> None:
        x, xs, xz, ys, yz = _inputs(node, 5)
        qt = r.dtype(yz) or r.dtype(x)
        if not node.attrs.get("channels_last", 0):
            r.qop(node, op_type, [r.dq(x, xs, xz)], [(node.outputs[0], ys, yz)], attrs(node), qt)
            return
        rank = len(r.g.values[x].shape) if x in r.g.values and r.g.values[x].shape else 4
        xt = r.transpose_q(x, [0, rank - 1] + list(range(1, rank - 1)), xs, xz)
        mid = r.name(node.outputs[0] + "_nchw")
        f = r.node(op_type, [r.dq(xt, xs, xz)], mid + "_float", attrs(node))[0]
        r.q(f, ys, yz, mid, qt)
        t = r.transpose_q(mid, [0] + list(range(2, rank)) + [1], ys, yz)
        r.node("Identity", [t], node.outputs[0], outputs=[node.outputs[0]])
        r.params[node.outputs[0]], r.dtypes[node.outputs[0]] = r.params[t], r.dtypes[t]
    return rewrite


def _pool_attrs(node: Node) -> dict:
    return {k: v for k, v in node.attrs.items() if k != "channels_last"}


def _concat(r: _Rewriter, node: Node) -> None:
    ys, yz = node.inputs[0], node.inputs[1]
    rest = node.inputs[2:]
    if len(rest) % 3:
        raise ModelError(f"node {node.name!r} (QLinearConcat): inputs after y_scale and "
                         f"y_zero_point must be (tensor, scale, zero point) triples, got "
                         f"{len(rest)} inputs")
    ins = []
    for i in range(0, len(rest), 3):
        x, xs, xz = rest[i:i + 3]
        ins.append(x if r.dtype(x) == np.float32 or not xs else r.dq(x, xs, xz))
    qt = r.dtype(yz) or r.dtype(rest[0])
    r.qop(node, "Concat", ins, [(node.outputs[0], ys, yz)], {"axis": node.attrs.get("axis")}, qt)


def _softmax(r: _Rewriter, node: Node) -> None:
    x, xs, xz, ys, yz = _inputs(node, 5)
    axis = int(node.attrs.get("axis", -1))
    old_spec = int(node.attrs.get("opset", 13)) < 13
    old_graph = r.g.opset.get("", 13) < 13
    xd = r.dq(x, xs, xz)
    qt = r.dtype(yz) or r.dtype(x)
    v = r.g.values.get(x)
    rank = len(v.shape) if v is not None and v.shape is not None else None
    last = axis == -1 or (rank is not None and axis == rank - 1)
    if old_spec == old_graph or last:
        f = r.node("Softmax", [xd], node.outputs[0] + "_float", {"axis": axis})[0]
    elif old_spec:      # opset < 13 semantics in a newer graph: softmax of the 2-D flattening
        flat = r.node("Flatten", [xd], x + "_flat", {"axis": axis})[0]
        sm = r.node("Softmax", [flat], x + "_softmax", {"axis": -1})[0]
        shape = r.node("Shape", [xd], x + "_shape")[0]
        f = r.node("Reshape", [sm, shape], node.outputs[0] + "_float")[0]
    else:
        raise ModelError(f"node {node.name!r} (QLinearSoftmax): opset {node.attrs.get('opset')}"
                         f" softmax semantics in an opset {r.g.opset.get('')} graph with axis "
                         f"{axis} is not supported")
    r.q(f, ys, yz, node.outputs[0], qt)


def _reduce_mean(r: _Rewriter, node: Node) -> None:
    x, xs, xz, ys, yz = _inputs(node, 5)
    axes = list(node.attrs.get("axes", []))
    attrs = {"keepdims": int(node.attrs.get("keepdims", 1))}
    ins = [r.dq(x, xs, xz)]
    if r.g.opset.get("", 13) >= 18:
        ins.append(r.add_const("axes", np.array(axes, np.int64)))
    else:
        attrs["axes"] = axes
    r.qop(node, "ReduceMean", ins, [(node.outputs[0], ys, yz)], attrs, r.dtype(yz) or r.dtype(x))


def _where(r: _Rewriter, node: Node) -> None:
    cond, x, xs, xz, y, ys, yz, zs, zz = _inputs(node, 9)
    r.qop(node, "Where", [cond, r.dq(x, xs, xz), r.dq(y, ys, yz)], [(node.outputs[0], zs, zz)],
          qtype=r.dtype(zz) or r.dtype(x))


# (domain, op type) -> rewriter
QOPERATOR_OPS: dict[tuple, Callable] = {
    ("", "QLinearConv"): _conv,
    ("com.microsoft", "QLinearConv"): _conv,
    ("", "QLinearMatMul"): _matmul,
    ("com.microsoft", "QGemm"): _gemm,
    ("com.microsoft", "QLinearAdd"): _binary("Add"),
    ("com.microsoft", "QLinearMul"): _binary("Mul"),
    ("com.microsoft", "QLinearSigmoid"): _unary("Sigmoid"),
    ("com.microsoft", "QLinearLeakyRelu"): _unary(
        "LeakyRelu", lambda n: {"alpha": float(n.attrs.get("alpha", 0.01))}),
    ("com.microsoft", "QLinearGlobalAveragePool"): _unary("GlobalAveragePool"),
    ("com.microsoft", "QLinearAveragePool"): _unary("AveragePool", _pool_attrs),
    ("com.microsoft", "QLinearConcat"): _concat,
    ("com.microsoft", "QLinearSoftmax"): _softmax,
    ("com.microsoft", "QLinearReduceMean"): _reduce_mean,
    ("com.microsoft", "QLinearWhere"): _where,
}


def _moves_data(node: Node, opset: dict) -> bool:
    """Ops that onnxruntime runs directly on uint8 data (no arithmetic on values)."""
    if node.domain != "" or node.op_type in ("Identity", "Dropout"):
        return False
    if node.op_type in ("Resize", "Upsample"):
        return True
    try:
        get_op(node.op_type, "", opset.get(""))
        return make_op(node, opset).int8_kind() == "movement"
    except Exception:       # an unknown or malformed op is reported by the import, not here
        return False


def _wrap_movement(r: _Rewriter, node: Node) -> None:
    """DQ -> op -> Q with the input's parameters; a constant pad value dequantized alike."""
    x = node.inputs[0]
    scale, zp = r.params[x]
    ins = [r.dq(x, scale, zp)] + list(node.inputs[1:])
    attrs = dict(node.attrs)
    cs, cz = r.const(scale), r.const(zp) if zp else np.zeros((), np.uint8)
    if node.op_type == "Pad" and cs is not None and cz is not None:
        def real(v):
            return ((np.asarray(v, np.float64) - float(cz.reshape(-1)[0])) *
                    float(cs.reshape(-1)[0])).astype(np.float32)
        if "value" in attrs:
            attrs["value"] = float(real(attrs["value"]))
        if len(ins) > 2 and ins[2]:
            cv = r.const(ins[2])
            ins[2] = r.add_const(ins[2] + "_real", real(cv)) if cv is not None else \
                r.dq(ins[2], scale, zp)
    floats = r.node(node.op_type, ins, node.outputs[0] + "_float", attrs,
                    outputs=[r.name(o + "_float") if o else "" for o in node.outputs])
    for f, o in zip(floats, node.outputs):
        if o:
            r.q(f, scale, zp, o, r.dtype(x))


def rewrite_qoperator(graph: Graph) -> int:
    """Rewrite the QOperator nodes of `graph` (in topological order) into QDQ, in place.
    Returns the number of nodes rewritten (0: the graph had none, and is unchanged)."""
    if not any((n.domain, n.op_type) in QOPERATOR_OPS for n in graph.nodes):
        return 0
    r = _Rewriter(graph)
    count = 0
    for node in graph.nodes:
        key = (node.domain, node.op_type)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.domain in (
                "", "com.microsoft"):
            node.domain = ""
            if node.op_type == "QuantizeLinear" and r.size(node.inputs[1]) == 1:
                zp = node.input(2)
                r.params[node.outputs[0]] = (node.inputs[1], zp)
                r.dtypes[node.outputs[0]] = r.dtype(zp) if zp else np.dtype(np.uint8)
            r.out.append(node)
        elif key in QOPERATOR_OPS:
            r.source = node.name
            try:
                QOPERATOR_OPS[key](r, node)
            except (IndexError, KeyError, TypeError, ValueError) as e:
                raise ModelError(f"node {node.name!r} ({node.op_type}): malformed inputs or "
                                 f"attributes ({type(e).__name__}: {e})") from None
            count += 1
        elif node.inputs and node.inputs[0] in r.params and (
                len(node.outputs) == 1 or node.op_type == "Split") and \
                _moves_data(node, graph.opset):
            r.source = node.name
            _wrap_movement(r, node)
        else:
            r.out.append(node)
    graph.nodes = r.out
    return count
