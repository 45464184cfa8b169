"""Sensitivity: what each quantized part of a QDQ graph costs at the model's outputs.

Units (found in the QDQ structure, so foreign QDQ models work too):
- an activation group: a QuantizeLinear -> DequantizeLinear pair on a float tensor, with the
  pairs that data movement (Reshape, Transpose, MaxPool, ...) copies its parameters to;
- a weighted node: a node that reads an int8 constant through a DequantizeLinear.

Two measures per unit, each one compiled run on the evaluation feeds:
- float alone: everything quantized except this unit (its Q/DQ pairs bypassed, or the
  node's float constants restored). The compiler runs a node whose DQ -> op -> Q pattern is
  broken in float, so bypassing a tensor makes its producer and readers float: the measure
  is what keeping that tensor float really buys, and `float_nodes` says which nodes it takes;
- quantized alone: everything float except this unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from ..graph import Graph, Node
from ..ops import make_op

__all__ = ["Unit", "Sensitivity", "find_units", "bypass", "only", "analyze",
           "float_source", "restore_float_constants"]


@dataclass(frozen=True)
class Unit:
    kind: str               # "activation" or "weights"
    name: str               # the float tensor (activation) or the node (weights)
    op: str = ""            # the op producing the tensor / the node's op type
    q_nodes: tuple = ()     # QuantizeLinear node names of an activation group

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.op})" if self.op else f"{self.kind} {self.name}"


@dataclass
class Sensitivity:
    """Output SQNR (dB, per output) with `unit` float alone / quantized alone."""
    unit: Unit
    float_alone: Optional[dict] = None
    quant_alone: Optional[dict] = None
    float_nodes: list = field(default_factory=list)   # nodes floated with the unit

    @staticmethod
    def _worst(d: Optional[dict]) -> float:
        return min(d.values()) if d else float("nan")

    @property
    def float_alone_db(self) -> float:
        return self._worst(self.float_alone)

    @property
    def quant_alone_db(self) -> float:
        return self._worst(self.quant_alone)


# ---- the structure ---------------------------------------------------------------------------
def _const_params(g: Graph, n: Node) -> Optional[tuple]:
    init = g.initializers
    s = init.get(n.inputs[1]) if len(n.inputs) > 1 else None
    z = init.get(n.input(2)) if n.input(2) else None
    if s is None or (n.input(2) and z is None):
        return None
    return (s.tobytes(), s.shape, None if z is None else (z.tobytes(), z.dtype.str))


def float_source(g: Graph, q: Node, producer: dict) -> str:
    """The float tensor a QuantizeLinear quantizes (before the Clip that narrow bit widths add
    in front of it)."""
    src = q.inputs[0]
    p = producer.get(src)
    if p is not None and p.op_type == "Clip" and len(p.inputs) == 3 and \
            all(i in g.initializers for i in p.inputs[1:]):
        return p.inputs[0]
    return src


def _activation_qs(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op_type == "QuantizeLinear" and n.domain == "" and
            n.inputs[0] not in g.initializers and _const_params(g, n) is not None]


def find_units(qgraph: Graph, float_graph: Optional[Graph] = None) -> list[Unit]:
    """Activation groups then weighted nodes, in graph order."""
    g = qgraph
    producer, readers = g.producers_map(), g.consumers_map()
    qs = _activation_qs(g)
    q_of = {q.outputs[0]: q for q in qs}
    parent = {q.name: q.name for q in qs}

    def root(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for q in qs:        # movement of a dequantized tensor, quantized again with equal params
        m = producer.get(float_source(g, q, producer))
        if m is None or not m.inputs or not _movement(g, m):
            continue
        d = producer.get(m.inputs[0])
        if d is None or d.op_type != "DequantizeLinear":
            continue
        q1 = q_of.get(d.inputs[0])
        if q1 is not None and _const_params(g, q1) == _const_params(g, q):
            parent[root(q.name)] = root(q1.name)
    groups: dict[str, list[Node]] = {}
    for q in qs:
        groups.setdefault(root(q.name), []).append(q)
    float_names = float_graph.tensor_names() if float_graph is not None else None
    outs = set(g.output_names)
    units = []
    for members in groups.values():
        q = members[0]
        name = float_source(g, q, producer)
        dq_outs = [d.outputs[0] for d in readers.get(q.outputs[0], [])
                   if d.op_type == "DequantizeLinear"]
        out_name = next((o for o in dq_outs if o in outs), None)
        if out_name is not None and (float_names is None or name not in float_names):
            name = out_name          # a graph output keeps its name; the producer's is T_float
        p = producer.get(float_source(g, q, producer))
        units.append(Unit("activation", name, p.op_type if p is not None else "input",
                          tuple(m.name for m in members)))
    for n in g.nodes:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(_int8_weight(g, producer.get(i)) for i in n.inputs if i):
            units.append(Unit("weights", n.name, n.op_type))
    return units


def _movement(g: Graph, node: Node) -> bool:
    try:
        return make_op(node, g.opset).int8_kind() == "movement"
    except Exception:      # an op qengine cannot parse is no movement we know of
        return False


def _int8_weight(g: Graph, d: Optional[Node]) -> bool:
    if d is None or d.op_type != "DequantizeLinear":
        return False
    w = g.initializers.get(d.inputs[0])
    return w is not None and w.dtype == np.int8 and w.ndim >= 2


# ---- surgery ---------------------------------------------------------------------------------
def _bypass_group(g: Graph, unit: Unit, producer: dict, readers: dict) -> None:
    outs = set(g.output_names)
    nodes = {n.name: n for n in g.nodes}
    for qname in unit.q_nodes:
        q = nodes.get(qname)
        if q is None:
            continue
        src = float_source(g, q, producer)
        for d in readers.get(q.outputs[0], []):
            if d.op_type != "DequantizeLinear":
                continue
            o = d.outputs[0]
            if o in outs:        # the output keeps its name: DQ becomes Identity(src)
                d.op_type, d.inputs, d.attrs = "Identity", [src], {}
            else:
                g.replace_uses(o, src)


def restore_float_constants(g: Graph, node: Node, float_graph: Graph) -> bool:
    """Give `node` the float weights, bias and attributes of its namesake in `float_graph`
    (same op type). False when there is none."""
    try:
        f = float_graph.node(node.name)
    except KeyError:
        return False
    if f.op_type != node.op_type:
        return False
    producer = g.producers_map()
    new = list(node.inputs)
    for k, i in enumerate(node.inputs):
        d = producer.get(i)
        if d is None or d.op_type != "DequantizeLinear" or d.inputs[0] not in g.initializers:
            continue
        fi = f.input(k)
        if not fi:
            new[k] = ""           # e.g. a bias that only bias correction added
        elif fi in float_graph.initializers:
            new[k] = g.add_initializer(g.unique_name(f"{node.name}.float{k}"),
                                       float_graph.initializers[fi])
        else:
            return False
    while new and not new[-1]:
        new.pop()
    node.inputs = new
    node.attrs = dict(f.attrs)
    return True


def bypass(qgraph: Graph, units: Iterable[Unit], float_graph: Optional[Graph] = None) -> Graph:
    """A copy of `qgraph` with `units` in float: activation groups' Q/DQ bypassed, weighted
    nodes given their float constants back (needs `float_graph`)."""
    g = qgraph.copy()
    producer, readers = g.producers_map(), g.consumers_map()
    for u in units:
        if u.kind == "activation":
            _bypass_group(g, u, producer, readers)
        elif float_graph is not None:
            try:
                restore_float_constants(g, g.node(u.name), float_graph)
            except KeyError:
                pass
    g.prune()
    g.toposort()
    return g


def only(qgraph: Graph, unit: Unit, float_graph: Optional[Graph], units=None) -> Graph:
    """A copy of `qgraph` with every unit but `unit` in float."""
    units = find_units(qgraph, float_graph) if units is None else units
    return bypass(qgraph, [u for u in units if u != unit], float_graph)


# ---- measuring -------------------------------------------------------------------------------
def analyze(qgraph: Graph, evaluator, *, float_graph: Optional[Graph] = None,
            units: Optional[list] = None, float_alone: bool = True, quant_alone: bool = False,
            limit: Optional[int] = None,
            base_float: Optional[Iterable[str]] = None) -> list[Sensitivity]:
    """Measure every unit (evaluator: quant.evaluate.OutputEvaluator). Returns them in the
    order given; `float_nodes` lists the nodes beyond `base_float` (default: those qgraph
    already runs in float) a float-alone unit took."""
    units = find_units(qgraph, float_graph) if units is None else units
    base = set(base_float) if base_float is not None else \
        set(evaluator(qgraph, limit).float_nodes)
    names = {n.name for n in (float_graph or qgraph).nodes}
    res = []
    for u in units:
        s = Sensitivity(u)
        if float_alone:
            t = evaluator(bypass(qgraph, [u], float_graph), limit)
            s.float_alone = t.sqnr
            s.float_nodes = [n for n in t.float_nodes if n not in base and n in names]
        if quant_alone:
            s.quant_alone = evaluator(only(qgraph, u, float_graph, units), limit).sqnr
        res.append(s)
    return res
