"""A batch's first layers image by image (runtime/per_image.py) against the whole batch.

For each built-in model, thread count and batch size: one quantized model compiled once per
mode of QENGINE_PER_IMAGE ("auto", what qengine runs, and "off"; "all" on request), timed
interleaved in one process; the outputs must be identical. Prints median ms per call and each
mode's ratio to "off" (the median of the per-round ratios: below 1, faster than batched).

    python benchmarks/per_image.py [--models resnet18,mobilenetv2,yolo,ocr] [--threads 1,2]
                                   [--batch 8] [--rounds 15] [--modes auto,off]
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # this checkout's qengine
import numpy as np

import qengine
from qengine import _kernels as K
from qengine.runtime.plan import build_plan
from qengine.tools.timing import ratio_stats, summarize, time_interleaved

from models import BENCHMARKS



def _input(model, batch: int, seed: int) -> np.ndarray:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [batch] + [d.dim_value for d in dims[1:]]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def measure(name: str, threads: int, batch: int, rounds: int, modes=("auto", "off")) -> dict:
    model = BENCHMARKS[name].onnx()
    q = qengine.quantize(model, [_input(model, batch, 1)], progress=False, target_sqnr=None)
    x = _input(model, batch, 2)
    iname = model.graph.input[0].name
    cache: dict = {}
    modes = ["off"] + [m for m in modes if m != "off"]
    plans = {m: K.CompiledPlan(build_plan(q.graph, {iname: x.shape}, cache, per_image_mode=m))
             for m in modes}
    outs = {m: p.call((x,), threads) for m, p in plans.items()}
    for m in modes[1:]:
        for a, b in zip(outs[m], outs["off"]):
            if not np.array_equal(a, b):
                raise AssertionError(f"{name}: per-image ({m}) and batched outputs differ")
    t = time_interleaved({m: (lambda p=p: p.call((x,), threads)) for m, p in plans.items()},
                         rounds=rounds, warmup=2, min_round_seconds=0.05)
    rows = []
    for m in modes:
        prefix = plans[m].program.per_image
        rows.append({"model": name, "threads": threads, "batch": batch, "mode": m,
                     "per_image_steps": prefix[0] if prefix else 0,
                     "steps": len(plans[m].program),
                     "ms": summarize(t.samples[m]).median * 1e3,
                     "ratio": ratio_stats(t.samples[m], t.samples["off"]).median})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenetv2,yolo,ocr")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch", default="8")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--modes", default="auto,off", help="per-image modes: auto, off, all")
    a = p.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    qengine.set_num_threads(max(int(t) for t in a.threads.split(",")))
    print("| model | threads | batch | mode | per-image steps | ms | / off |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name in a.models.split(","):
        for threads in (int(t) for t in a.threads.split(",")):
            for batch in (int(b) for b in a.batch.split(",")):
                for r in measure(name, threads, batch, a.rounds, modes):
                    print(f"| {name} | {threads} | {batch} | {r['mode']} | "
                          f"{r['per_image_steps']} of {r['steps']} | {r['ms']:.2f} | "
                          f"{r['ratio']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
