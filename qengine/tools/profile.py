"""Per-step and per-op-type profiles of a qengine model, and achieved GOPS against this CPU's peak.

A profile comes from ``Model.run_profiled`` (per compiled step: op label, node, seconds, and the
arithmetic operations the step performs, 2 per multiply-accumulate). Several profiled runs are
taken and each step's median kept, so one descheduled step does not distort the table.

Peak: the int8 throughput one core reaches on the active kernel path, measured on this CPU at
first use by the path's peak probe (``_kernels.int8_peak_probe``: its GEMM tile's
multiply-accumulate instructions back to back, no loads; the best of ten ~10 ms runs). A
constant from one machine would mislead on another: with the same AVX-512 VNNI path, a Zen 4
core peaks at about 460 GOPS and a Cascade Lake Xeon core at about 600. The fraction of peak of a
step is GOPS / (peak per core x threads). The portable reference has no probe and reports GOPS
only, unless the caller passes ``peak_gops_per_core``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Optional

from .timing import summarize

__all__ = ["peak_gops_per_core", "profile_model", "aggregate_profile",
           "format_profile"]

_MEASURED: dict = {}   # kernel path -> its measured peak per core (GOPS), once per process


def peak_gops_per_core(isa: str, *, runs: int = 10, seconds: float = 0.01) -> Optional[float]:
    """One core's int8 peak on kernel path `isa` (GOPS), measured on this CPU at first call and
    kept for the process: the best of `runs` probe runs of about `seconds` each, timed by the
    thread's CPU time (time another process holds the core does not count; what load remains
    only slows a run down, so the fastest is the truest). None for a path without a probe."""
    if isa in _MEASURED:
        return _MEASURED[isa]
    from .. import _kernels
    n = 1000
    ops = _kernels.int8_peak_probe(isa, n)
    if ops == 0:
        _MEASURED[isa] = None
        return None
    while True:   # grow the round count until one run takes a measurable time
        t0 = time.thread_time()
        _kernels.int8_peak_probe(isa, n)
        dt = time.thread_time() - t0
        if dt >= seconds / 4:
            break
        n *= 4
    n = max(1, int(n * seconds / dt))
    best = 0.0
    for _ in range(runs):
        t0 = time.thread_time()
        ops = _kernels.int8_peak_probe(isa, n)
        best = max(best, ops / max(time.thread_time() - t0, 1e-9) / 1e9)
    _MEASURED[isa] = best
    return best


def _fraction(gops: Optional[float], peak: Optional[float]) -> Optional[float]:
    return None if gops is None or not peak else gops / peak


def aggregate_profile(runs: Sequence[Sequence[tuple]], wall_seconds: Sequence[float], *,
                      peak_gops: Optional[float] = None) -> dict:
    """Reduce several profiled runs of one program to the JSON 'profile' object.

    runs: per run, the list of (op, node, seconds, ops) steps (all runs have the same steps);
    wall_seconds: the wall time of each profiled call; peak_gops: the peak of all the threads
    used (per-core peak x threads), or None."""
    if not runs:
        raise ValueError("no profiled runs")
    n_steps = len(runs[0])
    if any(len(r) != n_steps for r in runs):
        raise ValueError("profiled runs disagree on the number of steps")
    steps = []
    for i in range(n_steps):
        op, node, _, ops = runs[0][i]
        sec = summarize([r[i][2] for r in runs]).median
        gops = ops / sec / 1e9 if ops > 0 and sec > 0 else None
        steps.append({"index": i, "op": op, "node": node, "ms": sec * 1e3, "gop": ops / 1e9,
                      "gops": gops, "peak_fraction": _fraction(gops, peak_gops)})
    steps_ms = sum(s["ms"] for s in steps)
    wall_ms = summarize(wall_seconds).median * 1e3
    # per run, the share of its wall time spent in steps (robust to runs of unequal speed)
    coverage = summarize([sum(st[2] for st in r) / w for r, w in zip(runs, wall_seconds)
                          if w > 0] or [0.0]).median
    for s in steps:
        s["share"] = s["ms"] / steps_ms if steps_ms > 0 else 0.0
    by_type: dict = {}
    for s in steps:
        t = by_type.setdefault(s["op"], {"op": s["op"], "count": 0, "ms": 0.0, "gop": 0.0})
        t["count"] += 1
        t["ms"] += s["ms"]
        t["gop"] += s["gop"]
    op_types = sorted(by_type.values(), key=lambda t: -t["ms"])
    for t in op_types:
        t["share"] = t["ms"] / steps_ms if steps_ms > 0 else 0.0
        t["gops"] = t["gop"] / t["ms"] * 1e3 if t["gop"] > 0 and t["ms"] > 0 else None
        t["peak_fraction"] = _fraction(t["gops"], peak_gops)
    total_gop = sum(s["gop"] for s in steps)
    return {"runs": len(runs), "wall_ms": wall_ms, "steps_ms": steps_ms,
            "coverage": coverage,
            "gop": total_gop, "peak_gops": peak_gops, "steps": steps, "op_types": op_types}


def profile_model(run_profiled: Callable, feeds, runs: int = 5, *,
                  peak_gops: Optional[float] = None,
                  clock: Callable[[], float] = time.perf_counter) -> dict:
    """Call run_profiled(feeds) `runs` times (after one unrecorded call) and aggregate."""
    run_profiled(feeds)
    steps, walls = [], []
    for _ in range(max(1, runs)):
        t0 = clock()
        _, s = run_profiled(feeds)
        walls.append(clock() - t0)
        steps.append(s)
    return aggregate_profile(steps, walls, peak_gops=peak_gops)


def _num(x, fmt: str, none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def format_profile(profile: dict, top: int = 15) -> str:
    """The profile as text: per op type, then the `top` slowest steps."""
    lines = [f"  profile ({profile['runs']} runs, per-step medians): steps {profile['steps_ms']:.3f}"
             f" ms, wall {profile['wall_ms']:.3f} ms; steps cover {profile['coverage'] * 100:.0f}%"
             f" of each run (the rest: Python around the steps)",
             f"  {'op type':<22}{'count':>6}{'ms':>10}{'share':>8}{'GOPS':>9}{'% peak':>8}"]
    for t in profile["op_types"]:
        pf = t["peak_fraction"]
        lines.append(f"  {t['op']:<22}{t['count']:>6}{t['ms']:>10.3f}{t['share'] * 100:>7.1f}%"
                     f"{_num(t['gops'], '9.1f', '        -')}"
                     f"{_num(None if pf is None else pf * 100, '7.1f', '      -')}"
                     f"{'' if pf is None else '%'}")
    steps = sorted(profile["steps"], key=lambda s: -s["ms"])[:top]
    lines.append(f"  {'slowest steps':<40}{'op':<14}{'ms':>9}{'share':>8}{'GOPS':>9}"
                 f"{'% peak':>8}")
    for s in steps:
        pf = s["peak_fraction"]
        lines.append(f"  {s['node'][:39]:<40}{s['op'][:13]:<14}{s['ms']:>9.3f}"
                     f"{s['share'] * 100:>7.1f}%{_num(s['gops'], '9.1f', '        -')}"
                     f"{_num(None if pf is None else pf * 100, '7.1f', '      -')}"
                     f"{'' if pf is None else '%'}")
    return "\n".join(lines)
