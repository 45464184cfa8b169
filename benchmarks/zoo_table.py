"""The ONNX model zoo graphs that the onnx package ships (onnx/backend/test/data/light:
ResNet-50, DenseNet-121, Inception v1/v2, SqueezeNet, ShuffleNet, AlexNet, VGG-19, ZFNet-512),
each through `qengine bench` beside onnxruntime float and onnxruntime's own int8 model: real
exported graphs (Caffe2's Sum joins, pre-activation BatchNorms, LRN, opset 9, IR version 3)
rather than the built-in models' plain blocks.

    python benchmarks/zoo_table.py [--models resnet50,densenet121] [--threads 1] [--batch 1]
                                   [--rounds 5] [--markdown]

The 'light' files store every weight as a ConstantOfShape of one value, so the outputs say
nothing of accuracy (the fidelity column is left out); int8 time does not depend on the values.
Calibration is random data (qengine bench's default, fidelity target off: every supported node
runs int8, as onnxruntime-int8's do). Columns: median ms per call of each engine, qengine's
latency over onnxruntime int8's (median of per-round ratios; < 1: qengine is faster), qengine's
int8 GOPS against the measured peak, and the nodes qengine ran in float.
"""
from __future__ import annotations

import argparse
import glob
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # this checkout's qengine

import onnx

from qengine.tools.bench import benchmark

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def zoo_models() -> dict:
    """{short name: path} of the light model files shipped with the installed onnx."""
    return {os.path.basename(p)[len("light_"):-len(".onnx")]: p
            for p in sorted(glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))}


def measure(path: str, threads: int, batch: int, rounds: int) -> list[dict]:
    res = benchmark(path, threads=(threads,), batch=(batch,),
                    compare=["onnxruntime", "onnxruntime-int8"], rounds=rounds,
                    progress=False, print_fn=lambda *a, **k: None, warn=lambda *a: None)
    q = res["model"]["quantization"]
    rows = []
    for r in res["results"]:
        e = r["engines"]
        rows.append({"threads": r["threads"], "batch": r["batch"],
                     "qengine": e["qengine"]["median_ms"],
                     "fp32": e["onnxruntime"]["median_ms"],
                     "int8": e["onnxruntime-int8"]["median_ms"],
                     "vs_int8": r["ratios"]["onnxruntime-int8"]["latency_ratio"],
                     "vs_fp32": r["ratios"]["onnxruntime"]["latency_ratio"],
                     "gops": r["gops"], "peak": r["peak_fraction"],
                     "float": q["float"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", help="comma-separated short names (default: every light model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    models = zoo_models()
    if not models:
        print(f"no light_*.onnx in {LIGHT_DIR}", file=sys.stderr)
        return 1
    names = args.models.split(",") if args.models else list(models)
    unknown = [n for n in names if n not in models]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; the onnx package ships {sorted(models)}")
    if args.markdown:
        print("| model | threads | batch | qengine ms | ort fp32 ms | ort int8 ms | qe / ort fp32 "
              "| qe / ort int8 | qengine GOPS | % peak | float nodes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        for r in measure(models[name], args.threads, args.batch, args.rounds):
            floats = ", ".join(r["float"]) if r["float"] else "-"
            peak = f"{r['peak'] * 100:.0f}%" if r["peak"] else "-"
            gops = f"{r['gops']:.0f}" if r["gops"] else "-"
            if args.markdown:
                print(f"| {name} | {r['threads']} | {r['batch']} | {r['qengine']:.2f} | "
                      f"{r['fp32']:.2f} | {r['int8']:.2f} | {r['vs_fp32']:.2f} | "
                      f"{r['vs_int8']:.2f} | {gops} | {peak} | {floats} |", flush=True)
            else:
                print(f"{name:14s} t={r['threads']} b={r['batch']}  qengine {r['qengine']:8.2f} ms"
                      f"  ort fp32 {r['fp32']:8.2f}  ort int8 {r['int8']:8.2f}"
                      f"  qe/int8 {r['vs_int8']:.2f}  {gops:>4s} GOPS ({peak})"
                      f"  float: {floats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
