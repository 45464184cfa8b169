"""What the automatic fidelity target costs in quantize(): time with target_sqnr=None, with the
default target, and with a hard one, on a ResNet-18 (random weights) in the same run.

    python benchmarks/fidelity_overhead.py                  # 224x224, width 64, 64 images
    python benchmarks/fidelity_overhead.py --size 32 --width 16 --hard 40
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")]

import models  # noqa: E402
import qengine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--hard", type=float, default=40.0, help="a target that needs float layers")
    a = p.parse_args()
    m = models.resnet18(size=a.size, width=a.width, num_classes=1000)
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(a.images // 8)]
    print(f"ResNet-18 {a.size}x{a.size} width {a.width}, {a.images} calibration images")
    for target in (None, 30.0, a.hard):
        t = time.perf_counter()
        q = qengine.quantize(m, calib, progress=False, target_sqnr=target)
        dt = time.perf_counter() - t
        info = q.info
        line = f"  target_sqnr={target!s:>5}: quantize {dt:6.1f} s"
        if target is not None:
            line += (f"; search {info['fidelity_seconds']:.2f} s, {info['fidelity_trials']} "
                     f"trials; int8 {min(info['int8_output_sqnr'].values()):.1f} dB -> "
                     f"{min(info['output_sqnr'].values()):.1f} dB with "
                     f"{len(info['kept_float'])} nodes float, run time x{info['speed_cost']:.2f}"
                     f" ({info['evaluated_on']})")
        print(line, flush=True)


if __name__ == "__main__":
    main()
