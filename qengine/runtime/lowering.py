"""Lowering: a QDQ graph with concrete shapes -> a list of Kernels (ops/int8.py).

Reads the graph's Q/DQ structure, matches node units (an op between DequantizeLinear'd inputs
and QuantizeLinear'd outputs, optionally through a fused Relu/Clip), asks each op's
`lower_int8` for a kernel, turns element-wise regions into lookup tables, and emits glue for
the rest: quantize, dequantize and requantize steps at the borders of float regions, and the
float ops themselves. Nothing here depends on the input shape except through the graph it is
given (runtime/plan.py concretizes the graph per input shape first).

Integer ops (MatMulInteger, ConvInteger, DynamicQuantizeLinear) read and write raw integer
tensors, not dequantized ones, so they form no unit: an op class may define
`lower_native(node, graph, cache) -> Optional[Kernel]`, tried for every node that is not part
of a unit, before the float fallback. Its Kernel reads and writes graph tensors by name; it may
also run later nodes (Kernel.fused_nodes, e.g. MatMulInteger -> Cast -> Mul -> Add as one GEMM
with a float epilogue), and is then placed at the last of them.

int8 tensors: kernels hold every quantized tensor as uint8 (int8 + 128, ops/int8.py). Where the
graph itself sees an int8 tensor -- an int8 graph input, or an int8 QuantizeLinear output that a
graph output or a non-DequantizeLinear node reads -- the kernels' copy gets its own storage name
and a sign-flip table step (x ^ 0x80) converts at that border.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..errors import ModelError, QEngineError
from ..graph import Graph, Node
from ..ops import make_op
from ..ops.int8 import FloatOut, Kernel, QConst, QTensor, Unit
from ..quant.params import QParams
from . import glue

__all__ = ["lower", "Lowered"]

_FUSABLE = ("Relu", "Clip")


@dataclass
class Lowered:
    """The compiled form of one concrete graph, before layouts and memory."""
    items: list                              # Kernels in execution order
    qtensors: dict = field(default_factory=dict)   # storage name -> QTensor
    aliases: dict = field(default_factory=dict)    # name -> storage name it is identical to
    int8_nodes: list = field(default_factory=list)
    float_nodes: list = field(default_factory=list)


def _const_scalar(graph: Graph, name: str):
    a = graph.initializers.get(name)
    return None if a is None or a.size != 1 else a.reshape(())


def _absorb_clips(graph: Graph) -> dict:
    """Clip(x, lo, hi) -> QuantizeLinear becomes QuantizeLinear(x) whose codes are clamped to
    [Q(lo), Q(hi)] -- exact for any constant bounds, since quantizing is monotonic. This is how
    bit widths below 8 appear in a QDQ graph (quant/qdq.py writes the Clip), and how a
    ReLU6 before a QuantizeLinear reads. Edits the (concrete, private) graph; returns
    {Q output: (lo, hi)}."""
    readers = graph.consumers_map()
    producer = graph.producers_map()
    outputs = set(graph.output_names)
    bounds = {}
    for q in list(graph.nodes):
        if q.op_type != "QuantizeLinear" or q.domain != "":
            continue
        p = producer.get(q.inputs[0])
        if p is None or p.op_type != "Clip" or p.outputs[0] in outputs or \
                [id(r) for r in readers.get(p.outputs[0], [])] != [id(q)]:
            continue
        b = _fused_bounds(graph, p)
        if b is None:
            continue
        q.inputs[0] = p.inputs[0]
        graph.remove_node(p)
        bounds[q.outputs[0]] = b
    return bounds


class _Analysis:
    """The graph's Q/DQ structure."""

    def __init__(self, graph: Graph, clamps: Optional[dict] = None):
        self.g = graph
        self.readers = graph.consumers_map()
        self.producer = graph.producers_map()
        self.qt: dict[str, QTensor] = {}      # Q output (or quantized graph input) -> QTensor
        self.dq_src: dict[str, str] = {}      # DQ output of an activation -> quantized tensor
        self.qconst: dict[str, QConst] = {}   # DQ output of a constant -> QConst
        self.outputs = set(graph.output_names)
        self.elementwise: dict[int, bool] = {}   # id(node) -> lowering's _elementwise
        for n in graph.nodes:
            if n.op_type == "QuantizeLinear" and n.domain == "":
                qt = self._qtensor(n, n.outputs[0])
                if qt is not None and clamps and n.outputs[0] in clamps:
                    lo, hi = clamps[n.outputs[0]]
                    qt = replace(
                        qt, qmin=qt.qmin if lo is None else int(qt.quantize(lo)),
                        qmax=qt.qmax if hi is None else int(qt.quantize(hi)))
                if qt is not None:
                    self.qt[n.outputs[0]] = qt
        for n in graph.nodes:
            if n.op_type != "DequantizeLinear" or n.domain != "":
                continue
            x = n.inputs[0]
            if x in graph.initializers:
                qp = self._qparams(n)
                if qp is not None:
                    self.qconst[n.outputs[0]] = QConst(x, graph.initializers[x], qp)
            elif x in self.qt and self._same_as_q(n, self.qt[x]):
                self.dq_src[n.outputs[0]] = x
            elif x in graph.input_names:
                qt = self._qtensor(n, x)
                if qt is not None:
                    self.qt[x] = qt
                    self.dq_src[n.outputs[0]] = x
        self.flip_in: list = []               # (graph input, storage): int8 -> kernels' uint8
        self.flip_out: dict = {}              # Q output -> storage: kernels' uint8 -> int8
        dq_readers = set(self.dq_src)
        for t, qt in list(self.qt.items()):
            if not qt.shift:
                continue
            if t in graph.input_names:
                self.flip_in.append(t)
            elif t in self.outputs or any(
                    not (u.op_type == "DequantizeLinear" and u.outputs[0] in dq_readers)
                    for u in self.readers.get(t, [])):
                self.flip_out[t] = None
            else:
                continue
            self.qt[t] = replace(qt, name=graph.unique_name(t + "_u8"))
            graph.set_value(self.qt[t].name, graph.value(t).shape, np.uint8)

    def _qparams(self, n: Node) -> Optional[QParams]:
        """QParams of a Q/DQ node with constant parameters (None: dynamic or unsupported)."""
        g = self.g
        scale = g.initializers.get(n.inputs[1])
        zp = g.initializers.get(n.input(2)) if n.input(2) else None
        if scale is None or (n.input(2) and zp is None) or n.attrs.get("block_size", 0):
            return None
        dt = zp.dtype if zp is not None else self._default_qtype(n)
        if dt not in (np.uint8, np.int8, np.int32) or scale.dtype != np.float32:
            return None
        axis = None
        if scale.size > 1:
            rank = len(g.value(n.inputs[0]).shape or ())
            axis = int(n.attrs.get("axis", 1))
            axis = axis + rank if axis < 0 else axis
        try:
            return QParams(scale.reshape(-1) if axis is not None else scale.reshape(()),
                           (zp if zp is not None else np.zeros(scale.shape, np.int32)).astype(
                               np.int32).reshape(scale.reshape(-1).shape if axis is not None else ()),
                           axis, 32 if dt == np.int32 else 8, dt != np.uint8)
        except Exception:
            return None

    def _default_qtype(self, n: Node) -> np.dtype:
        """The quantized type of a Q/DQ node without a zero point: DequantizeLinear's input
        type; QuantizeLinear's output_dtype attribute, else uint8."""
        if n.op_type == "DequantizeLinear":
            dt = self.g.value(n.inputs[0]).dtype
            return np.dtype(dt) if dt is not None else np.dtype(np.uint8)
        code = n.attrs.get("output_dtype", 0)
        return {3: np.dtype(np.int8)}.get(code, np.dtype(np.uint8))

    def _qtensor(self, n: Node, name: str) -> Optional[QTensor]:
        qp = self._qparams(n)
        if qp is None or qp.is_per_axis or qp.bits != 8:
            return None
        shift = 128 if qp.signed else 0
        return QTensor(name, np.float32(qp.scale), int(qp.zero_point) + shift, 0, 255, shift)

    def _same_as_q(self, dq: Node, qt: QTensor) -> bool:
        """The DQ reads qt's codes with qt's scale and zero point (its clamp is the Q's)."""
        other = self._qtensor(dq, dq.inputs[0])
        return other is not None and other.scale == qt.scale and \
            other.zero_point == qt.zero_point and other.shift == qt.shift

    # -- helpers for matching ------------------------------------------------------------------
    def quantized_output(self, name: str) -> Optional[list]:
        """The Q nodes reading `name` when they are its only readers and agree on params."""
        users = self.readers.get(name, [])
        if not users or name in self.outputs:
            return None
        if not all(u.op_type == "QuantizeLinear" and u.outputs[0] in self.qt for u in users):
            return None
        first = self.qt[users[0].outputs[0]]
        if not all(self.qt[u.outputs[0]].same_params(first) for u in users):
            return None
        return users


def _fused_bounds(graph: Graph, node: Node):
    """(lo, hi) of a Relu or constant-bounded Clip, else None."""
    if node.op_type == "Relu":
        return (0.0, None)
    if node.op_type == "Clip":
        op = make_op(node, graph.opset)
        if op.opset < 11:
            return (op.lo, op.hi)
        bounds = []
        for k in (1, 2):
            name = node.input(k)
            if not name:
                bounds.append(None)
                continue
            c = _const_scalar(graph, name)
            if c is None:
                return None
            bounds.append(float(c))
        return tuple(bounds)
    return None


def lower(graph: Graph, cache: Optional[dict] = None) -> Lowered:
    """Lower a concrete QDQ graph into kernels and glue (see the module docstring).
    cache: node name -> dict that kernels keep packed weights in across input shapes."""
    cache = {} if cache is None else cache
    a = _Analysis(graph, _absorb_clips(graph))
    g = graph
    out = Lowered([], {qt.name: qt for qt in a.qt.values()})

    def operand(name: str):
        if not name:
            return None
        if name in a.dq_src:
            return a.qt[a.dq_src[name]]
        if name in a.qconst:
            return a.qconst[name]
        if name in g.initializers:
            return g.initializers[name]
        return "float"

    def q_outputs(node: Node, op):
        """(QTensor / FloatOut per output, fused node, its bounds, the Q nodes of each output)
        or None. An output that no QuantizeLinear reads is a FloatOut when the op can write
        float directly (op.int8_float_output)."""
        outs, qnodes, fused, bounds = [], [], None, (None, None)
        for o in node.outputs:
            if not o:
                outs.append(None)
                continue
            users = a.quantized_output(o)
            if users is None and len(node.outputs) == 1:
                rd = a.readers.get(o, [])
                if len(rd) == 1 and rd[0].op_type in _FUSABLE and o not in a.outputs:
                    b = _fused_bounds(g, rd[0])
                    users = a.quantized_output(rd[0].outputs[0]) if b is not None else None
                    if users is not None:
                        fused, bounds = rd[0], b
            if users is None and fused is None and op.int8_float_output and \
                    len(node.outputs) == 1 and g.value(o).dtype == np.float32 and \
                    not any(r.op_type == "QuantizeLinear" for r in a.readers.get(o, [])):
                outs.append(FloatOut(o))
                qnodes.append([])
                continue
            if users is None:
                return None
            outs.append(a.qt[users[0].outputs[0]])
            qnodes.append(users)
        return outs, fused, bounds, qnodes

    # pass 1: decide which nodes run as int8 units or lookup-table regions
    at: dict[int, Kernel] = {}       # id(node) -> the item emitted at that node
    after: dict[int, list] = {}      # id(node) -> items emitted right after it (int8 borders)
    consumed: set[int] = set()       # nodes run by some item (units, regions, fused)
    absorbed_q: set[int] = set()     # Q nodes whose quantization an item performs
    float_reads: set[str] = set()    # tensors some float op reads (so they need float values)
    regions = _find_lut_regions(g, a)
    float_regions = _find_float_lut_regions(g, a, regions)
    for node in g.nodes:
        if id(node) in consumed or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        region = regions.get(id(node))
        if region is not None:
            src, nodes, qnodes, out_t = region
            at[id(node)] = glue.lut(g, nodes, a.qt[src], a.qt[out_t])
            consumed.update(id(n) for n in nodes)
            absorbed_q.update(id(q) for q in qnodes)
            _alias_q(out, qnodes, a)
            out.int8_nodes += [n.name for n in nodes]
            continue
        fregion = float_regions.get(id(node))
        if fregion is not None:
            src, nodes = fregion
            at[id(nodes[-1])] = glue.lut_float(g, nodes, a.qt[src],
                                               logical=nodes[-1].outputs[0] in a.outputs)
            consumed.update(id(n) for n in nodes)
            out.int8_nodes += [n.name for n in nodes]
            continue
        op = make_op(node, g.opset)
        ins = [operand(i) for i in node.inputs]
        kernel = None
        if any(isinstance(x, QTensor) for x in ins) and not any(isinstance(x, str) for x in ins):
            qo = q_outputs(node, op)
            if qo is not None:
                outs, fused, bounds, qnodes = qo
                try:
                    kernel = _lower_unit(op, Unit(node, op, ins, outs, fused, bounds,
                                                  cache.setdefault(node.name, {}), g))
                except QEngineError:
                    raise
                except (ValueError, OverflowError) as e:   # a kernel binding refused it
                    raise ModelError(f"node {node.name!r} ({node.op_type}): cannot run on the "
                                     f"int8 kernels: {e}") from e
                if kernel is not None:
                    consumed.add(id(node))
                    if fused is not None:
                        consumed.add(id(fused))
                    for group in qnodes:
                        absorbed_q.update(id(q) for q in group)
                        if group:
                            _alias_q(out, group, a)
                    out.int8_nodes.append(node.name)
        if kernel is None:
            kernel = _lower_native(op, node, g, cache)
            if kernel is not None:
                kernel.node = node
                ran = [node] + list(kernel.fused_nodes)
                consumed.update(id(n) for n in ran)
                if kernel.precision == "float":
                    out.float_nodes += [n.name for n in ran]
                    float_reads.update(i for n in ran for i in n.inputs)
                else:
                    out.int8_nodes += [n.name for n in ran]
                at[id(ran[-1])] = kernel
                continue
        if kernel is None:
            kernel = glue.float_node(g, node, op)
            consumed.add(id(node))
            out.float_nodes.append(node.name)
            float_reads.update(node.inputs)
        at[id(node)] = kernel

    # pass 2: glue for the Q/DQ nodes that no item absorbed, in graph order
    for node in g.nodes:
        if node.op_type == "QuantizeLinear" and id(node) not in absorbed_q and id(node) not in at:
            dst = node.outputs[0]
            src = node.inputs[0]
            if dst not in a.qt:
                at[id(node)] = glue.float_node(g, node, make_op(node, g.opset))
            elif src in a.dq_src:
                qs = a.qt[a.dq_src[src]]
                if qs.same_params(a.qt[dst]) and qs.shift == a.qt[dst].shift:
                    out.aliases[a.qt[dst].name] = qs.name  # a redundant DQ -> Q pair
                else:
                    at[id(node)] = glue.requantize(qs, a.qt[dst])
            elif g.value(src).dtype == np.float32:
                at[id(node)] = glue.quantize(src, a.qt[dst])
            else:
                at[id(node)] = glue.float_node(g, node, make_op(node, g.opset))
        elif node.op_type == "DequantizeLinear" and id(node) not in at:
            o = node.outputs[0]
            if o not in float_reads and o not in a.outputs:
                continue    # only int8 items (or aliased / requantizing Q nodes) read it
            if o in a.dq_src and g.value(o).dtype == np.float32:
                at[id(node)] = glue.dequantize(a.qt[a.dq_src[o]], o, logical=o in a.outputs)
            else:   # a constant read by a float op, or dynamic parameters
                at[id(node)] = glue.float_node(g, node, make_op(node, g.opset))
    # int8 borders: the graph's int8 tensors <-> the kernels' uint8 storage
    for node in g.nodes:
        if node.op_type == "QuantizeLinear" and node.outputs[0] in a.flip_out:
            t = node.outputs[0]
            after.setdefault(id(node), []).append(glue.sign_flip(a.qt[t].name, t, node))
    flips = [glue.sign_flip(t, a.qt[t].name) for t in a.flip_in]
    out.items = flips + [item for n in g.nodes
                         for item in ([at[id(n)]] if id(n) in at else []) + after.get(id(n), [])]
    for n in g.nodes:
        if id(n) in at and at[id(n)].node is None:
            at[id(n)].node = n
    out.items = _fuse_lookups(out.items, out.aliases, a)
    out.items = _fuse_maxpools(out.items, out.aliases, a)
    out.items = _fuse_row_adds(out.items, out.aliases, a)
    return out


def _fuse_into_producer(items: list, aliases: dict, a: "_Analysis", combine) -> list:
    """Items whose single input only they read, written by a single-output item, run inside
    that producer: combine(producer, consumer) gives the fused kernel, or None where the pair
    does not fuse. Aliased and graph-output tensors are never fused away (others see them)."""
    readers: dict = {}
    for k in items:
        for r in k.reads:
            readers[r] = readers.get(r, 0) + 1
    shared = set(aliases) | set(aliases.values()) | set(a.outputs)
    writer = {k.writes[0]: i for i, k in enumerate(items) if len(k.writes) == 1}
    fused: dict = {}   # index of the producer -> its fused kernel
    drop: set = set()  # indices of the consumers it absorbed
    for i, k in enumerate(items):
        if len(k.reads) != 1:
            continue
        src = k.reads[0]
        j = writer.get(src)
        if j is None or j in fused or readers.get(src) != 1 or src in shared:
            continue
        f = combine(items[j], k)
        if f is None:
            continue
        f.node = items[j].node
        fused[j] = f
        drop.add(i)
    return [fused.get(i, k) for i, k in enumerate(items) if i not in drop]


def _fuse_lookups(items: list, aliases: dict, a: "_Analysis") -> list:
    """A lookup region (glue.lut) whose input only it reads, written by a kernel that can apply
    a table (Kernel.with_lut: convolutions), runs inside that kernel: each of its tasks looks up
    the outputs it has just written, in its core's cache, instead of a step that reads and
    writes the whole tensor again (HardSwish, SiLU after a conv; on 2 threads that step also
    pulled half its input from the other core)."""
    def combine(producer, k):
        if k.lut_table is None or producer.with_lut is None:
            return None
        return producer.with_lut(k.lut_table, k.writes[0], k.lut_ops)
    return _fuse_into_producer(items, aliases, a, combine)


def _fuse_maxpools(items: list, aliases: dict, a: "_Analysis") -> list:
    """A MaxPool (Kernel.maxpool_window) whose input only it reads, written by a convolution that
    can pool (Kernel.with_maxpool: ResNet's stem, which runs by column strips), runs inside it:
    the pool's input -- 800 KB per image for the stem -- is never stored, nor read back."""
    def combine(producer, k):
        if k.maxpool_window is None or producer.with_maxpool is None:
            return None
        return producer.with_maxpool(k.maxpool_window, k.writes[0])
    return _fuse_into_producer(items, aliases, a, combine)


def _fuse_row_adds(items: list, aliases: dict, a: "_Analysis") -> list:
    """An Add of a constant row vector (Kernel.row_add: a bias) whose input only it reads,
    written by a GEMM that can add one (Kernel.with_row_add: a MatMul or Gemm with constant
    weights and a uint8 output), runs inside that GEMM: each task adds the bias to the rows it
    has just written, with the Add kernel's own arithmetic (the same bits), instead of a step of
    its own (the transformer blocks' linear layers: ~3 us each on a 80 x 128 output)."""
    def combine(producer, k):
        if k.row_add is None or producer.with_row_add is None:
            return None
        return producer.with_row_add(k.row_add, k.writes[0])
    return _fuse_into_producer(items, aliases, a, combine)


def _alias_q(out: Lowered, qnodes: list, a: "_Analysis") -> None:
    """Several Q nodes of one output with equal params: all name the first's storage."""
    first = a.qt[qnodes[0].outputs[0]].name
    for q in qnodes[1:]:
        out.aliases[a.qt[q.outputs[0]].name] = first


def _lower_native(op, node: Node, g: Graph, cache: dict) -> Optional[Kernel]:
    """The op's native lowering (an integer op, or a float op with a C kernel), or None."""
    fn = getattr(op, "lower_native", None)
    return fn(node, g, cache.setdefault(node.name, {})) if fn is not None else None


def _lower_unit(op, unit: Unit) -> Optional[Kernel]:
    lower_fn = getattr(op, "lower_int8", None)
    if lower_fn is not None:
        return lower_fn(unit)
    if op.int8_kind() == "movement":
        return glue.movement(unit)
    return None


def _elementwise(g: Graph, a: _Analysis, n: Node) -> bool:
    """An element-wise node of one output (its op parsed once per lowering)."""
    known = a.elementwise.get(id(n))
    if known is None:
        known = a.elementwise[id(n)] = len(n.outputs) == 1 and make_op(n, g.opset).elementwise
    return known


def _region_closure(g: Graph, a: _Analysis, last: Node):
    """The element-wise nodes that `last`'s output depends on back to dequantized activations:
    (nodes, source quantized tensors) or None where the walk meets anything else (a float
    tensor from outside, a non-scalar constant, a node that is not element-wise)."""
    nodes, sources, stack, seen = [], set(), [last], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if not _elementwise(g, a, n):
            return None
        nodes.append(n)
        for i in n.inputs:
            if not i:
                continue
            if i in a.dq_src:
                sources.add(a.dq_src[i])
            elif i in g.initializers:
                if g.initializers[i].size != 1:
                    return None
            elif i in a.producer:
                stack.append(a.producer[i])
            else:
                return None
    return nodes, sources


def _closed(a: _Analysis, nodes: list, out: str) -> bool:
    """No tensor inside the region but its output is read outside it or is a graph output."""
    members = {id(n) for n in nodes}
    inner = {n.outputs[0] for n in nodes} - {out}
    return not any(o in a.outputs or any(id(r) not in members for r in a.readers.get(o, []))
                   for o in inner)


def _find_float_lut_regions(g: Graph, a: _Analysis, taken: dict) -> dict:
    """Element-wise regions of one dequantized activation whose output stays float (no
    QuantizeLinear reads it: a graph output or float ops' input, as output-aware quantization
    leaves a model's last GELU or Sigmoid): {id(first node): (source, nodes in order)}. Each is
    a float table of 256 entries (glue.lut_float) instead of float ops over every element.
    The latest possible end is tried first, so a region is the longest chain it can be."""
    used = {id(n) for r in taken.values() for n in r[1]}
    regions: dict[int, tuple] = {}
    for last in reversed(g.nodes):
        if id(last) in used or last.op_type in ("QuantizeLinear", "DequantizeLinear") or \
                not _elementwise(g, a, last):
            continue
        t = last.outputs[0]
        if any(r.op_type == "QuantizeLinear" for r in a.readers.get(t, [])):
            continue   # a quantized output: an int8 lookup region or unit, not a float one
        found = _region_closure(g, a, last)
        if found is None or len(found[1]) != 1 or any(id(n) in used for n in found[0]):
            continue
        nodes, (src,) = found
        dq_out = next(i for n in nodes for i in n.inputs if a.dq_src.get(i) == src)
        if any(g.value(n.outputs[0]).dtype != np.float32 for n in nodes) or \
                tuple(g.value(t).shape) != tuple(g.value(dq_out).shape) or \
                not _closed(a, nodes, t):
            continue
        members = {id(n) for n in nodes}
        ordered = [n for n in g.nodes if id(n) in members]
        used |= members
        regions[id(ordered[0])] = (src, ordered)
    return regions


def _find_lut_regions(g: Graph, a: _Analysis) -> dict:
    """Element-wise regions between one dequantized activation and one QuantizeLinear:
    {id(first node): (source quantized tensor, nodes in order, Q nodes, output tensor)}."""
    regions: dict[int, tuple] = {}
    used: set[int] = set()        # nodes of the regions found so far
    for q in g.nodes:
        if q.op_type != "QuantizeLinear" or q.outputs[0] not in a.qt:
            continue
        t = q.inputs[0]
        p = a.producer.get(t)
        if p is None or not _elementwise(g, a, p):
            continue
        users = a.quantized_output(t)
        if users is None:
            continue
        found = _region_closure(g, a, p)
        if found is None or len(found[1]) != 1 or not _closed(a, found[0], t):
            continue   # an intermediate is needed elsewhere: not a closed region
        members = {id(n) for n in found[0]}
        if members & used:
            continue
        used |= members
        ordered = [n for n in g.nodes if id(n) in members]
        regions[id(ordered[0])] = (found[1].pop(), ordered, users, users[0].outputs[0])
    return regions
