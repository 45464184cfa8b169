"""What a GEMM register tile costs beyond its multiply-adds: the requantization and the driver.

    python benchmarks/tile_cost.py [--n 64] [--ks 16 32 64 147 256 576 1152 2304] [--isa ...]

A GEMM of whole strips of mr rows by N columns (default: one panel of the tile's nr), A at
most 512 KB so that it stays in L2 between calls (this measures the tile, not DRAM), runs on
one thread for each K, with uint8 output (requantized, the pipeline a convolution uses) and
with raw int32 output; the time of a call of one tile and one k group (the binding and the
driver's set-up, a few percent of these calls) is taken off each call. Each tile's time is
converted to the multiply-add work the measured peak (csrc/peak) does in the same time:
'extra' is that work minus the tile's own, in k groups (a k group of a VNNI 6 x 64 tile is 24
vpdpbusd, about 24 cycles). The extra work is mostly a fixed cost per tile, so it caps a
layer's share of the peak near groups / (groups + extra): why convolutions with a short K (a
stem's 7x7x3 = 147, MobileNetV2's 16-channel expansions) stay far from the peak, and why a
3x3 conv on 64 channels (K = 576) gets a few percent less than one on 256.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS threads would spin
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
from gemm_common import peak_gops_per_core  # noqa: E402

from qengine import _kernels  # noqa: E402


def best_call_time(fn, seconds=0.3, rounds=7):
    """The fastest round's time per call: a kernel's own speed, least disturbed."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < seconds / rounds:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[16, 32, 64, 147, 256, 576, 1152, 2304])
    ap.add_argument("--n", type=int, default=0, help="columns (default: the tile's nr)")
    ap.add_argument("--isa", choices=_kernels.available_isas(), help="qengine kernel path")
    args = ap.parse_args()
    if args.isa:
        _kernels.set_isa(args.isa)
    _kernels.set_num_threads(1)
    peak = peak_gops_per_core() * 1e9  # int8 ops per second, one core
    rng = np.random.default_rng(0)
    probe = _kernels.GemmPacked(np.zeros((4, 4), np.int8))
    mr, nr, kr = probe.tile
    if kr == 0:
        sys.exit(f"the {probe.isa} path has no k groups to count in")
    N = args.n or nr
    print(f"kernels {probe.isa}: tile {mr} x {nr}, k groups of {kr}; N = {N}, 1 thread; "
          f"peak {peak / 1e9:.0f} GOPS")
    print(f"{'K':>6} {'M':>6} {'groups':>6}  {'u8 GOPS':>8} {'% peak':>6} {'extra':>6}   "
          f"{'i32 GOPS':>8} {'% peak':>6} {'extra':>6}   (extra: k groups per tile)")
    # What a call costs besides its tiles (the binding's checks, the driver's set-up; 1.7-4 us
    # on the Zen 4, a few percent of the calls below): a call of one tile and one k group,
    # subtracted from every call.
    tiny = _kernels.GemmPacked(np.ones((kr, N), np.int8))
    a1 = np.ones((mr, kr), np.uint8)
    scale1 = np.full(N, 1e-3, np.float32)
    call_cost = {out: best_call_time(lambda: _kernels.gemm_u8s8(tiny, a1, 0, out=out, **kw))
                 for out, kw in (("u8", {"scale": scale1}), ("i32", {}))}
    print(f"per call, subtracted: u8 {call_cost['u8'] * 1e6:.1f} us, "
          f"i32 {call_cost['i32'] * 1e6:.1f} us")
    for K in args.ks:
        M = mr * min(2090, max(16, (512 << 10) // (K * mr)))
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        b = _kernels.GemmPacked(rng.integers(-127, 128, (K, N), dtype=np.int8))
        scale = rng.uniform(1e-4, 1e-3, N).astype(np.float32)
        c8, c32 = np.empty((M, N), np.uint8), np.empty((M, N), np.int32)
        groups = -(-K // kr)
        tiles = (M // mr) * -(-N // nr)
        group_ops = 2 * mr * nr * kr  # the work of one k group of a full tile
        row = f"{K:>6} {M:>6} {groups:>6}  "
        for out, c, kw in (("u8", c8, {"scale": scale, "zero_point": 120}), ("i32", c32, {})):
            t = best_call_time(lambda: _kernels.gemm_u8s8(b, a, 113, out=out, c=c, **kw))
            t -= call_cost[out]
            gops = 2 * M * N * K / t / 1e9
            extra = t / tiles * peak / group_ops - groups
            row += f"{gops:>8.1f} {100 * gops * 1e9 / peak:>5.1f}% {extra:>6.1f}   "
        print(row)


if __name__ == "__main__":
    main()
