"""Calibration observers: they stream over batches with bounded memory and then give a range or
QParams for a tensor (per tensor, or per channel along `axis`).

    obs = make_observer("percentile", percentile=99.99)
    for batch in calibration_data:
        obs.update(activation_of(batch))          # any number of batches
    qp = obs.qparams(bits=8)                      # uint8 asymmetric, as the pipeline's default
    w = make_observer("mse", axis=0); w.update(weight)
    wq = w.qparams(signed=True, symmetric=True)   # int8 symmetric per output channel

Non-finite values (NaN, +-inf) are ignored with a RuntimeWarning (nonfinite="raise" raises
QuantizationError instead). An empty batch is a no-op. range() / qparams() raise
QuantizationError if no finite value was seen (per channel: naming the channels).
Which observer when: docs/quantization.md.
"""
from __future__ import annotations

import inspect
import warnings
from typing import ClassVar

import numpy as np

from ..errors import QuantizationError
from .clipping import entropy_range, mse_range, percentile_range
from .histogram import Histogram
from .params import QParams, _check_bits, int_range, qparams_from_range

__all__ = ["Observer", "MinMaxObserver", "MovingAverageObserver", "PercentileObserver",
           "MeanStdObserver", "MSEObserver", "EntropyObserver", "OBSERVERS", "make_observer"]


def _check_number(value, name: str, lo: float, hi: float, lo_open=True) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise QuantizationError(f"{name} must be a number in {'(' if lo_open else '['}{lo}, "
                                f"{hi}], got {value!r}")
    return float(value)


def _check_int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise QuantizationError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


class Observer:
    """Base: input checks, the per-channel layout and the finite-value bookkeeping.

    A subclass implements _update(rows, mask, lo, hi) -- rows (C, m) float32, mask (C, m) of the
    finite entries or None when all are finite, lo / hi (C,) the batch's finite min / max
    (+inf / -inf for a row without finite values) -- and _range(qmin, qmax, symmetric)
    returning (lo, hi) per row for that integer range."""
    method: ClassVar[str] = ""
    per_axis: ClassVar[bool] = True

    def __init__(self, *, axis: int | None = None, nonfinite: str = "warn"):
        if axis is not None:
            if not self.per_axis:
                per_axis = ", ".join(m for m, c in OBSERVERS.items() if c.per_axis)
                raise QuantizationError(f"observer {self.method!r} is per tensor only (axis must "
                                        f"be None, got {axis!r}); per-channel observers: "
                                        f"{per_axis}")
            axis = _check_int(axis, "axis", -64, 63)
        if nonfinite not in ("warn", "raise"):
            raise QuantizationError(f"nonfinite must be 'warn' or 'raise', got {nonfinite!r}")
        self.axis = axis
        self.nonfinite = nonfinite
        self.channels: int | None = None        # fixed by the first update
        self.count: np.ndarray | None = None    # finite values seen, per row
        self.num_nonfinite = 0

    # -- streaming ------------------------------------------------------------------------------
    def update(self, x) -> None:
        """Record one batch (any shape; per channel: x.shape[axis] must match every time)."""
        rows = self._rows(x)
        if rows.size == 0:
            return
        lo, hi = rows.min(axis=1), rows.max(axis=1)
        mask = None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):   # NaN propagates
            mask = np.isfinite(rows)
            bad = int(rows.size - np.count_nonzero(mask))
            self.num_nonfinite += bad
            where = f"observer {self.method!r}: {bad} of {rows.size} values are NaN or Inf"
            if self.nonfinite == "raise":
                raise QuantizationError(where)
            warnings.warn(where + "; they are ignored", RuntimeWarning, stacklevel=2)
            lo = np.min(rows, axis=1, where=mask, initial=np.inf)
            hi = np.max(rows, axis=1, where=mask, initial=-np.inf)
        self.count += mask.sum(axis=1) if mask is not None else rows.shape[1]
        self._update(rows, mask, lo, hi)

    def _rows(self, x) -> np.ndarray:
        """x as (C, m) float32 rows: one row per tensor, or one per index of `axis`."""
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise QuantizationError(f"observer {self.method!r}: data must be real numbers, got "
                                    f"dtype {a.dtype}")
        a = a.astype(np.float32, copy=False)
        if self.axis is None:
            rows = a.reshape(1, -1)
        else:
            if not -a.ndim <= self.axis < a.ndim:
                raise QuantizationError(f"observer {self.method!r}: axis {self.axis} is out of "
                                        f"range for data of shape {a.shape}")
            ax = self.axis % a.ndim
            if a.shape[ax] == 0:
                raise QuantizationError(f"observer {self.method!r}: data of shape {a.shape} has "
                                        f"no channels on axis {self.axis}")
            rows = np.moveaxis(a, ax, 0).reshape(a.shape[ax], -1)
        if self.channels is None:
            self.channels = rows.shape[0]
            self.count = np.zeros(self.channels, dtype=np.int64)
        elif rows.shape[0] != self.channels:
            raise QuantizationError(f"observer {self.method!r}: data of shape {a.shape} has "
                                    f"{rows.shape[0]} channels on axis {self.axis}, earlier "
                                    f"batches had {self.channels}")
        return rows

    def _update(self, rows, mask, lo, hi) -> None:
        raise NotImplementedError

    # -- results -------------------------------------------------------------------------------
    def range(self, bits: int = 8, signed: bool = False, symmetric: bool = False,
              narrow: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) as float32 arrays, shape () per tensor or (C,) per channel; [-t, t] when
        symmetric. Clipping observers (percentile, mse, entropy) choose it for the given
        integer range."""
        bits = _check_bits(bits)
        if narrow is None:
            narrow = bool(symmetric and signed)
        if self.count is None or not self.count.any():
            raise QuantizationError(f"observer {self.method!r} has seen no finite values (no "
                                    "update(), only empty batches, or only NaN / Inf)")
        if not self.count.all():
            empty = np.flatnonzero(self.count == 0)
            raise QuantizationError(f"observer {self.method!r}: channel(s) {empty[:10].tolist()}"
                                    f" of axis {self.axis} have no finite values")
        qmin, qmax = int_range(bits, bool(signed), bool(narrow))
        lo, hi = self._range(qmin, qmax, bool(symmetric))
        lo, hi = np.asarray(lo, dtype=np.float32), np.asarray(hi, dtype=np.float32)
        if symmetric:                      # the range the parameters will cover: [-t, t]
            hi = np.maximum(-lo, hi)
            lo = -hi
        assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)
        if self.axis is None:
            return lo.reshape(()), hi.reshape(())
        return lo, hi

    def qparams(self, bits: int = 8, signed: bool = False, symmetric: bool = False,
                narrow: bool | None = None) -> QParams:
        """QParams from range() (see qparams_from_range for the rules)."""
        lo, hi = self.range(bits, signed, symmetric, narrow)
        return qparams_from_range(lo, hi, bits, signed, symmetric, narrow, self.axis)

    def _range(self, qmin: int, qmax: int, symmetric: bool):
        raise NotImplementedError

    def __repr__(self):
        seen = 0 if self.count is None else int(self.count.sum())
        return f"{type(self).__name__}(axis={self.axis}, values={seen})"


class MinMaxObserver(Observer):
    """The running min and max: keeps every value, outliers included (the default for weights
    and the safest choice when the data has no outliers)."""
    method = "minmax"

    def __init__(self, *, axis=None, nonfinite="warn"):
        super().__init__(axis=axis, nonfinite=nonfinite)
        self.lo = self.hi = None

    def _update(self, rows, mask, lo, hi):
        self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else np.maximum(self.hi, hi)

    def _range(self, qmin, qmax, symmetric):
        return self.lo, self.hi


class MovingAverageObserver(Observer):
    """An exponential moving average of each batch's min and max (PyTorch's
    MovingAverageMinMaxObserver): m <- m + c * (batch - m), the first batch taken as is. Single
    extreme batches move the range by c only."""
    method = "moving_average"

    def __init__(self, *, averaging_constant: float = 0.01, axis=None, nonfinite="warn"):
        super().__init__(axis=axis, nonfinite=nonfinite)
        self.averaging_constant = _check_number(averaging_constant, "averaging_constant", 0, 1)
        self.lo = self.hi = None

    def _update(self, rows, mask, lo, hi):
        lo, hi = lo.astype(np.float64), hi.astype(np.float64)
        if self.lo is None:
            self.lo, self.hi = np.full(lo.shape, np.nan), np.full(hi.shape, np.nan)
        has = np.isfinite(lo)                        # rows with data in this batch
        first = has & np.isnan(self.lo)
        self.lo[first], self.hi[first] = lo[first], hi[first]
        step = has & ~first
        c = self.averaging_constant
        self.lo[step] += c * (lo[step] - self.lo[step])
        self.hi[step] += c * (hi[step] - self.hi[step])

    def _range(self, qmin, qmax, symmetric):
        return self.lo, self.hi


class MeanStdObserver(Observer):
    """mean +- k * sigma (the origin tutorial's "scale from mean and variance"), clipped to the
    data's min / max. Streamed with per-batch float64 sums combined by Chan's parallel form of
    Welford's update: any batching gives the same result up to rounding (relative ~1e-9)."""
    method = "mean_std"

    def __init__(self, *, k: float = 3.0, axis=None, nonfinite="warn"):
        super().__init__(axis=axis, nonfinite=nonfinite)
        self.k = _check_number(k, "k", 0, 1e6)
        self.n = self.mean = self.m2 = self.lo = self.hi = None

    def _update(self, rows, mask, lo, hi):
        n_b = (mask.sum(axis=1) if mask is not None else np.full(rows.shape[0], rows.shape[1]))
        n_b = n_b.astype(np.float64)
        where = True if mask is None else mask
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.sum(rows, axis=1, where=where, dtype=np.float64) / n_b
            # centre on c = the float32-rounded batch mean (x - c in float32 costs at most 2^-24
            # relative per term, and no float64 copy of the batch), square and sum in float64,
            # then correct for c != mean: M2 = sum (x - c)^2 - n (mean - c)^2
            c = np.nan_to_num(mean_b).astype(np.float32)
            d = rows - c[:, None]
            if mask is not None:
                d = np.where(mask, d, np.float32(0))
            m2_b = np.einsum("ij,ij->i", d, d, dtype=np.float64) - n_b * (mean_b - c) ** 2
            m2_b = np.maximum(m2_b, 0.0)
        if self.n is None:
            self.n, self.mean, self.m2 = np.zeros_like(n_b), np.zeros_like(n_b), np.zeros_like(n_b)
            self.lo, self.hi = lo, hi
        has = n_b > 0
        n = self.n + n_b
        delta = np.where(has, mean_b - self.mean, 0.0)
        frac = np.where(has, n_b / np.where(n > 0, n, 1), 0.0)
        self.m2 = self.m2 + np.where(has, m2_b, 0.0) + delta * delta * self.n * frac
        self.mean = self.mean + delta * frac
        self.n = n
        self.lo, self.hi = np.minimum(self.lo, lo), np.maximum(self.hi, hi)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n)

    def _range(self, qmin, qmax, symmetric):
        spread = self.k * self.std
        lo = np.clip(self.mean - spread, self.lo, self.hi)
        hi = np.clip(self.mean + spread, self.lo, self.hi)
        return lo, hi


class _HistogramObserver(Observer):
    """Base of the observers that search a clipping range on a streaming Histogram (N bins per
    side: memory 32 N bytes per channel, whatever the number of batches)."""
    default_bins: ClassVar[int] = 2048

    def __init__(self, *, bins: int | None = None, axis=None, nonfinite="warn"):
        super().__init__(axis=axis, nonfinite=nonfinite)
        self.bins = self.default_bins if bins is None else _check_int(bins, "bins", 8, 1 << 16)
        self.hist: Histogram | None = None

    def _update(self, rows, mask, lo, hi):
        if self.hist is None:
            self.hist = Histogram(rows.shape[0], self.bins)
        self.hist.add(rows, mask, lo, hi)


class PercentileObserver(_HistogramObserver):
    """Clips a fixed fraction of outliers: asymmetric cuts (100 - p) / 2 percent from each tail,
    symmetric takes the p-th percentile of |x| (onnxruntime's Percentile method)."""
    method = "percentile"
    per_axis = False

    def __init__(self, *, percentile: float = 99.99, bins: int | None = None, axis=None,
                 nonfinite="warn"):
        super().__init__(bins=bins, axis=axis, nonfinite=nonfinite)
        self.percentile = _check_number(percentile, "percentile", 0, 100)

    def _range(self, qmin, qmax, symmetric):
        return percentile_range(self.hist, self.percentile, symmetric)


class MSEObserver(_HistogramObserver):
    """The clipping range that minimizes the quantization MSE of the observed values for the
    requested integer range (clipping error traded against rounding error).

    Per tensor (activations: a sample of a distribution) the expected MSE is computed on the
    histogram. Per channel (axis; weights, where the values are the whole population) the
    search is vectorized over channels with 128 bins per side by default, and while at most
    `exact_limit` values have been seen they are kept and the final choice is made on them
    exactly, the unclipped range included: never worse than minmax on any channel."""
    method = "mse"

    def __init__(self, *, bins: int | None = None, axis=None, exact_limit: int = 1 << 22,
                 nonfinite="warn"):
        if bins is None and axis is not None:
            bins = 128
        super().__init__(bins=bins, axis=axis, nonfinite=nonfinite)
        self.exact_limit = _check_int(exact_limit, "exact_limit", 0, 1 << 40)
        self._raw: list | None = [] if axis is not None else None

    def _update(self, rows, mask, lo, hi):
        super()._update(rows, mask, lo, hi)
        if self._raw is None:
            return
        self._raw.append(rows.copy() if mask is None else np.where(mask, rows, np.float32(np.nan)))
        if sum(r.size for r in self._raw) > self.exact_limit:
            self._raw = None                     # too many: the histogram alone decides

    def _range(self, qmin, qmax, symmetric):
        if self.axis is None:
            return mse_range(self.hist, qmin, qmax, symmetric)
        rows = np.concatenate(self._raw, axis=1) if self._raw else None
        return mse_range(self.hist, qmin, qmax, symmetric, coarse=40, fine=21, max_bins=256,
                         rows=rows)


class EntropyObserver(_HistogramObserver):
    """TensorRT's entropy calibration: the cut of the |x| histogram (2048 bins or more) whose
    quantization to 2^(bits-1) levels (2^bits for one-signed asymmetric data) keeps the KL
    divergence from the observed distribution smallest."""
    method = "entropy"
    per_axis = False

    def __init__(self, *, bins: int | None = None, axis=None, nonfinite="warn"):
        super().__init__(bins=bins, axis=axis, nonfinite=nonfinite)

    def _range(self, qmin, qmax, symmetric):
        return entropy_range(self.hist, qmin, qmax, symmetric)


OBSERVERS: dict[str, type[Observer]] = {cls.method: cls for cls in (
    MinMaxObserver, MovingAverageObserver, PercentileObserver, MeanStdObserver, MSEObserver,
    EntropyObserver)}


def make_observer(method: str, **options) -> Observer:
    """A new observer by method name (see OBSERVERS) with its options, e.g.
    make_observer("percentile", percentile=99.9), make_observer("mse", axis=0)."""
    cls = OBSERVERS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise QuantizationError(f"unknown observer method {method!r}; known methods: "
                                f"{', '.join(OBSERVERS)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise QuantizationError(f"observer {method!r} got unknown option(s) {', '.join(unknown)};"
                                f" it accepts: {', '.join(accepted)}")
    return cls(**options)
