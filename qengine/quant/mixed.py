"""Automatic fidelity target: keep the fewest layers in float (or at 8 bits, when narrower
widths were asked for) until every model output meets a target SQNR on held-back samples.

    q0 = quantize everything (output-aware)                          1 compiled trial
    every output >= target?  done
    narrower than 8 bits and all-8-bit meets it?  widen the fewest units (below), done
    float level, on top of all-8-bit when narrower:
      order the units by the noise their tensor adds in the int8 run   1 comparison pass
      run each unit kept float alone, in that order, on 4 samples     1 trial per unit,
        (stop at the first that meets the target alone)                <= max_units
      keep float the nodes of the first 1, 2, 4, ... measured units,   <= log2(n) + 1 trials
        then bisect                                                    <= max_trials trials
      none suffices: append the other units in the damage order
        (compiled, not run, to learn their nodes) and search again
    narrower than 8 bits: on top of the float set, widen the fewest units in the damage
      order (doubling, then bisection; widening costs no speed, so no per-unit runs)
    re-quantize the chosen configuration with every calibration sample (held-back included)

A unit is an activation group or a weighted node (quant/sensitivity.py). Its "8-bit" remedy
quantizes that tensor / those weights at 8 bits: the same int8 kernels, so no speed cost.
Its "float" remedy bypasses the group's Q/DQ (or restores the node's float weights); the
compiler then runs whatever that breaks in float, and those nodes are what the unit keeps
float. Each trial is the graph compiled for this CPU and run on the evaluation samples: the
figures are the int8 model's. "The speed it cost" is measured: the chosen model and the
all-int8 one timed in turn on one evaluation batch.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..graph import Graph
from ..runtime.executor import Executor
from .evaluate import OutputEvaluator, Trial, float_nodes_of
from .qdq import QuantizeOptions, quantize_graph
from .sensitivity import Sensitivity, bypass, find_units

__all__ = ["FidelityResult", "Config", "meet_target", "measure_speed_cost"]


@dataclass(frozen=True)
class Config:
    """What the search changes: nodes kept float, nodes with 8-bit weights, tensors with
    8-bit activations."""
    keep: frozenset = frozenset()
    wide_weights: frozenset = frozenset()
    wide_tensors: frozenset = frozenset()

    def __or__(self, o: "Config") -> "Config":
        return Config(self.keep | o.keep, self.wide_weights | o.wide_weights,
                      self.wide_tensors | o.wide_tensors)

    def size(self) -> int:
        return len(self.keep) + len(self.wide_weights) + len(self.wide_tensors)


@dataclass
class FidelityResult:
    """What the search decided and what it measured."""
    graph: Graph                   # the final QDQ graph
    target: float
    kept_float: list               # node names kept in float by the search
    widened: list                  # nodes / tensors quantized at 8 bits instead of fewer
    output_sqnr: dict              # chosen configuration, per output, evaluation samples
    int8_output_sqnr: dict         # everything quantized, same samples
    met: bool
    evaluated_on: str
    trials: int
    seconds: float
    speed_cost: float = 1.0        # run time of the chosen model / the all-int8 one
    ranking: list = field(default_factory=list)   # [Sensitivity] of the deciding level

    def info(self) -> dict:
        r2 = lambda d: {k: round(float(v), 2) for k, v in d.items()}   # noqa: E731
        out = {"target_sqnr": self.target, "target_met": self.met,
               "kept_float": list(self.kept_float), "output_sqnr": r2(self.output_sqnr),
               "int8_output_sqnr": r2(self.int8_output_sqnr),
               "speed_cost": round(float(self.speed_cost), 3),
               "fidelity_trials": self.trials, "fidelity_seconds": round(self.seconds, 3),
               "evaluated_on": self.evaluated_on}
        if self.widened:
            out["widened_to_8_bits"] = list(self.widened)
        return out


def meet_target(graph: Graph, search_observers: dict, final_observers: dict,
                options: QuantizeOptions, evaluator: OutputEvaluator, target: float, *,
                weight_codes: Optional[dict] = None, bias_shift: Optional[dict] = None,
                max_trials: int = 8, max_units: int = 24, sensitivity_samples: int = 4,
                evaluated_on: str = "held-back samples") -> FidelityResult:
    """Search the configuration (module docstring). search_observers: calibrated without the
    evaluation samples; final_observers: with them (the model returned)."""
    t_start = time.perf_counter()
    trials0 = evaluator.trials

    def quantize_with(observers, cfg: Config) -> Graph:
        opts = replace(options, keep_float=options.keep_float | cfg.keep,
                       wide_weights=options.wide_weights | cfg.wide_weights,
                       wide_tensors=options.wide_tensors | cfg.wide_tensors)
        return quantize_graph(graph, observers, opts, weight_codes=weight_codes,
                              bias_shift=bias_shift)

    seen: dict[Config, Trial] = {}

    def trial(cfg: Config) -> Trial:
        if cfg not in seen:
            seen[cfg] = evaluator(quantize_with(search_observers, cfg))
        return seen[cfg]

    t0 = trial(Config())
    names = {n.name for n in graph.nodes}

    def result(cfg: Config, met: bool, ranking=()) -> FidelityResult:
        best = seen[cfg]
        cost = measure_speed_cost(t0.executor, best.executor, evaluator.feeds[0]) \
            if cfg.keep else 1.0
        _warn_if_mostly_float(graph, cfg.keep, target, cost)
        order = _order(graph)
        return FidelityResult(quantize_with(final_observers, cfg), target,
                              sorted(cfg.keep & names, key=order),
                              sorted(cfg.wide_weights, key=order) + sorted(cfg.wide_tensors),
                              best.sqnr, t0.sqnr, met, evaluated_on,
                              evaluator.trials - trials0, time.perf_counter() - t_start, cost,
                              list(ranking))

    if t0.worst >= target:
        return result(Config(), True)

    narrow = min(options.weight_bits, options.activation_bits) < 8
    if narrow:
        all8 = _widen_all(quantize_with(search_observers, Config()), graph, options)
        if trial(all8).worst >= target:          # 8 bits where needed suffice: no float
            return result(_widen_search(Config(), target, max_trials, trial, quantize_with,
                                        search_observers, graph, evaluator, options), True)
    base = all8 if narrow else Config()
    keep, ranked = _float_search(base, target, max_trials, max_units,
                                 evaluator.subset(sensitivity_samples), trial, quantize_with,
                                 search_observers, graph, evaluator, options)
    if keep is not None:
        cfg = base | keep
        if narrow:                               # now narrow again all that can be
            cfg = _widen_search(keep, target, max_trials, trial, quantize_with,
                                search_observers, graph, evaluator, options) or cfg
        return result(cfg, True, ranked)
    # not even everything in float meets the target: keep the best configuration seen
    cfg, best = max(seen.items(), key=lambda kv: (_finite(kv[1].worst), -kv[0].size()))
    warnings.warn(f"target_sqnr={target} dB not reached: the best found is {best.worst:.1f} "
                  f"dB with {len(cfg.keep)} node(s) in float", RuntimeWarning, stacklevel=3)
    return result(cfg, False, ranked)


_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _warn_if_mostly_float(graph: Graph, keep: frozenset, target: float, cost: float) -> None:
    """A target met only by keeping most of the compute float is rarely what the caller meant
    (calibration data unlike the model's inputs, random weights, or a target too high for
    int8): say so, with the way out, instead of silently returning a float model."""
    compute = [n.name for n in graph.nodes if n.op_type in _COMPUTE_OPS]
    kept = [n for n in compute if n in keep]
    if compute and 2 * len(kept) > len(compute):
        warnings.warn(f"target_sqnr={target} dB keeps most of the model float ({len(kept)} of "
                      f"{len(compute)} Conv/Gemm/MatMul nodes; run time x{cost:.1f} of all-int8)"
                      f": check that the calibration data look like the model's inputs, or "
                      f"pass a lower target or target_sqnr=None (every node int8)",
                      RuntimeWarning, stacklevel=4)


def _widen_all(q0: Graph, graph: Graph, options: QuantizeOptions) -> Config:
    """Every weight (if weight_bits < 8) and activation (if activation_bits < 8) at 8 bits."""
    units = find_units(q0, graph)
    return Config(wide_weights=frozenset(u.name for u in units if u.kind == "weights")
                  if options.weight_bits < 8 else frozenset(),
                  wide_tensors=frozenset(u.name for u in units if u.kind == "activation")
                  if options.activation_bits < 8 else frozenset())


def _widen_search(base: Config, target, max_trials, trial, quantize_with, observers, graph,
                  evaluator, options) -> Optional[Config]:
    """The fewest units at 8 bits on top of `base`, in the damage order (widening costs no
    speed, so the one-pass ranking replaces per-unit measurements)."""
    q = quantize_with(observers, base)
    units = [u for u in find_units(q, graph)
             if (u.kind == "weights" and options.weight_bits < 8) or
             (u.kind == "activation" and options.activation_bits < 8)]
    deltas = [Config(wide_weights=frozenset([u.name]) if u.kind == "weights" else frozenset(),
                     wide_tensors=frozenset([u.name]) if u.kind == "activation" else frozenset())
              for u in _by_damage(units, q, graph, evaluator)]
    return _prefix_search(deltas, base, target, max_trials, trial)


def _float_search(base: Config, target, max_trials, max_units, ranker, trial, quantize_with,
                  observers, graph, evaluator, options):
    """(the fewest-float Config on top of `base` meeting the target, or None; the ranking)."""
    q_base = quantize_with(observers, base)
    base_float = set(trial(base).float_nodes)
    names = {n.name for n in graph.nodes}
    units = _float_units(find_units(q_base, graph), options)
    order = _by_damage(units, q_base, graph, evaluator)
    measured: list[tuple[Sensitivity, Config]] = []
    tried = set()
    for u in order[:max_units]:
        tried.add(u)
        t = ranker(bypass(q_base, [u], graph))
        s = Sensitivity(u, float_alone=t.sqnr,                 # (bypass's Identity: no node)
                        float_nodes=sorted((set(t.float_nodes) - base_float) & names))
        if s.float_nodes:
            measured.append((s, Config(keep=frozenset(s.float_nodes))))
            if s.float_alone_db >= target:
                break                      # one unit suffices: no need to measure the rest
    measured.sort(key=lambda sd: (-_finite(sd[0].float_alone_db), sd[1].size()))
    ranked = [s for s, _ in measured]
    hit = _prefix_search([d for _, d in measured], base, target, max_trials, trial)
    rest = [u for u in order if u not in tried]
    if hit is None and rest:
        # the rest in damage order, unmeasured: a compilation says which nodes each floats
        for u in rest:
            s = Sensitivity(u, float_nodes=sorted(
                (set(float_nodes_of(Executor(bypass(q_base, [u], graph)),
                                    evaluator.feeds[0])) - base_float) & names))
            if s.float_nodes:
                measured.append((s, Config(keep=frozenset(s.float_nodes))))
        ranked = [s for s, _ in measured]
        hit = _prefix_search([d for _, d in measured], base, target, max_trials, trial)
    return (None if hit is None else Config(keep=hit.keep)), ranked


def _float_units(units: list, options: QuantizeOptions) -> list:
    """The units worth keeping float alone."""
    if options.per_channel:
        # 8-bit per-channel weights rarely break a model, and an activation unit floats its
        # producer and readers, weights included: fewer trials
        return [u for u in units if u.kind == "activation"]
    return units


def _prefix_search(deltas: list, base: Config, target: float, max_trials: int, trial):
    """The shortest prefix of `deltas` that, on top of `base`, meets the target: doubling
    (1, 2, 4, ... units; at most log2(n) + 1 trials), then bisection (at most max_trials).
    Returns the configuration, or None."""
    def cfg_of(k: int) -> Config:
        cfg = base
        for d in deltas[:k]:
            cfg = cfg | d
        return cfg

    def ok(k: int) -> bool:
        return trial(cfg_of(k)).worst >= target

    n = len(deltas)
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
    return None if hi is None else cfg_of(hi)


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
