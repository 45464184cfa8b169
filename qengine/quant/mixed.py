"""Automatic fidelity target: keep the fewest layers in float until every model output meets
a target SQNR on held-back calibration samples.

    q0 = quantize everything (output-aware)                         1 compiled trial
    every output >= target?  done: nothing stays float
    rank units (quant/sensitivity.py) by their output SQNR when
      kept float alone                                              1 trial per unit
    keep the first 1, 2, 4, ... ranked units float, then bisect     <= max_trials trials
    re-quantize the chosen set with every calibration sample (held-back ones included)

Each trial is the graph compiled for this CPU and run on the evaluation samples: the figures
are the int8 model's, not a simulation's. The ranking uses the first `sensitivity_batches`
evaluation batches only, and at most `max_units` units (the worst by local quantization
noise first when there are more), so the search stays a few dozen compilations whatever the
model. "The speed it cost" is measured: the chosen model and the all-int8 one, timed in turn
on one evaluation batch.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..graph import Graph
from .evaluate import OutputEvaluator, Trial
from .quantize import QuantizeOptions, quantize_graph
from .sensitivity import Sensitivity, analyze, find_units

__all__ = ["FidelityResult", "meet_target", "measure_speed_cost"]


@dataclass
class FidelityResult:
    """What the search decided and what it measured."""
    graph: Graph                   # the final QDQ graph
    target: float
    kept_float: list               # node names kept in float by the search
    output_sqnr: dict              # chosen candidate, per output, on the evaluation samples
    int8_output_sqnr: dict         # everything quantized, same samples
    met: bool
    evaluated_on: str
    trials: int
    seconds: float
    speed_cost: float = 1.0        # run time with the kept-float layers / all int8
    ranking: list = field(default_factory=list)   # [Sensitivity], most helpful first

    def info(self) -> dict:
        r2 = lambda d: {k: round(float(v), 2) for k, v in d.items()}   # noqa: E731
        return {"target_sqnr": self.target, "target_met": self.met,
                "kept_float": list(self.kept_float), "output_sqnr": r2(self.output_sqnr),
                "int8_output_sqnr": r2(self.int8_output_sqnr),
                "speed_cost": round(float(self.speed_cost), 3),
                "fidelity_trials": self.trials, "fidelity_seconds": round(self.seconds, 3),
                "evaluated_on": self.evaluated_on}


def meet_target(graph: Graph, search_observers: dict, final_observers: dict,
                options: QuantizeOptions, evaluator: OutputEvaluator, target: float, *,
                weight_codes: Optional[dict] = None, bias_shift: Optional[dict] = None,
                max_trials: int = 8, max_units: int = 24, sensitivity_batches: int = 1,
                evaluated_on: str = "held-back samples") -> FidelityResult:
    """Search the kept-float set (module docstring). search_observers: calibrated without the
    evaluation samples; final_observers: with them (the model returned)."""
    t_start = time.perf_counter()
    trials0 = evaluator.trials

    def quantize_with(observers, keep: frozenset) -> Graph:
        opts = replace(options, keep_float=options.keep_float | keep)
        return quantize_graph(graph, observers, opts, weight_codes=weight_codes,
                              bias_shift=bias_shift)

    q0 = quantize_with(search_observers, frozenset())
    t0 = evaluator(q0)
    names = {n.name for n in graph.nodes}

    def result(keep: frozenset, best: Trial, met: bool, ranking=()) -> FidelityResult:
        final = quantize_with(final_observers, keep)
        cost = measure_speed_cost(t0.executor, best.executor, evaluator.feeds[0]) \
            if keep else 1.0
        return FidelityResult(final, target, sorted(keep & names, key=_order(graph)),
                              best.sqnr, t0.sqnr, met, evaluated_on,
                              evaluator.trials - trials0, time.perf_counter() - t_start, cost,
                              list(ranking))

    if t0.worst >= target:
        return result(frozenset(), t0, True)

    base = set(t0.float_nodes)
    units = find_units(q0, graph)
    if options.weight_bits == 8 and options.per_channel:
        # 8-bit per-channel weights are rarely what breaks a model; an activation unit
        # floats its producer and readers, weights included
        units = [u for u in units if u.kind == "activation"]
    order = _by_damage(units, q0, graph, evaluator)
    measured: list[Sensitivity] = []
    seen: dict[frozenset, Trial] = {}
    for start in range(0, len(order), max_units):
        for u in order[start:start + max_units]:
            (s,) = analyze(q0, evaluator, float_graph=graph, units=[u],
                           limit=sensitivity_batches, base_float=base)
            if s.float_nodes:
                measured.append(s)
            if s.float_nodes and s.float_alone_db >= target:
                break                      # one unit suffices: no need to rank the rest
        ranked = sorted(measured, key=lambda s: (-_finite(s.float_alone_db),
                                                 len(s.float_nodes)))
        hit = _prefix_search(ranked, target, max_trials, seen,
                             lambda keep: evaluator(quantize_with(search_observers, keep)))
        if hit is not None:
            return result(hit, seen[hit], True, ranked)
    # not even every unit in float meets the target: keep the best candidate seen
    keep, best = max(seen.items(), key=lambda kv: _finite(kv[1].worst),
                     default=(frozenset(), t0))
    if _finite(t0.worst) >= _finite(best.worst):
        keep, best = frozenset(), t0
    warnings.warn(f"target_sqnr={target} dB not reached: the best found is "
                  f"{best.worst:.1f} dB with {len(keep)} node(s) in float", RuntimeWarning,
                  stacklevel=3)
    return result(keep, best, False, measured)


def _prefix_search(ranked: list, target: float, max_trials: int, seen: dict, run):
    """The shortest prefix of `ranked` whose float nodes meet the target: doubling (1, 2, 4,
    ... units; at most log2(n) + 1 trials), then bisection (at most max_trials). Returns the
    kept set, or None. `seen` caches {kept set: Trial}."""
    def keep_of(k: int) -> frozenset:
        out: set = set()
        for s in ranked[:k]:
            out.update(s.float_nodes)
        return frozenset(out)

    def ok(k: int) -> bool:
        keep = keep_of(k)
        if keep not in seen:
            seen[keep] = run(keep)
        return seen[keep].worst >= target

    n = len(ranked)
    lo, hi, k = 0, None, 1
    while n and hi is None:
        if ok(k):
            hi = k
        elif k == n:
            break
        else:
            lo, k = k, min(2 * k, n)
    while hi is not None and hi - lo > 1 and max_trials > 0:
        mid = (lo + hi) // 2
        max_trials -= 1
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return None if hi is None else keep_of(hi)


def _finite(x: float) -> float:
    return 1e9 if x == float("inf") else (-1e9 if not np.isfinite(x) else float(x))


def _order(graph: Graph):
    index = {n.name: i for i, n in enumerate(graph.nodes)}
    return lambda name: index.get(name, -1)


def _by_damage(units: list, q0: Graph, graph: Graph, evaluator: OutputEvaluator) -> list:
    """Units ordered by the noise each one's tensor adds in the int8 run: its noise-to-signal
    ratio minus the worst of the quantized tensors its producer reads (one comparison pass on
    the first evaluation batch). Where the int8 model injects the most error comes first."""
    from .layers import compare_layers
    rows = compare_layers(graph, q0, evaluator.feeds[:1],
                          num_threads=evaluator.num_threads).activations
    producer = graph.producers_map()

    def nsr(t: str) -> float:
        return 10.0 ** (-_finite(rows[t].sqnr) / 10.0)

    def sources(t: str, depth: int = 0) -> list:
        """The quantized tensors upstream of t's producer (through unquantized ones)."""
        p = producer.get(t)
        if p is None or depth > 8:
            return []
        out = []
        for i in p.inputs:
            if i in rows:
                out.append(i)
            elif i and i not in graph.initializers:
                out += sources(i, depth + 1)
        return out

    def added(t: str) -> float:
        if t not in rows:
            return 0.0
        before = [nsr(i) for i in sources(t)]
        return nsr(t) - (max(before) if before else 0.0)

    out_of = {}          # a node -> the quantized tensor it makes (through fused Relu/Clip)
    readers = graph.consumers_map()
    for n in graph.nodes:
        for o in n.outputs:
            if o in rows:
                out_of[n.name] = o
            elif o and len(readers.get(o, [])) == 1 and readers[o][0].outputs[0] in rows:
                out_of[n.name] = readers[o][0].outputs[0]
    score = {u: added(u.name if u.kind == "activation" else out_of.get(u.name, ""))
             for u in units}
    return sorted(units, key=lambda u: -score[u])


def measure_speed_cost(ex_int8, ex_mixed, feeds: dict, repeat: int = 3) -> float:
    """Run time of ex_mixed over ex_int8 on `feeds` (both compiled; alternated, best of
    `repeat` each, so a noisy machine affects both alike)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, ex in enumerate((ex_int8, ex_mixed)):
            t = time.perf_counter()
            ex.run(feeds)
            best[i] = min(best[i], time.perf_counter() - t)
    return best[1] / best[0] if best[0] > 0 else 1.0
