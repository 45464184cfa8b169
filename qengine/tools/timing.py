"""Interleaved timing of several engines and the statistics the harness reports.

Why interleaved: the machines qengine is measured on are shared and noisy, and their speed
drifts (other jobs, frequency scaling). Timing engine A for ten seconds and then engine B would
fold the drift into the comparison. Instead every round times each engine once, in a rotating
order, for about `min_round_seconds`; a round's samples are close in time, so the per-round
ratio A/B cancels most of the drift, and the median over rounds drops the outlier rounds.

Everything here takes the clock as an argument, so the statistics are tested on a fake clock.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Stats", "summarize", "ratio_stats", "Timings", "time_interleaved",
           "calls_per_round"]


@dataclass(frozen=True)
class Stats:
    """Robust summary of samples (seconds): median, quartiles (IQR = q3 - q1), min, max, mean."""
    median: float
    q1: float
    q3: float
    min: float
    max: float
    mean: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default 'linear' method)."""
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> Stats:
    """Median, quartiles, min, max and mean of a non-empty sequence of numbers."""
    if not samples:
        raise ValueError("no samples to summarize")
    xs = sorted(float(s) for s in samples)
    return Stats(median=_quantile(xs, 0.5), q1=_quantile(xs, 0.25), q3=_quantile(xs, 0.75),
                 min=xs[0], max=xs[-1], mean=sum(xs) / len(xs), n=len(xs))


def ratio_stats(numerator: Sequence[float], denominator: Sequence[float]) -> Stats:
    """Statistics of the per-round ratios numerator[i] / denominator[i] (samples paired by
    round: both engines were timed within the same round, so drift largely cancels)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"ratio of {len(numerator)} and {len(denominator)} samples: rounds "
                         f"must pair up")
    return summarize([a / b for a, b in zip(numerator, denominator)])


@dataclass
class Timings:
    """What time_interleaved measured: per engine, seconds per call in each round, and how
    many calls each round made."""
    samples: dict = field(default_factory=dict)         # engine -> [seconds per call, per round]
    cpu_samples: dict = field(default_factory=dict)     # engine -> [CPU seconds per call, ...]
    calls_per_round: dict = field(default_factory=dict)  # engine -> int
    warmup_seconds: dict = field(default_factory=dict)  # engine -> seconds of one warm-up call

    def stats(self, engine: str) -> Stats:
        return summarize(self.samples[engine])

    def cpu_stats(self, engine: str) -> Stats:
        return summarize(self.cpu_samples[engine])


def calls_per_round(seconds_per_call: float, min_round_seconds: float,
                    max_calls: int = 10_000) -> int:
    """How many back-to-back calls make one round last at least min_round_seconds (>= 1):
    short calls are repeated so that the clock's resolution and the per-round overhead vanish."""
    if seconds_per_call <= 0:
        return max_calls
    return max(1, min(max_calls, math.ceil(min_round_seconds / seconds_per_call)))


def time_interleaved(engines: Mapping[str, Callable[[], object]], *, rounds: int = 10,
                     warmup: int = 2, min_round_seconds: float = 0.05,
                     clock: Callable[[], float] = time.perf_counter,
                     cpu_clock: Callable[[], float] = time.process_time,
                     settle_seconds: float = 0.0,
                     sleep: Callable[[float], None] = time.sleep,
                     on_round: Optional[Callable[[int], None]] = None) -> Timings:
    """Time each zero-argument callable in `engines`, interleaved.

    1. warm-up: each engine is called `warmup` times (first-call costs: plan building, caches,
       thread pools); the last warm-up call is timed and fixes the engine's calls per round.
    2. `rounds` rounds: each times every engine once (its calls back to back, one clock reading
       before and after), engines in an order rotated by one each round, so no engine always
       runs right after the same neighbour (thread-pool spin tails, cache state).
    Each round also reads cpu_clock (the process's CPU time: all its threads, spinning
    included). With one thread it does not count the time other processes hold the core, so on
    a shared machine it estimates the compute time that wall time inflates.
    settle_seconds: an idle pause (untimed) before each engine's block, when there are several
    engines. Multi-threaded engines' pools keep spinning after a call (onnxruntime's for tens
    of milliseconds), and spinning threads of one engine steal the cores of the next: the
    pause lets them go to sleep, so each engine is timed as if it ran alone. The pause also
    lets the cores idle, and the first call after it runs slower for every engine (the cores
    wake; docs/bench.md): so after the pause each engine makes one untimed call, and its block
    times calls back to back from a running start, as at one thread, where no pause precedes
    a block.
    on_round(i) is called after round i (a progress bar)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (one call sizes the rounds), got {warmup}")
    if not settle_seconds >= 0:
        raise ValueError(f"settle_seconds must be >= 0, got {settle_seconds}")
    names = list(engines)
    settle = settle_seconds if len(names) > 1 else 0.0
    if not names:
        raise ValueError("no engines to time")
    out = Timings()
    for name in names:
        fn = engines[name]
        for _ in range(warmup - 1):
            fn()
        t0 = clock()
        fn()
        one = clock() - t0
        out.warmup_seconds[name] = one
        out.calls_per_round[name] = calls_per_round(one, min_round_seconds)
        out.samples[name] = []
        out.cpu_samples[name] = []
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, n = engines[name], out.calls_per_round[name]
            if settle:
                sleep(settle)
                fn()        # untimed: the cores' wake from the pause (see settle_seconds)
            c0 = cpu_clock()
            t0 = clock()
            for _ in range(n):
                fn()
            t1 = clock()
            out.cpu_samples[name].append((cpu_clock() - c0) / n)
            out.samples[name].append((t1 - t0) / n)
        if on_round is not None:
            on_round(r)
    return out
