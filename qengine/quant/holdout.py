"""Held-back calibration samples: the fidelity target is checked on samples calibration did
not see, and a few calibration samples are kept for the data-driven weight methods.

The calibration data streams through once. Every k-th sample (k = 1 / fraction; samples are
rows of a symbolic batch dim, else whole batches) is held back, up to `max_holdout`; the rest
feeds calibration, and the first `keep` of those are also kept (AdaRound, bias correction,
and the evaluation set when too few samples came to hold any back).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..graph import Value
from ..runtime.feeds import iter_batches

__all__ = ["CalibrationSplit", "concat_feeds"]


class CalibrationSplit:
    """Split `data` (anything iter_batches accepts) while calibration consumes it.

    Iterate calibration() exactly once (calibrate() does); afterwards `held` holds the
    held-back samples and `kept` the first calibration samples, each a list of feeds."""

    def __init__(self, inputs: Sequence[Value], data, *, fraction: float = 0.15,
                 max_holdout: int = 32, keep: int = 0, max_batch: int = 64):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"holdout fraction must be in [0, 1), got {fraction!r}")
        self.inputs = list(inputs)
        self.data = data
        self.every = int(round(1.0 / fraction)) if fraction > 0 else 0
        self.max_holdout = int(max_holdout) if fraction > 0 else 0
        self.keep = int(keep)
        self.max_batch = max_batch
        self.held: list[dict] = []
        self.kept: list[dict] = []
        self.n_calibration = 0
        self._batchable = all(v.shape is not None and len(v.shape) > 0 and
                              not isinstance(v.shape[0], int) for v in self.inputs)

    def _rows(self, feeds: dict):
        sizes = {a.shape[0] if a.ndim else None for a in feeds.values()}
        if not self._batchable or len(sizes) != 1 or None in sizes:
            return None
        return sizes.pop()

    def calibration(self) -> Iterator[dict]:
        """The calibration batches; fills held / kept as a side effect."""
        seen = 0
        for feeds in iter_batches(self.inputs, self.data, self.max_batch):
            n = self._rows(feeds)
            if n is None:                   # one unsplittable batch = one sample
                if self.every and seen % self.every == self.every // 2 and \
                        len(self.held) < self.max_holdout:
                    self.held.append(feeds)
                else:
                    self._keep(feeds, 1)
                    self.n_calibration += 1
                    yield feeds
                seen += 1
                continue
            idx = np.arange(seen, seen + n)
            hold = np.zeros(n, bool)
            if self.every:
                hold = idx % self.every == self.every // 2
                room = self.max_holdout - len(self.held)
                hold &= np.cumsum(hold) <= max(room, 0)
            for j in np.flatnonzero(hold):
                self.held.append({k: np.array(a[j:j + 1]) for k, a in feeds.items()})
            seen += n
            if hold.all():
                continue
            calib = feeds if not hold.any() else {k: a[~hold] for k, a in feeds.items()}
            m = int(n - hold.sum())
            self._keep(calib, m)
            self.n_calibration += m
            yield calib

    def _keep(self, feeds: dict, n: int) -> None:
        have = sum(_rows_of(f) for f in self.kept)
        if have >= self.keep:
            return
        if n > 1 and self._batchable:
            take = min(n, self.keep - have)
            feeds = {k: a[:take] for k, a in feeds.items()}
        self.kept.append({k: np.array(a) for k, a in feeds.items()})

    # -- results -----------------------------------------------------------------------------
    @property
    def n_held(self) -> int:
        return sum(_rows_of(f) for f in self.held)

    def evaluation(self, chunk: int = 16) -> tuple[list[dict], str]:
        """(feeds to check the target on, what they are): the held-back samples in chunks of
        up to `chunk`, or, when none were held back, the kept calibration samples."""
        if self.held:
            return concat_feeds(self.held, chunk, self._batchable), "held-back samples"
        return concat_feeds(self.kept, chunk, self._batchable), "calibration samples"


def _rows_of(feeds: dict) -> int:
    sizes = {a.shape[0] if a.ndim else 1 for a in feeds.values()}
    return max(sizes) if sizes else 0


def concat_feeds(feeds: list[dict], chunk: int, batchable: bool = True) -> list[dict]:
    """Group single-sample (or small) feeds into batches of up to `chunk` rows."""
    if not batchable or not feeds:
        return list(feeds)
    out, group, rows = [], [], 0
    for f in feeds:
        r = _rows_of(f)
        if group and (rows + r > chunk or any(f[k].shape[1:] != group[0][k].shape[1:]
                                              for k in f)):
            out.append({k: np.concatenate([g[k] for g in group]) for k in group[0]})
            group, rows = [], 0
        group.append(f)
        rows += r
    if group:
        out.append({k: np.concatenate([g[k] for g in group]) for k in group[0]})
    return out
