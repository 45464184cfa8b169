"""Convolution layers of ResNet-18 and the depthwise layers of MobileNetV2 (224x224, batch 1):
qengine beside onnxruntime's single-node QLinearConv, timed interleaved in the same run.

    python benchmarks/conv_table.py [--threads 1 2] [--repeat 30] [--only mv2] [--markdown]

Columns: median time of each engine, qengine's int8 GOPS (2 * MACs / median time), speed ratio
(onnxruntime time / qengine time: > 1 means qengine is faster) of the medians and of the
minimums (the minimum resists bursts of load on a shared machine), and the fraction of the
peak that qengine reaches (one core's int8 peak x threads, measured at the start by the kernel
path's peak probe, csrc/peak). Run from the
repository root (the in-tree qengine is imported)."""
from __future__ import annotations

import argparse
import os
import sys
import time

# numpy's OpenBLAS threads spin after use and would steal the second core from both engines
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from conv_layers import LAYERS, make_data, ort_runner, qengine_runner  # noqa: E402



def interleaved_medians(fns, repeat, min_time=0.002, with_min=False, blocks=False):
    """Median seconds per call of each callable, timed in alternation so that machine noise
    hits every engine alike. Each sample runs a callable enough times to last min_time.
    with_min: return (medians, minimums); the minimum resists bursts of load from others.
    blocks: time each callable's samples together, with a pause between engines -- with
    several threads, one engine's pool workers still spin-waiting after its call would
    otherwise steal the core that the other engine's workers need."""
    for f in fns:  # warm up (packing caches, thread pools)
        f()
        f()
    inner = []
    for f in fns:
        t0 = time.perf_counter()
        f()
        dt = time.perf_counter() - t0
        inner.append(max(1, int(min_time / max(dt, 1e-7))))
    samples = [[] for _ in fns]
    order = ([[i] * repeat for i in range(len(fns))] if blocks
             else [list(range(len(fns)))] * repeat)
    for group in order:
        if blocks:
            time.sleep(0.05)  # let the previous engine's spinning workers go to sleep
            fns[group[0]]()
        for i in group:
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fns[i]()
            samples[i].append((time.perf_counter() - t0) / inner[i])
    med = [float(np.median(s)) for s in samples]
    return (med, [float(np.min(s)) for s in samples]) if with_min else med


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--only", default="", help="substring filter on layer names (r18, mv2, ...)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)

    from qengine import _kernels as K
    from qengine.tools.profile import peak_gops_per_core
    per_core = peak_gops_per_core(K.get_isa()) or float("nan")   # measured before any layer
    print(f"int8 peak {per_core:.0f} GOPS per core ({K.get_isa()}, measured by its probe)")
    rows = []
    for layer in [l for l in LAYERS if args.only in l.name]:
        x, w, ws, b = make_data(layer)
        q_run, packed = qengine_runner(layer, x, w, ws, b)
        for t in args.threads:
            K.set_num_threads(t)
            o_run = ort_runner(layer, x, w, ws, b, t)
            (tq, to), (mq, mo) = interleaved_medians([q_run, o_run], args.repeat, with_min=True,
                                                     blocks=t > 1)
            gops = 2 * layer.macs / tq / 1e9
            rows.append((layer.name, packed.method, t, tq * 1e3, to * 1e3, gops, to / tq,
                         mo / mq, gops / (per_core * t)))
            print(f"{layer.name:18s} {packed.method:12s} t={t} qengine {tq*1e3:8.3f} ms  "
                  f"ort {to*1e3:8.3f} ms  {gops:7.1f} GOPS  ratio {to/tq:5.2f}x  "
                  f"(of minimums {mo/mq:5.2f}x)  peak {100*gops/(per_core*t):5.1f}%",
                  flush=True)
    if args.markdown:
        print("\n| layer | method | threads | qengine ms | onnxruntime ms | qengine GOPS | "
              "ratio (ort/qe) | ratio of minimums | % of peak |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.1f} | "
                  f"{r[6]:.2f}x | {r[7]:.2f}x | {100*r[8]:.1f}% |")
    print(f"\nisa={K.get_isa()}  onnxruntime={__import__('onnxruntime').__version__}")


if __name__ == "__main__":
    main()
