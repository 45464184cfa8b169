"""Layer by layer: a quantized graph's activations and weights against its float model.

Activations are matched by tensor name through the QDQ structure: a quantized float tensor T
appears as T -> QuantizeLinear -> codes -> DequantizeLinear (a graph output keeps its name on
the DequantizeLinear, and the producer writes T_float; narrow bit widths put a Clip before
the QuantizeLinear). The int8 side is the compiled run (the codes every QuantizeLinear
produces, dequantized), the float side the float reference executor. Weights are matched by
node name and input position. Per tensor:
- sqnr / cosine: the int8 model's activation against the float model's (all upstream error);
- local_sqnr: the float activation fake-quantized with the tensor's own parameters against
  itself (this tensor's own rounding and clipping only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from ..graph import Graph
from .evaluate import Stats
from .params import QParams, dequantize, fake_quantize
from .sensitivity import float_source

__all__ = ["ActivationRow", "WeightRow", "LayerComparison", "compare_layers",
           "match_activations"]


class _Compared:
    """sqnr / cosine of a row's `stats` (the int8 side against the float side)."""
    stats: Stats

    @property
    def sqnr(self) -> float:
        return self.stats.sqnr

    @property
    def cosine(self) -> float:
        return self.stats.cosine


@dataclass
class ActivationRow(_Compared):
    tensor: str
    node: str                  # producer in the float graph ("" for a graph input)
    op: str
    depth: int                 # producer's position in the float graph (0: a graph input)
    scale: float
    zero_point: int
    stats: Stats = field(default_factory=Stats)
    local: Stats = field(default_factory=Stats)

    @property
    def local_sqnr(self) -> float:
        return self.local.sqnr


@dataclass
class WeightRow(_Compared):
    node: str
    op: str
    depth: int
    levels: int                # distinct integer codes the quantized weight may use (2^b - 1)
    per_channel: bool
    stats: Stats = field(default_factory=Stats)


@dataclass
class LayerComparison:
    activations: dict          # float tensor name -> ActivationRow
    weights: dict              # node name -> WeightRow
    outputs: dict              # output name -> Stats
    samples: int = 0


def _params(g: Graph, q) -> Optional[QParams]:
    init = g.initializers
    s = init.get(q.inputs[1])
    z = init.get(q.input(2)) if q.input(2) else None
    if s is None or s.size != 1 or (q.input(2) and z is None):
        return None
    zdt = np.dtype(np.uint8) if z is None else z.dtype
    if zdt not in (np.uint8, np.int8):
        return None
    return QParams(s.reshape(()), (z if z is not None else np.zeros((), np.int32)).reshape(())
                   .astype(np.int32), None, 8, zdt == np.int8)


def match_activations(float_graph: Graph, qgraph: Graph) -> list[tuple]:
    """[(float tensor name, QuantizeLinear node, QParams, clip bounds or None)] for every
    activation quantized per tensor in qgraph whose float tensor the float graph has."""
    producer, readers = qgraph.producers_map(), qgraph.consumers_map()
    names = float_graph.tensor_names() - set(float_graph.initializers)
    out, seen = [], set()
    for q in qgraph.nodes:
        if q.op_type != "QuantizeLinear" or q.inputs[0] in qgraph.initializers:
            continue
        qp = _params(qgraph, q)
        if qp is None:
            continue
        src = float_source(qgraph, q, producer)
        cands = [src] + [d.outputs[0] for d in readers.get(q.outputs[0], [])
                         if d.op_type == "DequantizeLinear"]
        name = next((c for c in cands if c in names), None)
        if name is None or name in seen:
            continue
        seen.add(name)
        clip = None
        if src != q.inputs[0]:
            c = producer[q.inputs[0]]
            init = qgraph.initializers
            clip = (float(init[c.inputs[1]]), float(init[c.inputs[2]]))
        out.append((name, q, qp, clip))
    return out


def compare_layers(float_graph: Graph, qgraph: Graph, feeds: Iterable[dict], *,
                   num_threads: Optional[int] = None) -> LayerComparison:
    """Compare every matched activation, every weight and every output over `feeds`."""
    from ..runtime.executor import Executor
    from ..runtime.reference import ReferenceExecutor
    matched = match_activations(float_graph, qgraph)
    g = qgraph.copy()
    extra = [q.outputs[0] for _, q, _, _ in matched if q.outputs[0] not in g.output_names]
    g.outputs = g.outputs + [g.value(t) for t in extra]
    ex = Executor(g, num_threads=num_threads)
    ref = ReferenceExecutor(float_graph)
    depth, producer = _depths(float_graph)
    rows = {}
    for name, q, qp, _ in matched:
        p = producer.get(name)
        rows[name] = ActivationRow(name, p.name if p else "", p.op_type if p else "input",
                                   depth.get(name, 0), float(qp.scale), int(qp.zero_point))
    outs = {o: Stats() for o in qgraph.output_names if o in float_graph.output_names}
    wanted = list(dict.fromkeys([n for n, *_ in matched] + list(outs)))
    samples = 0
    for f in feeds:
        fl = ref.run(f, outputs=wanted)
        got = ex.run(f)
        samples += max((a.shape[0] if np.ndim(a) else 1) for a in f.values())
        for name, q, qp, clip in matched:
            x = fl[name]
            rows[name].stats.add(x, dequantize(got[q.outputs[0]], qp))
            xl = np.clip(x, *clip) if clip else x
            rows[name].local.add(x, fake_quantize(xl, qp))
        for o, st in outs.items():
            st.add(fl[o], got[o])
    return LayerComparison(rows, compare_weights(float_graph, qgraph, depth), outs, samples)


def _depths(g: Graph) -> tuple[dict, dict]:
    depth, producer = {}, {}
    for k, n in enumerate(g.nodes):
        for o in n.outputs:
            if o:
                depth[o] = k + 1
                producer[o] = n
    return depth, producer


def compare_weights(float_graph: Graph, qgraph: Graph, depth: Optional[dict] = None) -> dict:
    """{node name: WeightRow} for every node reading an int8 weight through a
    DequantizeLinear whose float namesake has that weight as a constant."""
    from .qdq import weight_spec
    depth = depth if depth is not None else _depths(float_graph)[0]
    producer = qgraph.producers_map()
    fnodes = {n.name: n for n in float_graph.nodes}
    rows = {}
    for n in qgraph.nodes:
        f = fnodes.get(n.name)
        if f is None or f.op_type != n.op_type:
            continue
        for k, i in enumerate(n.inputs):
            d = producer.get(i)
            if d is None or d.op_type != "DequantizeLinear":
                continue
            codes = qgraph.initializers.get(d.inputs[0])
            if codes is None or codes.dtype != np.int8 or codes.ndim < 2:
                continue
            spec = weight_spec(float_graph, f)
            w = spec[1] if spec is not None and spec[0] == k else \
                float_graph.initializers.get(f.input(k))
            if w is None or w.shape != codes.shape:
                continue
            scale = qgraph.initializers[d.inputs[1]]
            zp = qgraph.initializers.get(d.input(2)) if d.input(2) else None
            axis = int(d.attrs.get("axis", 1)) if scale.size > 1 else None
            qp = QParams(scale.reshape(-1) if axis is not None else scale.reshape(()),
                         (zp if zp is not None else np.zeros(scale.shape, np.int32))
                         .astype(np.int32).reshape(-1 if axis is not None else ()),
                         axis % codes.ndim if axis is not None else None, 8, True)
            row = WeightRow(n.name, n.op_type, depth.get(f.outputs[0], 0),
                            int(np.abs(codes.astype(np.int32)).max()) * 2 + 1, axis is not None)
            row.stats.add(w, dequantize(codes, qp))
            rows[n.name] = row
            break
    return rows
