"""GEMM throughput table: qengine vs onnxruntime, same problems, same process, interleaved.

    python benchmarks/gemm_table.py [--rounds 9] [--shapes 1024x1024x1024 ...] [--clock cpu]
                                    [--isa avx2]

For each shape (M x N x K) and thread count (1, 2): both engines are warmed up, then timed in
alternating rounds of calls, and the median call time gives GOPS = 2*M*N*K / time. The ratio
is qengine / onnxruntime; "% peak" is against one core's int8 peak x threads, measured at the
start by the kernel path's peak probe (csrc/peak).
The outputs of the two engines are compared once per shape (they must be equal).

--clock cpu times the calling thread's CPU time instead of wall time: at one thread both
engines compute entirely on the calling thread, so on a shared, loaded machine this still
measures the kernels (not the time slices other processes took). It needs --threads 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# numpy's OpenBLAS threads spin after use and would steal the second core from both engines
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

# this checkout's qengine, not another one an editable install may point at
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
from gemm_common import SHAPES, Problem, peak_gops_per_core  # noqa: E402

from qengine import _kernels  # noqa: E402


def timed_calls(fn, seconds, clock):
    """Per-call times of fn (by `clock`) over about `seconds` of wall time, at least 3 calls."""
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t = clock()
        fn()
        times.append(clock() - t)
    return times


def measure(engines, rounds, seconds, clock):
    """Median call time of each engine, rounds interleaved so drift hits both alike."""
    for fn in engines.values():  # warm-up: caches, thread pools, lazy packing
        timed_calls(fn, seconds / 2, clock)
    times = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            times[name] += timed_calls(fn, seconds / rounds, clock)
    return {name: float(np.median(t)) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=1.5, help="timing budget per engine")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", nargs="+", help="MxNxK, e.g. 1024x1024x1024")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: the calling thread's CPU time (one thread only)")
    ap.add_argument("--isa", choices=_kernels.available_isas(), help="qengine kernel path")
    args = ap.parse_args()
    if args.isa:
        _kernels.set_isa(args.isa)  # GemmPacked packs for (and keeps) the active path
    if args.clock == "cpu" and args.threads != [1]:
        ap.error("--clock cpu measures the calling thread only: use it with --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES
    import onnxruntime

    print(f"qengine GEMM ({_kernels.get_isa()}, {_kernels.__file__}) vs onnxruntime "
          f"{onnxruntime.__version__} MatMulInteger; int32 output; median of interleaved rounds; "
          f"{args.clock} clock; load average {os.getloadavg()[0]:.1f}")
    per_core = peak_gops_per_core()   # measured before any GEMM runs
    print(f"int8 peak {per_core:.0f} GOPS per core (measured by the path's probe)")
    print(f"{'M x N x K':>16} {'thr':>3} {'qengine GOPS':>12} {'ORT GOPS':>9} "
          f"{'ratio':>6} {'% peak':>7}")
    for M, N, K in shapes:
        prob = Problem(M, N, K)
        for threads in args.threads:
            engines = {"qe": prob.qengine(threads), "ort": prob.onnxruntime(threads)}
            if threads == args.threads[0]:
                np.testing.assert_array_equal(engines["qe"](), engines["ort"]())
            t = measure(engines, args.rounds, args.seconds, clock)
            qe, ort = prob.ops / t["qe"] / 1e9, prob.ops / t["ort"] / 1e9
            peak = 100 * qe / (per_core * threads)
            print(f"{f'{M} x {N} x {K}':>16} {threads:>3} {qe:>12.1f} {ort:>9.1f} "
                  f"{qe / ort:>6.2f} {peak:>6.1f}%", flush=True)


if __name__ == "__main__":
    main()
