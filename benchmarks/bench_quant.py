"""Cost and quality of qengine.quant's observers and quantize(), as ratios to baselines timed in
the same run (the machines are shared and noisy; never read the absolute times alone).

    python benchmarks/bench_quant.py [--batches 20] [--repeat 5]

1. update() cost per activation batch, relative to the floor of any observer: x.min() + x.max().
2. qparams() cost (the range search), once per tensor after calibration.
3. quantize() (numpy path) relative to tests/npref.py's quantize, the plain statement of the map.
4. Quality on a gaussian with 4 outliers at +-30 sigma: MSE on the bulk relative to minmax.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npref  # noqa: E402
from qengine.quant import fake_quantize, qparams_from_range, quantize  # noqa: E402
from qengine.quant.observers import OBSERVERS, make_observer  # noqa: E402


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shape = (1, 56, 56, 64)                              # a ResNet stage-1 activation
    batches = [np.maximum(rng.standard_normal(shape), 0).astype(np.float32) * (1 + 0.1 * i)
               for i in range(args.batches)]
    n = batches[0].size

    def floor():
        for b in batches:
            b.min(), b.max()

    def numpy_histogram():                 # what onnxruntime's histogram calibrators do
        for b in batches:
            np.histogram(b, 4096, range=(-8.0, 8.0))

    base = best_of(floor, args.repeat)
    hist = best_of(numpy_histogram, args.repeat)
    print(f"1-2. observers on {args.batches} batches of {shape} ({n} values): update() cost as a "
          f"ratio to x.min() + x.max() ({base / args.batches * 1e3:.2f} ms per batch) and to "
          f"np.histogram(x, 4096) ({hist / args.batches * 1e3:.2f} ms)")
    print(f"   {'method':16s}{'/ min+max':>12s}{'/ np.histogram':>16s}{'qparams ms':>12s}")
    for method in OBSERVERS:
        def feed():
            obs = make_observer(method)
            for b in batches:
                obs.update(b)
            return obs
        t = best_of(feed, args.repeat)
        obs = feed()
        q = best_of(lambda: obs.qparams(), args.repeat)
        print(f"   {method:16s}{t / base:12.2f}{t / hist:16.2f}{q * 1e3:12.2f}")
    w = rng.standard_t(3, size=(512, 576)).astype(np.float32)
    for method in ("minmax", "mse"):
        def weights():
            obs = make_observer(method, axis=0)
            obs.update(w)
            return obs.qparams(8, True, True)
        print(f"   per-channel {method} on a 512x576 weight: "
              f"{best_of(weights, max(1, args.repeat // 2)) * 1e3:.1f} ms")

    x = rng.standard_normal(1 << 20).astype(np.float32) * 3
    qp = qparams_from_range(-4.0, 9.0)
    ours = best_of(lambda: quantize(x, qp), args.repeat)
    ref = best_of(lambda: npref.quantize(x, qp.scale, int(qp.zero_point)), args.repeat)
    print(f"3. quantize() of 2^20 values, numpy path: {ref / ours:.2f}x the speed of "
          f"npref.quantize ({x.size / ours / 1e6:.0f} Mvalues/s)")

    x = rng.standard_normal(1_000_000).astype(np.float32)
    x[[10, 20, 500_000, 700_000]] = [30, -30, 30, -30]
    bulk = np.delete(x, [10, 20, 500_000, 700_000])
    print("4. gaussian + 4 outliers at +-30: bulk MSE relative to minmax (lower is better)")
    print(f"   {'method':16s}{'uint8 asym':>12s}{'int8 sym':>12s}{'uint4 asym':>12s}")
    base_err = {}
    for method in OBSERVERS:
        obs = make_observer(method)
        for b in np.array_split(x, 10):
            obs.update(b)
        row = []
        for kw in (dict(), dict(signed=True, symmetric=True), dict(bits=4)):
            err = float(np.mean((fake_quantize(bulk, obs.qparams(**kw)) - bulk) ** 2))
            base_err.setdefault(str(kw), err)
            row.append(err / base_err[str(kw)])
        print(f"   {method:16s}" + "".join(f"{r:12.3f}" for r in row))


if __name__ == "__main__":
    main()
