"""Speed of the float reference executor, as ratios against baselines timed in the same run.

    python benchmarks/bench_reference.py [--size 224] [--batch 1] [--repeat 5]

For full-size ResNet-18 and MobileNetV2 (tests/models.py builders), prints the best-of-N
time of qengine's ReferenceExecutor, of ONNX Runtime (CPU, all threads, all graph
optimizations) and of onnx.reference.ReferenceEvaluator, with the ratios. The reference
executor is numpy: it is the ground truth for calibration and fidelity, not the fast path,
so the number to watch is that it stays within a small factor of ONNX Runtime (BLAS-bound)
and far ahead of a per-pixel Python implementation.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from models import mobilenetv2, random_input, resnet18  # noqa: E402
from qengine.frontends import import_onnx  # noqa: E402
from qengine.runtime import ReferenceExecutor  # noqa: E402


def best_of(fn, repeat):
    fn()                                   # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-onnx-reference", action="store_true",
                    help="skip onnx.reference (slow on full-size models)")
    args = ap.parse_args()
    nets = {
        "resnet18": resnet18(size=args.size, width=64, num_classes=1000),
        "mobilenetv2": mobilenetv2(size=args.size, width_mult=1.0, num_classes=1000),
    }
    print(f"size {args.size}, batch {args.batch}, best of {args.repeat}")
    print(f"{'model':<12} {'qengine ref':>12} {'onnxruntime':>12} {'ratio':>7} "
          f"{'onnx.reference':>15} {'ratio':>7}")
    for name, model in nets.items():
        feeds = random_input(model, args.batch)
        ex = ReferenceExecutor(import_onnx(model))
        ours = best_of(lambda: ex.run(feeds), args.repeat)
        try:
            import onnxruntime as ort
            sess = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])
            theirs = best_of(lambda: sess.run(None, feeds), args.repeat)
            got = next(iter(ex.run(feeds).values()))
            np.testing.assert_allclose(got, sess.run(None, feeds)[0], rtol=1e-3, atol=1e-3)
        except ImportError:
            theirs = float("nan")
        ref = float("nan")
        if not args.no_onnx_reference:
            from onnx.reference import ReferenceEvaluator
            ev = ReferenceEvaluator(model)
            ref = best_of(lambda: ev.run(None, feeds), max(1, args.repeat // 2))
        print(f"{name:<12} {ours * 1e3:>10.1f}ms {theirs * 1e3:>10.1f}ms {ours / theirs:>6.1f}x "
              f"{ref * 1e3:>13.1f}ms {ours / ref:>6.2f}x")


if __name__ == "__main__":
    main()
