"""Calibration observers (qengine.quant.observers) and the histogram machinery under them, on
known distributions, against direct (slow or exact) computations, and on bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from qengine.errors import QuantizationError
from qengine.quant import fake_quantize, qparams_from_range, quantize
from qengine.quant.clipping import expected_mse, kl_divergences, mse_range
from qengine.quant.histogram import Histogram
from qengine.quant.observers import OBSERVERS, MSEObserver, make_observer

ALL = list(OBSERVERS)
CLIPPING = ["percentile", "mse", "entropy"]


def _feed(obs, x, batches=10):
    for b in np.array_split(x, batches):
        obs.update(b)
    return obs


def _mse(x, qp):
    return float(np.mean((fake_quantize(x, qp).astype(np.float64) - x) ** 2))


@pytest.fixture(scope="module")
def gaussian_with_outliers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    where = [10, 20, 500_000, 700_000]
    x[where] = [30, -30, 30, -30]
    return x, np.delete(x, where)


# ---- behaviour on known distributions ----------------------------------------------------------

@pytest.mark.parametrize("kw", [{}, dict(signed=True, symmetric=True), dict(bits=4)])
def test_clipping_observers_clip_outliers_that_minmax_keeps(gaussian_with_outliers, kw):
    x, bulk = gaussian_with_outliers
    mm = _feed(make_observer("minmax"), x)
    lo, hi = mm.range(**kw)
    assert (lo, hi) == (-30, 30)
    mm_bulk = _mse(bulk, mm.qparams(**kw))
    for method in CLIPPING:
        obs = _feed(make_observer(method), x)
        lo, hi = obs.range(**kw)
        assert -15 < lo < -2 and 2 < hi < 15, (method, lo, hi)
        assert _mse(bulk, obs.qparams(**kw)) < 0.3 * mm_bulk, method
    # MSE minimizes the error of all the data, outliers included: it beats minmax there too
    assert _mse(x, _feed(make_observer("mse"), x).qparams(**kw)) < _mse(x, mm.qparams(**kw))


@pytest.mark.parametrize("symmetric", [False, True])
def test_percentile_is_the_data_quantile_within_a_bin(symmetric):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(150_000), rng.exponential(2, 50_000)]).astype(np.float32)
    obs = _feed(make_observer("percentile", percentile=99.9), x, 7)
    lo, hi = obs.range(signed=symmetric, symmetric=symmetric)
    w = obs.hist.width[0]

    def brackets(values, t, q):   # the fraction q of the data lies below t, up to one bin
        return np.mean(values <= t - w) <= q <= np.mean(values <= t + w)

    if symmetric:
        assert lo == -hi and brackets(np.abs(x), hi, 0.999)
    else:
        assert brackets(x, lo, 0.0005) and brackets(x, hi, 0.9995)
    assert abs(hi - np.percentile(np.abs(x) if symmetric else x, 99.9 if symmetric else 99.95)) < 0.05


def test_mean_std_is_exact_under_any_batching():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(100_003) * 0.5 + 1e3).astype(np.float32)   # large mean: Welford
    ref = x.astype(np.float64)
    for batches in (1, 13):
        obs = _feed(make_observer("mean_std", k=2.0), x, batches)
        assert np.isclose(obs.mean[0], ref.mean(), rtol=1e-12)
        assert np.isclose(obs.std[0], ref.std(), rtol=1e-9)
        lo, hi = obs.range()
        assert np.isclose(lo, ref.mean() - 2 * ref.std(), rtol=1e-6)
        assert np.isclose(hi, ref.mean() + 2 * ref.std(), rtol=1e-6)
    wide = _feed(make_observer("mean_std", k=50.0), x)
    assert wide.range() == (x.min(), x.max())                        # clipped to the data


def test_moving_average_follows_the_pytorch_formula():
    obs = make_observer("moving_average", averaging_constant=0.5)
    for b in ([0.0, 4.0], [-2.0, 8.0], [2.0, 2.0]):
        obs.update(np.float32(b))
    # lo: 0 -> 0 + .5(-2 - 0) = -1 -> -1 + .5(2 + 1) = 0.5 ; hi: 4 -> 6 -> 4
    assert obs.range() == (np.float32(0.5), np.float32(4.0))


def test_mse_observer_finds_the_best_clipping_on_the_raw_data():
    """The histogram's expected MSE equals the empirical MSE of the chosen parameters, and no
    clipping ratio of a fine brute-force scan on the raw data does better."""
    rng = np.random.default_rng(3)
    data = {"laplace": rng.laplace(size=200_000),
            "relu": np.maximum(rng.standard_normal(200_000), 0)}
    for name, x in data.items():
        x = x.astype(np.float32)
        obs = _feed(make_observer("mse"), x, 5)
        for bits, signed, symmetric in [(8, False, False), (4, True, True), (2, False, False)]:
            qp = obs.qparams(bits=bits, signed=signed, symmetric=symmetric)
            emp = _mse(x, qp)
            edges, counts = obs.hist.signed(1024)
            est = expected_mse(edges, counts, qp.scale.reshape(1, 1).astype(np.float64),
                               qp.zero_point.reshape(1, 1), qp.qmin, qp.qmax)[0, 0]
            assert abs(est - emp) < 0.01 * emp, (name, bits, est, emp)
            a, b = x.min(), x.max()
            if symmetric:
                a, b = -max(-a, b), max(-a, b)
            best = min(_mse(x, qparams_from_range(a * r, b * r, bits, signed, symmetric))
                       for r in np.linspace(0.05, 1, 96))
            assert emp <= best * 1.002, (name, bits, emp, best)


def _slow_kl(h, levels):
    """TensorRT's loop, written out: one cut at a time, bin by bin."""
    out = []
    for i in range(levels, len(h) + 1):
        p = h[:i].astype(np.float64)
        p[-1] += h[i:].sum()
        chunk = (np.arange(i) * levels) // i
        q = np.zeros(i)
        for j in range(levels):
            members, nonzero = chunk == j, (chunk == j) & (p > 0)
            if nonzero.any():
                q[nonzero] = h[:i][members].sum() / nonzero.sum()
        P, Q = p / p.sum(), q / max(q.sum(), 1e-300)
        if np.any((P > 0) & (Q == 0)):
            out.append(np.inf)
            continue
        m = P > 0
        out.append(np.sum(P[m] * np.log(P[m] / Q[m])))
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_vectorized_kl_equals_the_slow_loop(seed):
    rng = np.random.default_rng(seed)
    n, levels = int(rng.integers(40, 300)), int(rng.choice([4, 8, 16, 33]))
    h = rng.poisson(rng.uniform(1, 50), n) * (rng.random(n) > 0.3)     # with empty bins
    h[-1] = 0                                                        # and empty cut bins
    h[rng.integers(0, n, 3)] = 0
    fast, slow = kl_divergences(h, levels), _slow_kl(h, levels)
    finite = np.isfinite(slow)
    assert np.array_equal(finite, np.isfinite(fast))
    assert np.allclose(fast[finite], slow[finite], rtol=1e-9, atol=1e-12)


def test_entropy_keeps_the_range_of_uniform_data_and_adapts_levels():
    x = np.random.default_rng(4).uniform(0, 10, 200_000).astype(np.float32)
    obs = _feed(make_observer("entropy"), x)
    assert obs.range()[1] > 9.5                                # nothing to gain by clipping
    y = np.random.default_rng(5).exponential(1, 200_000).astype(np.float32)
    obs = _feed(make_observer("entropy"), y)
    assert obs.range(bits=8)[1] > obs.range(bits=4)[1] > obs.range(bits=2)[1]


# ---- streaming histogram ------------------------------------------------------------------------

def test_histogram_regrowth_is_exact_and_memory_bounded():
    rng = np.random.default_rng(6)
    h = Histogram(1, 64)
    seen = []
    for k in range(40):                                        # the range grows 2000x
        b = (rng.standard_normal(1000) * (1 + k * k)).astype(np.float32)
        b[:3] = 0.0
        h.add(b[None, :])
        seen.append(b)
        assert h.counts.shape == (1, 256)
    x = np.concatenate(seen)
    assert h.total[0] == x.size and h.zeros[0] == 120
    w = h.width[0]
    assert w >= np.abs(x).max() / 128 and w < np.abs(x).max() / 64 * 1.0001
    # merging by integer factors loses nothing: the counts are those of the final bins
    nz = x[x != 0]
    direct = np.bincount(np.clip(np.floor(nz * np.float32(1 / w)), -128, 127).astype(int) + 128,
                         minlength=256)
    assert np.array_equal(h.counts[0], direct)


def test_histogram_survives_extreme_growth_and_keeps_zero_on_an_edge():
    h = Histogram(2, 16)
    h.add(np.float32([[1e-30, -1e-30], [0.0, 0.0]]))
    h.add(np.float32([[1e30, 3.0], [0.0, 0.0]]))
    h.add(np.float32([[-2e30, 0.0], [5.0, -1.0]]))
    assert h.total.tolist() == [6, 6] and h.zeros.tolist() == [1, 4]
    edges, counts = h.signed()
    assert counts.sum(axis=1).tolist() == [6, 6]
    assert np.all(np.diff(edges, axis=1) >= 0) and np.all(np.isfinite(edges))
    assert np.all(np.any(edges == 0, axis=1))                # 0 stays an edge in every row


def test_histogram_observers_are_close_to_the_one_shot_result_when_streamed():
    rng = np.random.default_rng(7)
    x = rng.laplace(size=120_000).astype(np.float32)
    x = x[np.argsort(np.abs(x))]                             # worst case: range grows every batch
    for method in CLIPPING:
        one = make_observer(method)
        one.update(x)
        many = _feed(make_observer(method), x, 60)
        w = many.hist.width[0]
        for kw in ({}, dict(signed=True, symmetric=True)):
            (a, b), (c, d) = one.range(**kw), many.range(**kw)
            tol = 0.05 * (b - a) if method != "percentile" else 2 * w
            assert abs(a - c) <= tol and abs(b - d) <= tol, (method, kw, (a, b), (c, d))


# ---- per channel (weights) ------------------------------------------------------------------

@pytest.mark.parametrize("method", [m for m, c in OBSERVERS.items() if c.per_axis])
def test_per_channel_observers_equal_per_slice_observers(method):
    rng = np.random.default_rng(8)
    w = (rng.laplace(size=(6, 3, 3, 20)) * rng.uniform(0.1, 3, (6, 1, 1, 1))).astype(np.float32)
    obs = make_observer(method, axis=0)
    obs.update(w)
    lo, hi = obs.range(signed=True, symmetric=True)
    assert lo.shape == hi.shape == (6,) and lo.dtype == np.float32
    qp = obs.qparams(signed=True, symmetric=True)
    assert qp.axis == 0 and qp.scale.shape == (6,) and not qp.zero_point.any()
    for c in range(6):
        if method == "mse":                   # same bins and search as the vectorized rows
            h, row = Histogram(1, obs.bins), w[c].reshape(1, -1)
            h.add(row)
            l1, h1 = mse_range(h, -127, 127, True, coarse=40, fine=21, max_bins=256, rows=row)
        else:
            single = make_observer(method)
            single.update(w[c])
            l1, h1 = single.range(signed=True, symmetric=True)
        assert np.isclose(lo[c], l1, rtol=1e-6) and np.isclose(hi[c], h1, rtol=1e-6), c


def test_per_channel_mse_beats_minmax_on_every_channel():
    rng = np.random.default_rng(9)
    w = rng.standard_t(3, size=(512, 576)).astype(np.float32)   # heavy tails, a conv layer's size
    mse, mm = MSEObserver(axis=0), make_observer("minmax", axis=0)
    mse.update(w)
    mm.update(w)
    for bits in (8, 4):
        q_mse, q_mm = mse.qparams(bits, True, True), mm.qparams(bits, True, True)
        e_mse = np.mean((fake_quantize(w, q_mse) - w) ** 2, axis=1)
        e_mm = np.mean((fake_quantize(w, q_mm) - w) ** 2, axis=1)
        assert np.all(e_mse <= e_mm * (1 + 1e-5))                # exact on the weights
        assert e_mse.mean() < (0.995 if bits == 8 else 0.7) * e_mm.mean()


def test_per_channel_mse_requantizes_already_quantized_weights_losslessly():
    """Weights exported from quantization-aware training sit on a grid already: the exact
    final stage keeps it even where the smoothed histogram would clip the sparse tails."""
    rng = np.random.default_rng(10)
    k = np.clip(np.rint(rng.standard_normal((4, 200_000)) * 5), -127, 127)
    k[:, 0], k[:, 1] = 127, -127               # in expectation, clipping these two would pay
    step = rng.uniform(1e-3, 1e-1, (4, 1))
    w = (k * step).astype(np.float32)
    obs, mm = MSEObserver(axis=0), make_observer("minmax", axis=0)
    obs.update(w)
    mm.update(w)
    qp = obs.qparams(8, True, True)
    assert qp == mm.qparams(8, True, True)
    assert np.allclose(fake_quantize(w, qp), w, rtol=1e-6, atol=0)   # float32 rounding only


def test_per_channel_axis_can_be_negative_and_move():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    obs = make_observer("minmax", axis=-1)
    obs.update(x)
    lo, hi = obs.range()
    assert lo.tolist() == [0, 1, 2, 3] and hi.tolist() == [20, 21, 22, 23]


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ALL)
def test_no_data_empty_batches_and_all_nan_are_errors_at_range_time(method):
    obs = make_observer(method)
    with pytest.raises(QuantizationError, match="no finite values"):
        obs.qparams()
    obs.update(np.zeros((0, 5), np.float32))                  # empty batch: a no-op
    with pytest.raises(QuantizationError, match="no finite values"):
        obs.range()
    with pytest.warns(RuntimeWarning, match="NaN or Inf"):
        obs.update(np.float32([np.nan, np.inf, -np.inf]))
    with pytest.raises(QuantizationError, match="no finite values"):
        obs.qparams()


@pytest.mark.parametrize("method", ALL)
def test_non_finite_values_are_ignored_with_a_warning_or_raise(method):
    x = np.float32([-1.0, 0.5, 2.0, np.nan, np.inf, -np.inf] * 100)
    obs = make_observer(method)
    with pytest.warns(RuntimeWarning, match="300 of 600"):
        obs.update(x)
    clean = make_observer(method)
    clean.update(x[np.isfinite(x)])
    assert obs.range() == clean.range() and obs.num_nonfinite == 300
    strict = make_observer(method, nonfinite="raise")
    with pytest.raises(QuantizationError, match="NaN or Inf"):
        strict.update(x)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("value", [0.0, 2.5, -7.0])
def test_constant_data_gives_sound_params(method, value):
    obs = make_observer(method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _feed(obs, np.full(1000, value, np.float32), 3)
    for kw in ({}, dict(signed=True, symmetric=True), dict(bits=2)):
        qp = obs.qparams(**kw)
        assert np.isfinite(qp.scale) and qp.scale > 0
        assert fake_quantize(np.float32(value), qp) == pytest.approx(value, abs=1e-6)
        assert qp.scale == 1.0 if value == 0 else qp.scale <= abs(value) / 2


def test_per_channel_errors_name_the_problem():
    obs = make_observer("mse", axis=1)
    with pytest.raises(QuantizationError, match="out of range"):
        obs.update(np.zeros(3, np.float32))
    w = np.ones((2, 3), np.float32)
    w[:, 2] = np.nan
    with pytest.warns(RuntimeWarning):
        obs.update(w)
    with pytest.raises(QuantizationError, match=r"channel\(s\) \[2\]"):
        obs.range()
    with pytest.raises(QuantizationError, match="3 channels|had 3"):
        obs.update(np.ones((2, 4), np.float32))


@pytest.mark.parametrize("method, options, match", [
    ("kl_magic", {}, "unknown observer method 'kl_magic'; known methods: minmax"),
    (None, {}, "unknown observer"),
    ("minmax", dict(percentile=99), "unknown option"),
    ("percentile", dict(axis=0), "per tensor only"),
    ("entropy", dict(axis=0), "per tensor only"),
    ("percentile", dict(percentile=0), "percentile"),
    ("percentile", dict(percentile=100.5), "percentile"),
    ("percentile", dict(percentile=np.nan), "percentile"),
    ("mse", dict(bins=2), "bins"),
    ("entropy", dict(bins=1.5), "bins"),
    ("mean_std", dict(k=-1), "k"),
    ("moving_average", dict(averaging_constant=1.5), "averaging_constant"),
    ("minmax", dict(axis="0"), "axis"),
    ("minmax", dict(nonfinite="drop"), "nonfinite"),
])
def test_bad_observer_options_are_clear_errors(method, options, match):
    with pytest.raises(QuantizationError, match=match):
        make_observer(method, **options)


@pytest.mark.parametrize("method", ALL)
def test_bad_data_and_bits_are_errors(method):
    obs = make_observer(method)
    with pytest.raises(QuantizationError, match="real numbers"):
        obs.update(np.array(["a", "b"]))
    with pytest.raises(QuantizationError, match="real numbers"):
        obs.update(np.array([1 + 1j]))
    obs.update(np.arange(10))                                  # integers are fine
    for bits in (1, 9, 8.5):
        with pytest.raises(QuantizationError, match="bits"):
            obs.qparams(bits=bits)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_every_observer_gives_valid_params_at_every_width(method, bits):
    x = np.random.default_rng(bits).standard_normal(20_000).astype(np.float32) * 3 + 1
    obs = _feed(make_observer(method), x, 4)
    for signed, symmetric in ((False, False), (True, True), (True, False), (False, True)):
        lo, hi = obs.range(bits, signed, symmetric)
        assert lo.shape == () and lo.dtype == np.float32 and lo <= hi
        a, b = (-np.abs(x).max(), np.abs(x).max()) if symmetric else (x.min(), x.max())
        assert a <= lo and hi <= b and (lo == -hi if symmetric else True)
        qp = obs.qparams(bits, signed, symmetric)
        q = np.unique(quantize(x, qp))
        assert qp.qmin <= q.min() and q.max() <= qp.qmax and q.size > 2 ** bits // 2
