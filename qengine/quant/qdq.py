"""quantize: a prepared float graph plus calibration observers -> the QDQ graph.

Decides which nodes run in int8 and the QParams of every quantized tensor, then writes the
standard ONNX QDQ form (docs/pipeline.md): QuantizeLinear -> DequantizeLinear around each
quantized activation, int8 weights per output channel behind a DequantizeLinear, int32 biases
with scale s_in * s_w. The result is plain ONNX: the compiler runs it on kernels, onnxruntime
runs it as is, and the float reference runs it as a fake-quantized model.

Roles (ops/registry.py, `int8_kind`, `elementwise`):
- compute (Conv, Gemm, MatMul, Add, Mul, pools): quantized inputs and outputs; a Relu or Clip
  right after it stays between it and its QuantizeLinear (the compiler fuses it into the
  output clamp), so the pre-activation is never quantized;
- lookup-table regions: a chain of element-wise ops of one activation and scalar constants
  (Sigmoid, x * Sigmoid(x), HardSwish, Gelu's chain, ...) is quantized only at its borders;
- movement (Reshape, Transpose, MaxPool, Slice, ...): outputs keep the input's QParams;
- join (Concat): inputs keep their QParams and are requantized into the output's;
- anything else runs in float.
Output-aware (quant/output_aware.py, on by default): a lookup-table region or a Concat of
mismatched ranges that no int8 op reads runs in float, so model outputs are not squeezed
through an 8-bit grid they gain nothing from.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..errors import QuantizationError
from ..graph import Graph, Node
from ..ops import make_op
from .observers import Observer, make_observer
from .params import QParams, quantize, quantize_bias, qparams_from_range

__all__ = ["QuantizeOptions", "quantize_graph", "plan_roles", "weight_spec", "quantize_weight"]

_FUSABLE = ("Relu", "Clip")


@dataclass
class QuantizeOptions:
    """How to quantize (the options of qengine.quantize)."""
    weight_bits: int = 8
    activation_bits: int = 8
    per_channel: bool = True
    weight_method: str = "minmax"          # per-channel observer of weights: minmax or mse
    symmetric_activations: bool = False    # uint8 with zero point 128
    keep_float: frozenset = field(default_factory=frozenset)  # node names or op types
    output_aware: bool = True              # float LUT regions / mismatched joins no int8 op reads
    wide_weights: frozenset = field(default_factory=frozenset)  # nodes with 8-bit weights
    wide_tensors: frozenset = field(default_factory=frozenset)  # tensors with 8-bit activations

    def __post_init__(self):
        for name in ("weight_bits", "activation_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 2 <= v <= 8:
                raise QuantizationError(f"{name} must be an integer in [2, 8], got {v!r}")
        if self.weight_method not in ("minmax", "mse"):
            raise QuantizationError(f"weight_method must be 'minmax' or 'mse', got "
                                    f"{self.weight_method!r}")
        self.keep_float = frozenset(self.keep_float or ())
        self.wide_weights = frozenset(self.wide_weights or ())
        self.wide_tensors = frozenset(self.wide_tensors or ())


@dataclass
class Roles:
    """What quantize decided, by node and by tensor (also read by reports)."""
    role: dict           # node name -> "compute" | "movement" | "join" | "lut" | "fused" | None
    quantized: list      # activation tensors to quantize, in graph order
    inherits: dict       # tensor -> the tensor whose QParams it shares (movement outputs)


# ---- deciding ----------------------------------------------------------------------------------
def plan_roles(graph: Graph, options: QuantizeOptions) -> Roles:
    """Which node runs how, and which activation tensors get quantized."""
    init = graph.initializers
    readers = graph.consumers_map()
    out_names = set(graph.output_names)

    def is_act(t: str) -> bool:
        return bool(t) and t not in init and graph.value(t).dtype == np.float32

    def scalar_const(t: str) -> bool:
        return t in init and init[t].size == 1

    role: dict[str, Optional[str]] = {}
    lut_source: dict[str, str] = {}       # tensor made in a LUT region -> its region's source
    producer: dict[str, Node] = {}
    for node in graph.nodes:
        for o in node.outputs:
            producer[o] = node
        role[node.name] = _node_role(graph, node, options, is_act, scalar_const, lut_source)

    # A Relu/Clip that is the only reader of a compute op's output fuses into that op.
    for node in graph.nodes:
        if role[node.name] != "lut" or node.op_type not in _FUSABLE:
            continue
        x = node.inputs[0]
        src = producer.get(x)
        if src is None or role[src.name] != "compute" or x in out_names:
            continue
        if len(readers.get(x, [])) == 1 and all(not i or i == x or init.get(i) is not None
                                                 for i in node.inputs):
            role[node.name] = "fused"

    fused_inputs = {n.inputs[0] for n in graph.nodes if role[n.name] == "fused"}
    needs: set[str] = set()
    for node in reversed(graph.nodes):
        r = role[node.name]
        if r in ("compute", "join"):
            needs.update(i for i in node.inputs if is_act(i))
        elif r == "lut":
            needs.update(i for i in node.inputs if is_act(i) and i not in lut_source)
        elif r == "movement" and any(o in needs for o in node.outputs):
            if is_act(node.inputs[0]):
                needs.add(node.inputs[0])

    made: set[str] = set()
    inherits: dict[str, str] = {}
    for node in graph.nodes:
        r = role[node.name]
        outs = [o for o in node.outputs if is_act(o)]
        if r in ("compute", "join"):
            float_out = r == "compute" and _float_output_ok(graph, node)
            for o in outs:
                # an output only float ops or the caller read is computed in float directly
                if o in fused_inputs or (float_out and o not in needs and all(
                        role[u.name] is None for u in readers.get(o, []))):
                    continue
                made.add(o)
        elif r == "fused":
            made.update(outs)
        elif r == "lut":
            for o in outs:   # a region's output: read outside the region, or a graph output
                # (a lut-role reader of o has o's source as its own: it is in the region)
                inside = all(role[u.name] == "lut" for u in readers.get(o, []))
                if o in out_names or not inside or not readers.get(o):
                    made.add(o)
        elif r == "movement":
            x = node.inputs[0]
            if is_act(x) and (x in needs or x in made):
                for o in outs:
                    made.add(o)
                    inherits[o] = inherits.get(x, x)
            else:
                role[node.name] = None
    quantized = [t for t in [v.name for v in graph.inputs] +
                 [o for n in graph.nodes for o in n.outputs]
                 if t and (t in needs or t in made) and t not in fused_inputs]
    return Roles(role, list(dict.fromkeys(quantized)), inherits)


def _float_output_ok(graph: Graph, node: Node) -> bool:
    return make_op(node, graph.opset).int8_float_output


def _node_role(graph, node, options, is_act, scalar_const, lut_source) -> Optional[str]:
    if node.name in options.keep_float or node.op_type in options.keep_float:
        return None
    outs = [o for o in node.outputs if o]
    if not outs or not all(is_act(o) for o in outs):
        return None
    op = make_op(node, graph.opset)
    ins = [i for i in node.inputs if i]
    acts = [i for i in ins if is_act(i)]
    if not acts:
        return None
    if op.elementwise and all(is_act(i) or scalar_const(i) for i in ins):
        sources = {lut_source.get(i, i) for i in acts}
        if len(sources) == 1:
            source = sources.pop()
            for o in outs:
                lut_source[o] = source
            return "lut"
    kind = op.int8_kind()
    if kind == "compute" and not _compute_inputs_ok(graph, node, is_act):
        return None
    return kind


def _compute_inputs_ok(graph: Graph, node: Node, is_act) -> bool:
    """Constant operands that the int8 form can express (weights where weights go)."""
    init = graph.initializers
    t = node.op_type
    if t in ("Conv", "ConvTranspose"):
        return node.inputs[1] in init and (len(node.inputs) < 3 or not node.inputs[2]
                                           or node.inputs[2] in init)
    if t == "Gemm":
        if node.inputs[0] in init or int(node.attrs.get("transA", 0)):
            return False
        if not (node.inputs[1] in init or is_act(node.inputs[1])):
            return False
        c = node.input(2)
        if not c:
            return True
        out = graph.value(node.outputs[0]).shape
        cols = out[-1] if out else None
        return c in init and init[c].ndim <= 2 and (init[c].size == 1 or
                                                  (init[c].shape[-1] == cols and
                                                   init[c].size == cols))
    if t == "MatMul":
        return node.inputs[0] not in init
    return True


# ---- writing the QDQ graph ----------------------------------------------------------------------
def quantize_graph(graph: Graph, observers: dict[str, Observer],
                   options: Optional[QuantizeOptions] = None, *,
                   weight_codes: Optional[dict] = None,
                   bias_shift: Optional[dict] = None) -> Graph:
    """The QDQ form of `graph` under `options`, with activation QParams from `observers`
    (qengine.quant.calibrate). The input graph is not modified.

    weight_codes: {node name: (codes, QParams)} replacing the nearest-rounded weights of those
    nodes (AdaRound); bias_shift: {node name: float32 (C,)} added to the float bias of those
    nodes before it is quantized (bias correction). Both apply only where the node runs int8:
    a node kept in float keeps its float weights and bias."""
    options = options or QuantizeOptions()
    # a layer normalization written out op by op stays float, to run as one kernel
    # (ops/norm.py); its 8-bit mean and deviations would cost accuracy and speed alike
    from ..ops.norm import written_out_layernorms
    ln = written_out_layernorms(graph)
    if ln:
        options = replace(options, keep_float=options.keep_float | frozenset(ln))
    if options.output_aware:
        from .output_aware import output_aware_float
        extra = output_aware_float(graph, observers, options)
        if extra:
            options = replace(options, keep_float=options.keep_float | frozenset(extra))
    roles = plan_roles(graph, options)
    g = graph.copy()
    params: dict[str, QParams] = {}
    for t in roles.quantized:
        if t in roles.inherits:
            params[t] = params[roles.inherits[t]]
            continue
        obs = observers.get(t)
        if obs is None:
            raise QuantizationError(f"no calibration observer for tensor {t!r}")
        bits = 8 if t in options.wide_tensors else options.activation_bits
        params[t] = obs.qparams(bits=bits, signed=False, symmetric=options.symmetric_activations)
    writer = _Writer(g, options, weight_codes or {}, bias_shift or {})
    for node in list(g.nodes):
        r = roles.role.get(node.name)
        if r == "compute":
            writer.quantize_constants(node, params)
    for t in roles.quantized:
        writer.quantize_activation(t, params[t])
    g.prune()
    g.toposort()
    return g


def weight_spec(graph: Graph, node: Node) -> Optional[tuple[int, np.ndarray, int]]:
    """(input index, float32 weight as quantize_graph quantizes it, channel axis) of a compute
    node with a constant weight, else None. A Gemm's alpha is folded into the weight here, as
    quantize_graph does."""
    init = graph.initializers
    t = node.op_type
    if t in ("Conv", "ConvTranspose") and node.inputs[1] in init:
        return 1, np.asarray(init[node.inputs[1]], np.float32), 0 if t == "Conv" else 1
    if t == "Gemm" and node.inputs[1] in init:
        w = init[node.inputs[1]].astype(np.float32)
        alpha = float(node.attrs.get("alpha", 1.0))
        if alpha != 1.0:
            w = (w * np.float32(alpha)).astype(np.float32)
        return 1, w, 0 if int(node.attrs.get("transB", 0)) else 1
    if t == "MatMul" and node.inputs[1] in init:
        w = np.asarray(init[node.inputs[1]], np.float32)
        return 1, w, w.ndim - 1
    return None


def quantize_weight(w: np.ndarray, axis: int, options: QuantizeOptions,
                    bits: Optional[int] = None) -> tuple[np.ndarray, QParams]:
    """(int8 codes, QParams) of a weight under options: symmetric, narrow, per output channel
    along `axis` (or per tensor), the observer options.weight_method, options.weight_bits
    unless `bits` is given."""
    w = np.asarray(w, dtype=np.float32)
    obs = make_observer(options.weight_method, axis=axis if options.per_channel else None)
    obs.update(w)
    wqp = obs.qparams(bits=bits or options.weight_bits, signed=True, symmetric=True)
    return quantize(w, wqp), wqp


class _Writer:
    """Inserts the Q/DQ nodes and quantized initializers into a copy of the graph."""

    def __init__(self, g: Graph, options: QuantizeOptions, weight_codes: dict,
                 bias_shift: dict):
        self.g, self.options = g, options
        self.weight_codes, self.bias_shift = weight_codes, bias_shift

    def _const(self, base: str, array: np.ndarray) -> str:
        return self.g.add_initializer(self.g.unique_name(base), np.asarray(array))

    def _dq(self, q_name: str, qp: QParams, out_base: str, at: Node) -> str:
        g = self.g
        scale = self._const(out_base + "_scale", qp.scale)
        zp = self._const(out_base + "_zero_point", qp.zero_point.astype(qp.dtype))
        out = g.unique_name(out_base + "_dequantized")
        attrs = {"axis": int(qp.axis)} if qp.is_per_axis else {}
        node = Node(g.unique_name(out_base + "_DequantizeLinear"), "DequantizeLinear",
                    [q_name, scale, zp], [out], attrs)
        g.nodes.insert(g.nodes.index(at), node)
        g.set_value(out, g.value(q_name).shape, np.float32)
        return out

    def quantize_activation(self, t: str, qp: QParams) -> None:
        g = self.g
        readers = [n for n in g.nodes if t in n.inputs]
        src = t
        prod = g.producer(t)
        if t in g.output_names and prod is not None:
            # the graph output keeps its name: it becomes the DQ's output, which every reader
            # of t then reads too; the producer writes t_float
            src = g.unique_name(t + "_float")
            prod.outputs[prod.outputs.index(t)] = src
            g.set_value(src, g.value(t).shape, np.float32)
        shape = g.value(src).shape
        scale = self._const(t + "_scale", qp.scale)
        zp = self._const(t + "_zero_point", qp.zero_point.astype(qp.dtype))
        x = src
        if qp.qmin != np.iinfo(qp.dtype).min or qp.qmax != np.iinfo(qp.dtype).max:
            # a narrower bit width inside 8-bit storage: ONNX's QuantizeLinear clamps to the
            # storage range, so clamp in float first (exact: the bounds are grid points)
            lo, hi = qp.representable_range()
            x = g.unique_name(t + "_clipped")
            g.add_node(Node(g.unique_name(t + "_Clip"), "Clip",
                            [src, self._const(t + "_lo", np.float32(lo)),
                             self._const(t + "_hi", np.float32(hi))], [x]))
            g.set_value(x, shape, np.float32)
        q = g.unique_name(t + "_quantized")
        qnode = g.add_node(Node(g.unique_name(t + "_QuantizeLinear"), "QuantizeLinear",
                                [x, scale, zp], [q]))
        g.set_value(q, shape, qp.dtype)
        dq = t if src != t else g.unique_name(t + "_dequantized")
        dnode = Node(g.unique_name(t + "_DequantizeLinear"), "DequantizeLinear", [q, scale, zp],
                     [dq])
        g.nodes.insert(g.nodes.index(qnode) + 1, dnode)
        g.set_value(dq, shape, np.float32)
        if src == t:
            for n in readers:
                n.inputs = [dq if i == t else i for i in n.inputs]

    # -- constants of compute nodes ----------------------------------------------------------------
    def quantize_constants(self, node: Node, params: dict) -> None:
        init = self.g.initializers
        t = node.op_type
        spec = weight_spec(self.g, node)
        if node.name in self.bias_shift and spec is not None and t != "MatMul" and \
                node.name not in self.options.wide_weights:     # the shift is for narrow ones
            self._shift_bias(node, spec)
        if t in ("Conv", "ConvTranspose"):
            _, w, axis = spec if spec else (1, init[node.inputs[1]], 0)
            self._weight(node, 1, w, axis, params.get(node.inputs[0]),
                         groups=int(node.attrs.get("group", 1)) if t == "ConvTranspose" else 1)
        elif t == "Gemm":
            beta = float(node.attrs.get("beta", 1.0))     # read after _shift_bias: it folds beta
            if spec is not None:
                _, w, axis = spec
                if float(node.attrs.get("alpha", 1.0)) != 1.0:
                    node.attrs["alpha"] = 1.0      # folded into w by weight_spec
                if node.input(2) and beta != 1.0:
                    c = (init[node.inputs[2]] * np.float32(beta)).astype(np.float32)
                    node.inputs[2] = self._const(node.name + ".bias", c)
                    node.attrs["beta"] = 1.0
                self._weight(node, 1, w, axis, params.get(node.inputs[0]))
            elif node.input(2) and node.inputs[0] in params and node.inputs[1] in params:
                # activation x activation with a constant bias: scale s_a * s_b
                s = params[node.inputs[0]].scale * params[node.inputs[1]].scale
                self._bias(node, s)
        elif t == "MatMul":
            if spec is not None:
                _, w, axis = spec
                self._weight(node, 1, w, axis, params.get(node.inputs[0]), bias=False)
        elif t in ("Add", "Sub", "Mul"):
            for k, name in enumerate(node.inputs):
                if name in init and init[name].size > 1:
                    self._activation_constant(node, k, init[name])

    def _shift_bias(self, node: Node, spec) -> None:
        """Bias correction: the float bias (zeros if absent) plus the node's measured shift."""
        init = self.g.initializers
        _, w, axis = spec
        shift = np.asarray(self.bias_shift[node.name], np.float32).reshape(-1)
        beta = float(node.attrs.get("beta", 1.0)) if node.op_type == "Gemm" else 1.0
        if node.input(2):
            b = (init[node.inputs[2]].astype(np.float32) * np.float32(beta)).reshape(-1)
            if b.size == 1 and shift.size > 1:
                b = np.full(shift.size, b[0], np.float32)
            if b.shape != shift.shape:
                return
        else:
            b = np.zeros(shift.shape, np.float32)
        while len(node.inputs) < 3:
            node.inputs.append("")
        node.inputs[2] = self._const(node.name + ".bias_corrected", (b + shift).astype(np.float32))
        if node.op_type == "Gemm":
            node.attrs["beta"] = 1.0

    def _weight(self, node: Node, k: int, w: np.ndarray, axis: int, x_qp: Optional[QParams],
                groups: int = 1, bias: bool = True) -> None:
        w = np.asarray(w, dtype=np.float32)
        wide = node.name in self.options.wide_weights
        given = None if wide else self.weight_codes.get(node.name)
        if given is not None and given[0].shape == w.shape:
            wq, wqp = given                     # AdaRound's rounding of the same grid
        else:
            wq, wqp = quantize_weight(w, axis, self.options, 8 if wide else None)
        base = f"{node.name}.weight"
        q_name = self._const(base + "_quantized", wq)
        node.inputs[k] = self._dq(q_name, wqp, base, node)
        if bias and node.input(2) and x_qp is not None:
            n_out = w.shape[axis] * groups
            s_w = wqp.scale if wqp.scale.ndim else np.full(n_out // groups, wqp.scale, np.float32)
            # ConvTranspose with groups: output channel g*Mg + j uses weight scale j
            self._bias(node, np.tile(s_w, groups) * x_qp.scale)

    def _bias(self, node: Node, scale: np.ndarray) -> None:
        """The node's float bias (input 2) as int32 with the given per-channel scale."""
        scale = np.asarray(scale, dtype=np.float32)
        bf = self.g.initializers[node.inputs[2]].astype(np.float32).reshape(-1)
        if scale.ndim == 0:
            scale = np.full(bf.size, scale, np.float32)
        if bf.size == 1 and scale.size > 1:
            bf = np.full(scale.size, bf[0], np.float32)
        bq, bqp = quantize_bias(bf, np.float32(1.0), scale)
        bname = f"{node.name}.bias"
        node.inputs[2] = self._dq(self._const(bname + "_quantized", bq), bqp, bname, node)

    def _activation_constant(self, node: Node, k: int, c: np.ndarray) -> None:
        """A non-scalar constant operand of Add/Mul: uint8 per tensor, like an activation."""
        c = np.asarray(c, dtype=np.float32)
        qp = qparams_from_range(float(c.min()), float(c.max()), bits=self.options.activation_bits)
        base = f"{node.name}.input{k}"
        node.inputs[k] = self._dq(self._const(base + "_quantized", quantize(c, qp)), qp, base,
                                  node)
