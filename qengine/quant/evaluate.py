"""Scoring a quantized graph against the float model: SQNR and cosine similarity.

    SQNR = 10 log10( sum(ref^2) / sum((ref - test)^2) )  dB, over every element of every batch
    cosine = <ref, test> / (|ref| |test|)

Sums accumulate in float64 over batches, so a figure over several batches is the figure of
their concatenation. A candidate graph is run compiled for this CPU (runtime/executor.py):
the numbers are those of the int8 model the user gets, not of a simulation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..graph import Graph

__all__ = ["Stats", "sqnr_db", "OutputEvaluator", "Trial", "float_nodes_of"]


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise); +inf without noise, -inf for noise on a zero signal."""
    if noise <= 0.0:
        return float("inf")
    if signal <= 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


@dataclass
class Stats:
    """Running sums of one tensor's float reference and its quantized counterpart."""
    signal: float = 0.0          # sum ref^2
    noise: float = 0.0           # sum (ref - test)^2
    dot: float = 0.0             # sum ref * test
    test_sq: float = 0.0         # sum test^2
    max_abs: float = 0.0         # max |ref - test|
    count: int = 0

    def add(self, ref, test) -> None:
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
        t = np.asarray(test, dtype=np.float64).reshape(-1)
        if r.shape != t.shape:
            raise ValueError(f"shapes differ: {np.shape(ref)} vs {np.shape(test)}")
        ok = np.isfinite(r) & np.isfinite(t)
        if not ok.all():                   # compare where both are finite
            r, t = r[ok], t[ok]
        d = r - t
        # plain reductions, not BLAS dot: a threaded BLAS call on a busy machine can take
        # milliseconds to wake its threads for a few thousand elements
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum(d * d))
        self.dot += float(np.sum(r * t))
        self.test_sq += float(np.sum(t * t))
        if d.size:
            self.max_abs = max(self.max_abs, float(np.abs(d).max()))
        self.count += int(r.size)

    @property
    def sqnr(self) -> float:
        return sqnr_db(self.signal, self.noise)

    @property
    def cosine(self) -> float:
        den = np.sqrt(self.signal) * np.sqrt(self.test_sq)
        if den == 0.0:
            return 1.0 if self.signal == self.test_sq else 0.0
        return float(self.dot / den)


@dataclass
class Trial:
    """One candidate run: per-output SQNR (dB), its executor (compiled), seconds taken."""
    sqnr: dict
    executor: object
    seconds: float
    float_nodes: list = field(default_factory=list)

    @property
    def worst(self) -> float:
        return min(self.sqnr.values()) if self.sqnr else float("inf")


class OutputEvaluator:
    """Runs candidate QDQ graphs compiled for this CPU on fixed feeds and scores every model
    output against the float model's outputs `refs` (one dict per feed)."""

    def __init__(self, feeds: list[dict], refs: list[dict], *,
                 num_threads: Optional[int] = None):
        if not feeds or len(feeds) != len(refs):
            raise ValueError("the evaluator needs feeds and one float reference per feed")
        self.feeds, self.refs = feeds, refs
        self.num_threads = num_threads
        self.trials = 0
        self.seconds = 0.0

    def subset(self, max_samples: int) -> "OutputEvaluator":
        """An evaluator on the first `max_samples` samples of the first batch (a cheaper
        ranking run), sharing this one's trial count and time."""
        f, r = self.feeds[0], self.refs[0]
        rows = {a.shape[0] for a in f.values() if np.ndim(a)}
        if len(rows) == 1 and len(self.feeds) == 1 and rows.pop() <= max_samples:
            return self
        if len({a.shape[0] for a in f.values() if np.ndim(a)}) == 1 and \
                all(np.ndim(a) for a in f.values()) and all(np.ndim(a) for a in r.values()):
            f = {k: a[:max_samples] for k, a in f.items()}
            r = {k: a[:max_samples] for k, a in r.items()}
        sub = OutputEvaluator([f], [r], num_threads=self.num_threads)
        sub._parent = self
        return sub

    def _count(self, dt: float) -> None:
        self.trials += 1
        self.seconds += dt
        parent = getattr(self, "_parent", None)
        if parent is not None:
            parent._count(dt)

    def __call__(self, qgraph: Graph, limit: Optional[int] = None) -> Trial:
        """Compile and run `qgraph` on the feeds (the first `limit` batches if given)."""
        from ..runtime.executor import Executor
        t0 = time.perf_counter()
        ex = Executor(qgraph, num_threads=self.num_threads)
        feeds = self.feeds[:limit] if limit else self.feeds
        stats: dict[str, Stats] = {}
        for f, ref in zip(feeds, self.refs):
            got = ex.run(f)
            for name, r in ref.items():
                stats.setdefault(name, Stats()).add(r, got[name])
        dt = time.perf_counter() - t0
        self._count(dt)
        return Trial({k: s.sqnr for k, s in stats.items()}, ex, dt,
                     float_nodes_of(ex, feeds[0]))


def float_nodes_of(executor, feeds: dict) -> list[str]:
    """The nodes the compiled plan for these feeds' shapes runs in float."""
    shapes = {k: tuple(int(d) for d in np.shape(v)) for k, v in feeds.items()}
    return list(executor.plan_for(shapes).plan.lowered.float_nodes)
