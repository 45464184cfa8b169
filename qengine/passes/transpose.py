"""Transpose optimisation: cancel, merge and sink Transposes so layout changes meet and vanish.

Frontends of channels-last frameworks (Keras, TF exports) wrap every spatial op in
Transpose(NHWC->NCHW) ... Transpose(NCHW->NHWC); between two convolutions the pair cancels as
soon as the element-wise ops in between (BatchNorm's Mul/Add, Relu...) run in NCHW instead.
Three rewrites, repeated to a fixed point:

- merge: Transpose(p2) of Transpose(p1) is one Transpose(p1[p2]), removed when that is the
  identity;
- sink: a Transpose(p) feeding element-wise ops moves below them: op(T(x), c) becomes
  T(op(x, c')) with every constant c permuted to match, and an op whose inputs are all T(p)
  takes their sources. Ops with an axis (Concat, Softmax) get the axis remapped. A Transpose
  with several readers is sunk only when every path below it ends in another Transpose (they
  merge) or in an op where two Transposes meet; one with a single element-wise reader always
  moves below it (Conv -> T -> Relu becomes Conv -> Relu -> T, ready for fusion). So the
  count of Transposes of real tensors never grows (optimize_transposes checks, and retries
  with meetings only where the partner dies, then gives up). The one exception is
  deliberate: a T(perm) may pass a Mul by a per-channel gate (squeeze-excite's (N, 1, 1, C))
  by giving the gate an inverse Transpose, which only relabels its C values;
- dedupe: identical Transposes of one tensor become one.

Graph inputs and outputs keep their names and layouts. Generic over ONNX graphs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..graph import Graph, Node
from .shapes import infer_shapes

__all__ = ["optimize_transposes", "ELEMENTWISE_UNARY", "ELEMENTWISE_NARY"]

#: ops whose input 0 is the data and any other input a scalar parameter (Clip's min/max,
#: per-tensor Q/DQ scale and zero point): y[i] = f(x[i])
ELEMENTWISE_UNARY = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Clip", "Mish", "Gelu", "Identity", "Cast", "ThresholdedRelu",
    "Not", "IsNaN", "IsInf", "Sin", "Cos", "Shrink", "QuantizeLinear", "DequantizeLinear",
})
#: broadcasting element-wise ops over all inputs
ELEMENTWISE_NARY = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor",
})
#: ops with one ``axis`` attribute that stay correct with the axis remapped
_AXIS_OPS = {"Concat": 4, "Softmax": 13, "LogSoftmax": 13, "Hardmax": 13}   # min opset
_MAX_DEPTH = 64
PASS, MEET, WAIT = "pass", "meet", "wait"


def _perm(node: Node, graph: Graph) -> Optional[list[int]]:
    p = node.attrs.get("perm")
    if p is None:
        shape = graph.value(node.inputs[0]).shape
        return None if shape is None else list(range(len(shape)))[::-1]
    return [int(v) for v in p]


class _Pass:
    def __init__(self, graph: Graph, strict: bool = False):
        self.g = graph
        self.strict = strict      # a meeting partner must die with the push (_gone_with)
        self.opset = graph.opset.get("", 17)
        self.outputs = set(graph.output_names)
        self.refresh()

    def refresh(self):
        self.prod = self.g.producers_map()
        self.cons = self.g.consumers_map()
        self._memo: dict[tuple, bool] = {}

    # -- queries ---------------------------------------------------------------------------
    def transposed(self, name: str, perm: list[int]) -> Optional[Node]:
        """The Transpose(perm) producing ``name``, if that is how it is made."""
        n = self.prod.get(name)
        if n is not None and n.op_type == "Transpose" and n.domain == "" and \
                _perm(n, self.g) == perm:
            return n
        return None

    def _scalar_const(self, name: str) -> bool:
        return not name or (name in self.g.initializers and self.g.initializers[name].size == 1)

    def _const_ok(self, name: str, rank: int) -> bool:
        a = self.g.initializers.get(name)
        return a is not None and a.ndim <= rank

    def pushable(self, node: Node, x: str, perm: list[int]) -> Optional[str]:
        """How T(perm) of ``x`` relates to reader ``node``: None, it cannot pass; PASS, it can
        move below (one Transpose after the node); MEET, it can move below and meets another
        T(perm) there (two or more become one); WAIT, not yet: another input will be a
        T(perm) once the Transposes upstream of it have sunk (then it is a MEET)."""
        if node.domain != "" or node.op_type == "Transpose" or len(node.outputs) != 1:
            return None
        r, t = len(perm), node.op_type
        if t in ELEMENTWISE_UNARY:
            if node.inputs[0] != x or not all(self._scalar_const(i) for i in node.inputs[1:]):
                return None
            if t in ("QuantizeLinear", "DequantizeLinear") and node.attrs.get("block_size"):
                return None
            return PASS
        if t not in ELEMENTWISE_NARY and t not in _AXIS_OPS:
            return None
        if t in _AXIS_OPS and (self.opset < _AXIS_OPS[t] or
                               (t != "Concat" and len(node.inputs) != 1)):
            return None
        state = PASS
        for i in node.inputs:
            if i == x:
                continue
            if self.transposed(i, perm):
                if self.strict and not self._gone_with(i, x):
                    return None
                state = MEET if state == PASS else state
            elif i in self.g.initializers:
                if not self._const_ok(i, r) or (t in _AXIS_OPS and
                                                self.g.initializers[i].ndim != r):
                    return None
            elif self.upstream(i, perm):
                state = WAIT
            elif not self.vector_like(i, r):
                return None
        return state

    def _gone_with(self, t_out: str, x: str) -> bool:
        """True when the Transpose making ``t_out`` dies once the readers of ``x`` take its
        source: it is no graph output and every other reader is a Transpose (merge() composes
        those). A meeting partner that stays alive for other readers leaves one Transpose more
        after the push (two Adds reading T(a) and T(b), T(a) also read by a Concat: both Adds
        get a Transpose, only T(b) goes) -- usually for a while, as residual chains sink it
        later, but not always; the strict round refuses such meetings."""
        if t_out in self.outputs:
            return False
        readers = set(map(id, self.cons.get(x, [])))
        return all(id(c) in readers or (c.op_type == "Transpose" and c.domain == "")
                   for c in self.cons.get(t_out, []))

    def vector_like(self, name: str, rank: int) -> bool:
        """A rank-``rank`` tensor with static dims, at most one of them (past the batch) > 1:
        a per-channel gate such as squeeze-excite's (N, 1, 1, C). Transposing it only
        relabels its elements, so a T(perm) may pass the op that reads it by giving it a
        Transpose of its own."""
        return _vector_like(self.g, name, rank)

    def upstream(self, name: str, perm: list[int], depth: int = 0) -> bool:
        """True when ``name`` is made from T(perm)s and constants by element-wise ops alone,
        so those Transposes can sink down to it."""
        if depth > _MAX_DEPTH:
            return False
        if name in self.g.initializers or self.transposed(name, perm):
            return True
        n = self.prod.get(name)
        if n is None or n.domain != "" or len(n.outputs) != 1 or not (
                n.op_type in ELEMENTWISE_UNARY or n.op_type in ELEMENTWISE_NARY):
            return False
        data = n.inputs[:1] if n.op_type in ELEMENTWISE_UNARY else n.inputs
        return all(self.upstream(i, perm, depth + 1) for i in data if i)

    def sinkable(self, name: str, perm: list[int], depth: int = 0) -> bool:
        """True when T(perm) on ``name`` can sink through all its readers and every path
        ends where Transposes merge or meet (so the count of Transposes does not grow)."""
        key = (name, tuple(perm))
        if key not in self._memo:
            self._memo[key] = self._sinkable(name, perm, depth)
        return self._memo[key]

    def _sinkable(self, name: str, perm: list[int], depth: int) -> bool:
        if name in self.outputs or depth > _MAX_DEPTH:
            return False
        readers = self.cons.get(name, [])
        if not readers:
            return False
        for c in readers:
            if c.op_type == "Transpose" and c.domain == "":
                continue
            how = self.pushable(c, name, perm)
            if how is None:
                return False
            if how == PASS and not self.sinkable(c.outputs[0], perm, depth + 1):
                return False
        return True

    # -- rewrites --------------------------------------------------------------------------
    def merge(self) -> int:
        changed = 0
        for n in list(self.g.nodes):
            if n.op_type != "Transpose" or n.domain != "":
                continue
            src = self.prod.get(n.inputs[0])
            p2 = _perm(n, self.g)
            if p2 is None:
                continue
            if src is not None and src.op_type == "Transpose" and src.domain == "":
                p1 = _perm(src, self.g)
                if p1 is None or len(p1) != len(p2):
                    continue
                n.inputs[0] = src.inputs[0]
                n.attrs["perm"] = [p1[i] for i in p2]
                p2 = n.attrs["perm"]
                changed += 1
            if p2 == list(range(len(p2))):
                changed += self._drop_identity(n)
        if changed:
            self.g.prune()
            self.refresh()
        return changed

    def _drop_identity(self, n: Node) -> int:
        out, src = n.outputs[0], n.inputs[0]
        if out in self.outputs:
            if n.op_type == "Identity":
                return 0
            n.op_type, n.attrs = "Identity", {}       # the output name must survive
            return 1
        self.g.replace_uses(out, src)
        self.g.remove_node(n)
        return 1

    def sink(self) -> int:
        for n in list(self.g.nodes):
            if n.op_type != "Transpose" or n.domain != "":
                continue
            perm, out = _perm(n, self.g), n.outputs[0]
            if perm is None or out in self.outputs:
                continue
            readers = self.cons.get(out, [])
            if not self.sinkable(out, perm):
                # a lone element-wise reader: moving below it keeps the count and puts the
                # activation next to the op before the Transpose (Conv -> Relu fuses)
                if len(readers) == 1 and self.pushable(readers[0], out, perm) == PASS:
                    self._push(readers[0], perm)
                    self.g.prune()
                    self.refresh()
                    return 1
                continue
            ready = [c for c in readers if c.op_type != "Transpose" and
                     self.pushable(c, out, perm) in (PASS, MEET)]
            if not ready:
                continue      # only Transposes (merge() composes them) or WAITs below it
            for c in ready:
                self._push(c, perm)
            self.g.prune()
            self.refresh()
            return 1          # one at a time: the maps are rebuilt between pushes
        return 0

    def _push(self, node: Node, perm: list[int]) -> None:
        """Rewrite ``node`` to read the Transposes' sources and put T(perm) after it."""
        inv = list(np.argsort(perm))
        r = len(perm)
        moved = {i for i in node.inputs if self.transposed(i, perm)}
        gates: dict[str, str] = {}
        for k, i in enumerate(node.inputs):
            src = self.transposed(i, perm)
            if src is not None:
                node.inputs[k] = src.inputs[0]
            elif i and i not in self.g.initializers and i not in moved:
                if i not in gates:      # a vector-like gate: give it the inverse Transpose
                    gates[i] = self.g.unique_name(f"{i}_perm")
                    self.g.nodes.insert(self.g.nodes.index(node), Node(
                        self.g.unique_name(f"{i}_transpose"), "Transpose", [i], [gates[i]],
                        {"perm": [int(v) for v in inv]}))
                node.inputs[k] = gates[i]
            elif i in self.g.initializers and node.op_type not in ELEMENTWISE_UNARY:
                a = self.g.initializers[i]
                if a.size > 1:
                    full = a.reshape((1,) * (r - a.ndim) + a.shape).transpose(inv)
                    if node.op_type not in _AXIS_OPS:     # broadcasting: drop leading 1s
                        while full.ndim > 1 and full.shape[0] == 1:
                            full = full[0]
                    new = self.g.unique_name(f"{i}_perm")
                    self.g.add_initializer(new, np.ascontiguousarray(full))
                    node.inputs[k] = new
        if node.op_type in _AXIS_OPS:
            ax = int(node.attrs.get("axis", -1 if node.op_type != "Concat" else 0)) % r
            node.attrs["axis"] = int(perm[ax])
        out = node.outputs[0]
        pre = self.g.unique_name(f"{out}_{'nchw' if perm == [0, 2, 3, 1] else 'pre'}")
        node.outputs[0] = pre       # ``out`` keeps its name and shape, now made by the Transpose
        t = Node(self.g.unique_name(f"{node.name}_transpose"), "Transpose", [pre], [out],
                 {"perm": list(perm)})
        self.g.nodes.insert(self.g.nodes.index(node) + 1, t)

    def dedupe(self) -> int:
        seen: dict[tuple, str] = {}
        changed = 0
        for n in list(self.g.nodes):
            if n.op_type != "Transpose" or n.domain != "" or n.outputs[0] in self.outputs:
                continue
            key = (n.inputs[0], tuple(_perm(n, self.g) or ()))
            if key in seen:
                self.g.replace_uses(n.outputs[0], seen[key])
                self.g.remove_node(n)
                changed += 1
            else:
                seen[key] = n.outputs[0]
        if changed:
            self.refresh()
        return changed


def _vector_like(graph: Graph, name: str, rank: Optional[int] = None) -> bool:
    shape = graph.value(name).shape
    return shape is not None and len(shape) == (len(shape) if rank is None else rank) and all(
        isinstance(d, int) for d in shape[1:]) and sum(d > 1 for d in shape[1:]) <= 1


def _transposes(graph: Graph) -> int:
    """Transposes of real tensors (a per-channel gate's only relabels its values)."""
    def gate(name: str) -> bool:
        shape = graph.value(name).shape
        return shape is not None and len(shape) >= 3 and _vector_like(graph, name)
    return sum(n.op_type == "Transpose" and n.domain == "" and not gate(n.inputs[0])
               for n in graph.nodes)


def _rewrite(graph: Graph, max_rounds: int, strict: bool) -> int:
    p = _Pass(graph, strict)
    total = 0
    for _ in range(max_rounds):
        changed = p.merge() + p.dedupe()
        changed += p.sink()
        total += changed
        if not changed:
            break
    return total


def optimize_transposes(graph: Graph, max_rounds: int = 10_000) -> int:
    """Merge, sink and dedupe Transposes in ``graph`` (in place); returns the number of
    rewrites. Shapes are re-inferred for the tensors the pass creates.

    The graph never ends with more Transposes than it had: a first round lets Transposes
    meet partners that other readers keep alive (residual chains need that: the partner
    sinks later); if that leaves more Transposes, a strict round refuses such meetings; if
    even that does, the graph is left as it was."""
    start, original = _transposes(graph), graph.copy()
    total = 0
    for strict in (False, True):
        total = _rewrite(graph, max_rounds, strict)
        if _transposes(graph) <= start:
            break
        graph.__dict__.update(original.copy().__dict__)
        total = 0
    if total:
        declared = set(graph.input_names) | set(graph.output_names)
        infer_shapes(graph, declared=declared)
    return total
