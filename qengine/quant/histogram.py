"""A streaming histogram with bounded memory for the histogram-based observers.

One row per channel (one row per tensor for activations). Every row has equal-width bins laid
out around 0, with 0 on a bin edge:

    column b of 4N holds values in [(b - 2N) * w, (b - 2N + 1) * w)

so a row covers [-2N w, 2N w) with N bins "per side" as the target resolution. On the first
non-zero data w = absmax / N; when later data falls outside the row's span, w doubles as often
as needed and neighbouring bins merge exactly (no bin is ever split, so no mass is smeared and 0
stays on an edge). After every update the data's absmax therefore spans between N and 2N bins.
Because 0 is an edge, |x| folds exactly (folded()), which the symmetric and TensorRT-style
searches need. The exact data min / max are kept too: they tighten the outermost occupied bins.
Exact zeros (ReLU outputs, padding) are counted apart, as a point mass: 0 is always exactly
representable, and smearing it over [0, w) would overstate the rounding error of post-ReLU data
by half.

This is PyTorch's HistogramObserver / ONNX Runtime's HistogramCollector idea, with re-binning by
integer factors instead of interpolation.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Histogram"]


class Histogram:
    """Bin counts of `channels` rows, N = `bins` bins per side (memory: 4N int64 per row)."""

    def __init__(self, channels: int, bins: int):
        assert channels >= 1 and bins >= 1
        self.bins = int(bins)
        self.counts = np.zeros((channels, 4 * self.bins), dtype=np.int64)   # exact zeros excluded
        self.zeros = np.zeros(channels, dtype=np.int64)
        self.width = np.zeros(channels)                    # 0: the row has seen only zeros
        self.lo = np.full(channels, np.inf, dtype=np.float32)
        self.hi = np.full(channels, -np.inf, dtype=np.float32)

    @property
    def channels(self) -> int:
        return self.counts.shape[0]

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(axis=1) + self.zeros

    def add(self, rows: np.ndarray, mask: np.ndarray | None = None, lo: np.ndarray | None = None,
            hi: np.ndarray | None = None) -> None:
        """Count rows (C, m) float32: finite where `mask` (C, m) is True (None: all finite);
        lo / hi (C,), if the caller has them, are the rows' finite min / max (+inf / -inf for a
        row without any)."""
        C, twoN = self.channels, 2 * self.bins
        assert rows.ndim == 2 and rows.shape[0] == C and rows.dtype == np.float32
        if rows.shape[1] == 0:
            return
        if lo is None:
            lo = np.min(rows, axis=1, where=True if mask is None else mask, initial=np.inf)
            hi = np.max(rows, axis=1, where=True if mask is None else mask, initial=-np.inf)
        assert lo.shape == hi.shape == (C,)
        self.lo = np.minimum(self.lo, lo)
        self.hi = np.maximum(self.hi, hi)
        absmax = np.maximum(-lo, hi).astype(np.float64)    # -inf for rows with no finite value
        fresh = (self.width == 0) & (absmax > 0)
        self.width[fresh] = absmax[fresh] / self.bins
        self._grow(absmax)
        # bin = floor(x * (1 / w)) in float32: a value may land one bin off at an edge, which
        # is harmless, and 1 / w scales exactly when w doubles, so re-binning stays exact
        inv64 = 1.0 / np.where(self.width > 0, self.width, 1.0)
        with np.errstate(over="ignore"):
            inv = inv64.astype(np.float32)
        if np.isfinite(inv).all():
            idx = rows * inv[:, None]
        else:   # a denormal width (data ~1e-45): 1 / w overflows float32, so bin in float64
            idx = rows.astype(np.float64) * inv64[:, None]
        np.floor(idx, out=idx)
        idx += twoN                                       # column of 0 is 2N
        np.clip(idx, 0, 2 * twoN - 1, out=idx)
        with np.errstate(invalid="ignore"):               # NaN entries are masked out below
            idx = idx.astype(np.intp)
        if C > 1:
            idx += (np.arange(C, dtype=np.intp) * (2 * twoN))[:, None]
        flat = idx.ravel() if mask is None else idx[mask]
        counts = np.bincount(flat, minlength=C * 2 * twoN).reshape(C, 2 * twoN)
        # exact zeros landed in column 2N (the bin [0, w)): move them to their own count
        zeros = np.count_nonzero(rows == 0, axis=1)
        counts[:, twoN] -= zeros
        self.zeros += zeros
        self.counts += counts

    def _grow(self, absmax: np.ndarray) -> None:
        """Double the width of rows whose span [-2N w, 2N w) does not hold absmax, merging
        neighbouring bins, until it does."""
        twoN = 2 * self.bins
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # rows of zeros: w 0
            need = np.where(self.width > 0, absmax / self.width, 0.0)
            over = need > twoN
            if not over.any():
                return
            doublings = np.zeros(self.channels)
            doublings[over] = np.ceil(np.log2(need[over] / twoN))
            # numerical slack: make sure the grown span really holds absmax
            while np.any(short := over & (absmax / (self.width * 2.0 ** doublings) > twoN)):
                doublings[short] += 1
        # from 2N on, every old bin lands next to 0 anyway; the cap keeps the factor an int64
        factor = 2 ** np.minimum(doublings, np.ceil(np.log2(twoN))).astype(np.int64)
        offset = np.arange(2 * twoN, dtype=np.int64) - twoN             # bin start / w
        new_col = np.floor_divide(offset[None, :], factor[:, None]) + twoN
        new_col += (np.arange(self.channels, dtype=np.int64) * 2 * twoN)[:, None]
        merged = np.bincount(new_col.ravel(), weights=self.counts.ravel(),
                             minlength=self.counts.size)
        self.counts = np.rint(merged).astype(np.int64).reshape(self.counts.shape)
        self.width = self.width * 2.0 ** doublings

    def signed(self, max_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The signed histogram as (edges (C, E+1), counts (C, E) float64), for every row on
        common columns: columns empty in every row are dropped, neighbouring bins merged in
        groups of g (counted from the 0 edge outward) so that at most about `max_bins` remain,
        and the exact zeros inserted as a zero-width bin at 0. Edges are clipped to each row's
        data [min, max], so the outer bins shrink to where data really is."""
        twoN = 2 * self.bins
        used = np.flatnonzero(self.counts.any(axis=0))
        first, last = (used[0], used[-1] + 1) if used.size else (twoN, twoN)
        first, last = min(first, twoN), max(last, twoN)          # keep the 0 edge inside
        g = 1 if max_bins is None else max(1, -(-(last - first) // max_bins))
        neg = _merge(self.counts[:, first:twoN][:, ::-1], g)[:, ::-1]
        pos = _merge(self.counts[:, twoN:last], g)
        counts = np.concatenate([neg, self.zeros[:, None], pos], axis=1).astype(np.float64)
        steps = np.concatenate([np.arange(-neg.shape[1], 1), np.arange(pos.shape[1] + 1)]) * g
        edges = steps[None, :] * self.width[:, None]
        return self._clip(edges), counts

    def folded(self, split_zeros: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The histogram of |x| as (edges (C, E+1), counts (C, E) float64) from 0 outward,
        exact because 0 is a bin edge; with split_zeros the exact zeros are a zero-width first
        bin, else they stay in the first bin [0, w) (TensorRT's layout)."""
        twoN = 2 * self.bins
        counts = self.counts[:, twoN:] + self.counts[:, twoN - 1::-1]
        absmax = np.maximum(-self.lo, self.hi).astype(np.float64)
        edges = np.arange(twoN + 1)[None, :] * self.width[:, None]
        if split_zeros:
            counts = np.concatenate([self.zeros[:, None], counts], axis=1)
            edges = np.concatenate([edges[:, :1], edges], axis=1)
        else:
            counts = counts.copy()
            counts[:, 0] += self.zeros
        return np.minimum(edges, absmax[:, None]), counts.astype(np.float64)

    def _clip(self, edges: np.ndarray) -> np.ndarray:
        return np.clip(edges, self.lo[:, None].astype(np.float64),
                       self.hi[:, None].astype(np.float64))


def _merge(counts: np.ndarray, g: int) -> np.ndarray:
    """Sum groups of g neighbouring columns (the last group may be short)."""
    if g == 1:
        return counts
    pad = (-counts.shape[1]) % g
    return np.pad(counts, ((0, 0), (0, pad))).reshape(counts.shape[0], -1, g).sum(axis=2)
