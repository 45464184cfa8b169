"""Clipping-range searches on a Histogram: percentile, MSE-optimal and entropy (KL).

Each takes the histogram (per row: one channel, or the whole tensor) and returns the clipped
range (lo, hi) per row as float64 arrays; observers.py turns it into QParams. The densities are
treated as uniform inside each bin -- the only assumption -- and the outermost occupied bins are
tightened to the exact data min / max.
"""
from __future__ import annotations

import numpy as np

from .histogram import Histogram
from .params import scale_zero_point

__all__ = ["percentile_range", "expected_mse", "empirical_mse", "mse_range", "entropy_range",
           "kl_divergences"]


# ---- percentile --------------------------------------------------------------------------------

def _inverse_cdf(edges: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per row, the value below which a fraction q of the mass lies (linear inside a bin)."""
    cum = np.concatenate([np.zeros((counts.shape[0], 1)), np.cumsum(counts, axis=1)], axis=1)
    cum /= np.maximum(cum[:, -1:], 1.0)
    i = np.clip((cum < q).sum(axis=1, keepdims=True), 1, counts.shape[1])  # cum[i-1] < q <= cum[i]
    c0, c1 = np.take_along_axis(cum, i - 1, 1), np.take_along_axis(cum, i, 1)
    e0, e1 = np.take_along_axis(edges, i - 1, 1), np.take_along_axis(edges, i, 1)
    frac = np.where(c1 > c0, (q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 1.0)
    return (e0 + np.clip(frac, 0.0, 1.0) * (e1 - e0))[:, 0]


def percentile_range(hist: Histogram, percentile: float, symmetric: bool):
    """Symmetric: [-t, t] with t the percentile of |x|. Asymmetric: (100 - p) / 2 percent cut
    from each tail (as onnxruntime's PercentileCalibrater)."""
    if symmetric:
        t = _inverse_cdf(*hist.folded(), percentile / 100.0)
        return -t, t
    edges, counts = hist.signed()
    cut = (100.0 - percentile) / 200.0
    return _inverse_cdf(edges, counts, cut), _inverse_cdf(edges, counts, 1.0 - cut)


# ---- expected quantization MSE -----------------------------------------------------------------

def _phi(y: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """An antiderivative of the squared rounding-and-clamping error e(y) = y - clamp(round(y))
    in units of the step: Phi(y) = (k - qmin) / 12 + (y - k)^3 / 3 with k = clamp(round(y)).
    (Each full cell between two rounding boundaries contributes 1/12; continuous in y.)"""
    k = np.clip(np.rint(y), qmin, qmax)
    r = y - k
    return (k - qmin) / 12.0 + r * r * r / 3.0


def expected_mse(edges, counts, scale, zero_point, qmin: int, qmax: int) -> np.ndarray:
    """Mean squared error of quantizing the histogram's mass with each candidate (scale,
    zero_point), both shaped (K, C): the exact integral of (x - Q(x))^2 over each bin under a
    uniform density, summed and divided by the count. edges (C, E+1), counts (C, E) -> (K, C)."""
    scale = np.asarray(scale, dtype=np.float64)[..., None]
    y = edges[None] / scale + np.asarray(zero_point, dtype=np.float64)[..., None]
    dy = np.diff(y, axis=-1)
    phi = _phi(y, qmin, qmax)
    point = dy < 1e-9                 # (near) zero-width bins: a point mass at the bin's centre
    mid = 0.5 * (y[..., 1:] + y[..., :-1])
    e_mid = mid - np.clip(np.rint(mid), qmin, qmax)
    per_unit = np.where(point, e_mid * e_mid,
                        np.diff(phi, axis=-1) / np.where(point, 1.0, dy))
    total = np.maximum(counts.sum(axis=-1), 1.0)
    return (per_unit * counts[None]).sum(axis=-1) * scale[..., 0] ** 2 / total


def empirical_mse(rows, scale, zero_point, qmin: int, qmax: int) -> np.ndarray:
    """Mean squared error of quantizing the raw values rows (C, m) (NaN: missing) with each
    candidate (scale, zero_point) shaped (K, C) -> (K, C). Float64, in units of the step."""
    valid = np.isfinite(rows)
    x = np.where(valid, rows, 0.0).astype(np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    y = x[None] / scale[..., None] + np.asarray(zero_point, dtype=np.float64)[..., None]
    e = y - np.clip(np.rint(y), qmin, qmax)
    return (e * e * valid).sum(axis=-1) * scale ** 2 / np.maximum(valid.sum(axis=-1), 1)


def _best_ratios(evaluate, lo, hi, ra, rb, qmin, qmax, symmetric, width, chunk_elems=1 << 22):
    """The (ra, rb) candidate (rows of (K, C)) whose clipped range [ra * lo, rb * hi] has the
    least error per channel, the error evaluated in chunks of candidates to bound memory
    (`width`: evaluation cost per candidate and channel). Ties keep the earlier (wider) one."""
    scale, zp = scale_zero_point(ra * lo, rb * hi, qmin, qmax, symmetric)
    scale = scale.astype(np.float32).astype(np.float64)   # as stored: evaluate what will run
    step = max(1, chunk_elems // max(1, width * lo.size))
    err = np.concatenate([evaluate(scale[i:i + step], zp[i:i + step])
                          for i in range(0, scale.shape[0], step)])
    k = err.argmin(axis=0)[None]
    return np.take_along_axis(ra, k, 0)[0], np.take_along_axis(rb, k, 0)[0]


def _pairs(a: np.ndarray, b: np.ndarray, two_d: bool):
    """Candidate rows from per-axis ratio lists a, b (n, C): zipped (1-D) or every pair (2-D)."""
    if not two_d:
        return a, a
    return np.repeat(a, b.shape[0], axis=0), np.tile(b, (a.shape[0], 1))


def mse_range(hist: Histogram, qmin: int, qmax: int, symmetric: bool, coarse: int = 100,
              fine: int = 41, max_bins: int = 1024, rows: np.ndarray | None = None):
    """The clipping range per row that minimizes the quantization MSE for this integer range.

    Candidates are the data range scaled by ratios in (0, 1], widest first: a coarse grid on
    the histogram's expected_mse, then a finer grid +- one coarse step around the best.
    Symmetric ranges and one-signed data search one ratio; mixed-sign asymmetric data a 2-D
    grid of (ratio of min, ratio of max), with sqrt-sized grids. With the raw data (`rows`,
    C x m, NaN = missing: weights, where the data is the whole population rather than a sample)
    the fine stage is evaluated exactly on it and includes the unclipped range, so the result is
    never worse than minmax on that data."""
    edges, counts = hist.signed(max_bins)
    lo, hi = hist.lo.astype(np.float64), hist.hi.astype(np.float64)
    if symmetric:
        a = np.maximum(-lo, hi)
        lo, hi = -a, a
    C = hist.channels
    two_d = not symmetric and bool(np.any((lo < 0) & (hi > 0)))
    if two_d:
        coarse, fine = max(4, int(np.sqrt(coarse * 4))), max(3, int(np.sqrt(fine * 3)))

    def by_hist(s, z):
        return expected_mse(edges, counts, s, z, qmin, qmax)

    def by_rows(s, z):
        return empirical_mse(rows, s, z, qmin, qmax)

    grid = np.repeat(np.linspace(1.0, 1.0 / coarse, coarse)[:, None], C, axis=1)
    ra, rb = _pairs(grid, grid, two_d)
    best_a, best_b = _best_ratios(by_hist, lo, hi, ra, rb, qmin, qmax, symmetric, edges.shape[1])
    spacing = 1.0 / coarse
    around = np.linspace(spacing, -spacing, fine)[:, None]
    fa = np.clip(best_a[None] + around, spacing / fine, 1.0)
    fb = np.clip(best_b[None] + around, spacing / fine, 1.0)
    ra, rb = _pairs(fa, fb, two_d)
    evaluate, width = by_hist, edges.shape[1]
    if rows is not None:
        evaluate, width = by_rows, rows.shape[1]
        ra, rb = np.vstack([np.ones((1, C)), ra]), np.vstack([np.ones((1, C)), rb])
    best_a, best_b = _best_ratios(evaluate, lo, hi, ra, rb, qmin, qmax, symmetric, width)
    return best_a * lo, best_b * hi


# ---- entropy (KL divergence, TensorRT-style) ----------------------------------------------------

def _xlogx(v: np.ndarray) -> np.ndarray:
    """v * log(v), with 0 log 0 = 0."""
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def kl_divergences(h: np.ndarray, levels: int) -> np.ndarray:
    """KL(P || Q) for every candidate cut i = levels..n of the one-sided histogram h (n,):
    P = h[:i] with the mass beyond (outliers) added to its last bin; Q = h[:i] merged into
    `levels` chunks (bin k goes to chunk floor(k * levels / i)), each chunk's mass spread evenly
    over the bins where P is non-zero. Returns (n - levels + 1,) divergences, index 0 = cut
    `levels`; inf where Q is 0 and P is not.

    Vectorized over all cuts at once: inside a chunk q is constant, so sum_k p_k log q_k needs
    only per-chunk sums (prefix sums of h and of [h > 0]), O(levels) per cut."""
    h = np.asarray(h, dtype=np.float64)
    n = h.size
    cuts = np.arange(levels, n + 1)
    total = h.sum()
    csum = np.concatenate([[0.0], np.cumsum(h)])
    cnz = np.concatenate([[0], np.cumsum(h > 0)])
    hlogh = np.concatenate([[0.0], np.cumsum(_xlogx(h))])
    bounds = (np.arange(levels + 1)[None, :] * cuts[:, None] + levels - 1) // levels   # (K, L+1)
    S = csum[bounds[:, 1:]] - csum[bounds[:, :-1]]                                     # chunk mass
    nz = (cnz[bounds[:, 1:]] - cnz[bounds[:, :-1]]).astype(np.float64)                 # p > 0 bins
    outliers = total - csum[cuts]
    last = h[cuts - 1]
    p_last = last + outliers
    nz[:, -1] += (last == 0) & (outliers > 0)        # the outliers make P's last bin non-zero
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.where(S > 0, np.log(S) - np.log(np.maximum(nz, 1)), 0.0)
        out_log_q = np.where(S[:, -1] > 0, outliers * log_q[:, -1], -np.inf)
        p_log_q = (S * log_q).sum(axis=1) + np.where(outliers > 0, out_log_q, 0.0)
        p_log_p = hlogh[cuts - 1] + _xlogx(p_last)
        kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(csum[cuts])
    kl = np.where(csum[cuts] > 0, kl, np.inf)
    return np.where(np.isnan(kl), np.inf, kl)


def entropy_range(hist: Histogram, qmin: int, qmax: int, symmetric: bool):
    """TensorRT's calibration: the cut t of the |x| histogram whose `levels`-level quantization
    loses least information (min KL). levels = the codes that cover [0, t]: half the integer
    range (+1) when symmetric or when the data has both signs (int8: 128, as TensorRT), the
    whole range when asymmetric and the data has one sign (uint8 after ReLU: 256). Exact zeros
    are left out of both distributions: they quantize exactly at every cut, and the spike of a
    ReLU output at 0 would otherwise dominate the divergence and pull the cut far in. Per row;
    returns [-t, t] when symmetric, else the data range clipped to [-t, t]."""
    edges, counts = hist.folded()
    edges, counts = edges[:, 1:], counts[:, 1:]   # exact zeros are exact at every cut: left out
    lo, hi = hist.lo.astype(np.float64), hist.hi.astype(np.float64)
    t = np.empty(hist.channels)
    for c in range(hist.channels):          # rows: entropy is used per tensor (C == 1)
        one_sided = not symmetric and not (lo[c] < 0 < hi[c])
        levels = (qmax - qmin + 1) if one_sided else (qmax - qmin) // 2 + 1
        nz = np.flatnonzero(counts[c])
        n = nz[-1] + 1 if nz.size else 0
        if n <= levels:
            t[c] = edges[c, n]              # fewer bins than levels: nothing to gain by clipping
            continue
        i = levels + int(np.argmin(kl_divergences(counts[c, :n], levels)))
        t[c] = edges[c, i]
    if symmetric:
        return -t, t
    return np.maximum(lo, -t), np.minimum(hi, t)
