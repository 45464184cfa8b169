"""Memory soak: resident memory (RSS) over long runs must stay flat -- under 1% growth after a
warm-up -- for each way a service uses a model:

  sequential   N runs of one model from one thread
  threads      N runs spread over 8 Python threads (one shared model)
  rejected     N calls with bad inputs (every one raises InputError)
  reload       N/20 load -> run -> drop cycles of a model (packed weights must be freed)

    python -m fuzz.soak [--runs 10000] [--model demo|resnet18]

Prints RSS before/after per phase and exits 1 if a phase grew by 1% or more. Timings are not
asserted (shared machines); docs/hardening.md records a run.
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 0.01


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def _model(name: str):
    import qengine
    if name == "demo":
        from qengine.demo import MODEL_PATH, load_demo_data
        data = load_demo_data()
        return qengine.quantize(str(MODEL_PATH), data["calib"], progress=False, target_sqnr=None), \
            data["test"][:1]
    sys.path.insert(0, str(ROOT / "tests"))
    from models import random_input, resnet18
    m = resnet18(size=32, width=8, num_classes=10)
    calib = [random_input(m, batch=4, seed=s) for s in range(2)]
    return qengine.quantize(m.SerializeToString(), calib, progress=False, target_sqnr=None), \
        random_input(m, batch=1, seed=9)["input"]


def _phase(name: str, fn, n: int, warmup: int, calls_per_step: int = 1) -> dict:
    """Call fn(i) for i < n after `warmup` calls; RSS before, after and at the peak."""
    for i in range(warmup):
        fn(i)
    gc.collect()
    before = rss_kib()
    peak = before
    t0 = time.perf_counter()
    step = max(n // 10, 1)
    for start in range(0, n, step):
        for i in range(start, min(start + step, n)):
            fn(i)
        peak = max(peak, rss_kib())
    gc.collect()
    after = rss_kib()
    rec = {"phase": name, "runs": n * calls_per_step, "rss_before_kib": before,
           "rss_after_kib": after,
           "rss_peak_kib": peak, "growth": (after - before) / before,
           "seconds": round(time.perf_counter() - t0, 1)}
    ok = "ok" if rec["growth"] < LIMIT else "GREW"
    print(f"{name:<11}{rec['runs']:>7} calls  RSS {before / 1024:8.1f} -> {after / 1024:8.1f} MiB "
          f"(peak {peak / 1024:8.1f}, {100 * rec['growth']:+.3f}%)  {rec['seconds']:>6.1f} s  {ok}",
          flush=True)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--model", choices=["demo", "resnet18"], default="demo")
    args = ap.parse_args(argv)
    import qengine
    from qengine.errors import InputError

    model, x = _model(args.model)
    blob = model.to_onnx().SerializeToString()
    ref = model.run(x)
    print(f"model {args.model}: {model.weight_bytes / 1024:.0f} KiB of weights, input "
          f"{list(x.shape)}; {args.runs} calls per phase", flush=True)
    results = []

    def seq(i):
        model.run(x)
    results.append(_phase("sequential", seq, args.runs, 500))

    pool = ThreadPoolExecutor(8)
    lock = threading.Lock()
    bad = []

    def burst(i, per=100):
        outs = list(pool.map(lambda _: model.run(x), range(per)))
        if not all(np.array_equal(o, ref) for o in outs):
            with lock:
                bad.append(i)
    n_bursts = args.runs // 100
    results.append(_phase("threads", burst, n_bursts, 5, calls_per_step=100))
    pool.shutdown()
    if bad:
        print(f"threads: {len(bad)} bursts gave outputs different from the sequential run")

    wrong = [np.zeros((1, 7), np.float32), np.zeros(x.shape, np.complex64), "x", None,
             {"nope": x}]

    def rejected(i):
        try:
            model.run(wrong[i % len(wrong)])
        except InputError:
            return
        raise AssertionError("a bad input was accepted")
    results.append(_phase("rejected", rejected, args.runs, 500))

    def reload(i):
        m = qengine.load(blob)
        m.run(x)
    results.append(_phase("reload", reload, max(args.runs // 20, 10), 20))

    grew = [r["phase"] for r in results if r["growth"] >= LIMIT]
    if grew or bad:
        print(f"FAILED: RSS grew by 1% or more in {grew}" if grew else "FAILED: wrong outputs")
        return 1
    print(f"RSS flat (< {100 * LIMIT:.0f}% growth) in every phase")
    return 0


if __name__ == "__main__":
    sys.exit(main())
