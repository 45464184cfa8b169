"""Output-aware quantization: keep in float what an 8-bit grid would only damage.

Two patterns break textbook int8 quantization at a model's outputs:
- a Concat whose inputs have very different ranges (a detector head joining box coordinates
  in pixels, 0..320, with class probabilities, 0..1): one uint8 scale for the joined tensor
  leaves the narrow branch a code or two;
- a lookup-table region (Sigmoid, Softmax's neighbours, HardSigmoid, ...) whose output feeds
  only float ops or the model output: quantizing that output buys no int8 kernel and costs
  the small values (probabilities near 0) their precision.

Both run in float when no int8 op reads their result (directly or through data movement):
each branch keeps its own scale up to the join, and the output stays float. Where an int8 op
does read the result, the join or region stays int8: its consumer needs one scale anyway.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph import Graph
from .observers import Observer

__all__ = ["output_aware_float", "JOIN_RANGE_RATIO"]

#: A Concat whose input ranges (max - min, widened to 0) differ by more than this factor is
#: "mismatched": its narrowest input would lose more than 3 bits under the joint scale.
JOIN_RANGE_RATIO = 8.0


def output_aware_float(graph: Graph, observers: dict[str, Observer], options) -> list[str]:
    """Node names that the output-aware rules keep in float (see the module docstring)."""
    from .qdq import plan_roles    # quantize.py imports this module lazily too
    roles = plan_roles(graph, replace(options, output_aware=False))
    role = roles.role
    readers = graph.consumers_map()
    producer = graph.producers_map()
    region_of, regions = _lut_regions(graph, role, producer)
    memo: dict[str, bool] = {}

    def feeds_int8(t: str) -> bool:
        return any(int8_reader(r.name) for r in readers.get(t, []))

    def int8_reader(name: str) -> bool:
        """Does node `name` read its activation inputs as int8 (after these rules)?"""
        if name in memo:
            return memo[name]
        memo[name] = True          # a cycle cannot occur (DAG); this guards re-entry anyway
        node = nodes[name]
        r = role.get(name)
        if r == "compute":
            res = True
        elif r == "join":
            res = not _mismatched(node, observers, roles, options) or feeds_int8(node.outputs[0])
        elif r == "movement":
            res = any(feeds_int8(o) for o in node.outputs if o)
        elif r == "lut":
            members, outs = regions[region_of[name]]
            res = any(int8_reader(u.name) for o in outs for u in readers.get(o, [])
                      if u.name not in members)
        else:
            res = False
        memo[name] = res
        return res

    nodes = {n.name: n for n in graph.nodes}
    keep: list[str] = []
    for node in graph.nodes:
        r = role.get(node.name)
        if r in ("join", "lut") and not int8_reader(node.name):
            keep.append(node.name)
    return keep


def _lut_regions(graph: Graph, role: dict, producer: dict):
    """Group the lut-role nodes into regions (connected through lut-made tensors):
    ({node name: region id}, {region id: (member names, output tensors read outside or
    graph outputs)})."""
    region_of: dict[str, int] = {}
    for node in graph.nodes:
        if role.get(node.name) != "lut":
            continue
        ids = {region_of[producer[i].name] for i in node.inputs
               if i in producer and producer[i].name in region_of}
        rid = min(ids) if ids else len(region_of) + 1000000
        for other in ids - {rid}:          # two regions meet in this node: merge them
            for k, v in region_of.items():
                if v == other:
                    region_of[k] = rid
        region_of[node.name] = rid
    members: dict[int, set] = {}
    for name, rid in region_of.items():
        members.setdefault(rid, set()).add(name)
    readers = graph.consumers_map()
    outs_of: dict[int, tuple] = {}
    graph_outs = set(graph.output_names)
    for node in graph.nodes:
        rid = region_of.get(node.name)
        if rid is None:
            continue
        for o in node.outputs:
            if o and (o in graph_outs or any(u.name not in members[rid]
                                             for u in readers.get(o, []))):
                outs_of[rid] = outs_of.get(rid, ()) + (o,)
    return region_of, {rid: (members[rid], outs_of.get(rid, ())) for rid in members}


def _mismatched(node, observers: dict, roles, options) -> bool:
    """True when the join's activation inputs have ranges more than JOIN_RANGE_RATIO apart."""
    widths = []
    for i in node.inputs:
        root = roles.inherits.get(i, i)
        obs = observers.get(root)
        if obs is None:
            continue
        lo, hi = obs.range(bits=options.activation_bits, signed=False,
                           symmetric=options.symmetric_activations)
        w = max(float(np.max(hi)), 0.0) - min(float(np.min(lo)), 0.0)
        if w > 0 and np.isfinite(w):
            widths.append(w)
    return len(widths) >= 2 and max(widths) > JOIN_RANGE_RATIO * min(widths)
