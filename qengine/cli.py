"""The `qengine` command: demo, quantize, run, inspect, bench, report, info.

Every error prints one line ("qengine: error: ...") and exits non-zero; `--help` works on every
command. The commands only call the public API (qengine.api) and the tools (qengine.tools).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

from .tools.data_files import load_array_file, load_inputs

__all__ = ["main"]


# ---- commands -----------------------------------------------------------------------------------
def _cmd_demo(args) -> int:
    from .cpu import set_num_threads
    from .demo import run_demo
    if args.threads:
        set_num_threads(args.threads)
    run_demo(runs=args.runs)
    return 0


def _cmd_quantize(args) -> int:
    from .api import quantize
    if not args.calib:
        raise ValueError("--calib is required: representative inputs (.npy, .npz or a "
                         "directory of images)")
    data = load_inputs(args.calib, args.model)
    model = quantize(args.model, data, weight_bits=args.weight_bits,
                     activation_bits=args.activation_bits, per_channel=not args.per_tensor,
                     method=args.method, keep_float=args.keep_float or (),
                     symmetric_activations=args.symmetric_activations,
                     target_sqnr=args.target_sqnr,
                     output_aware=not args.no_output_aware, equalize=args.equalize,
                     bias_correction=args.bias_correction, adaround=args.adaround,
                     progress=None if not args.no_progress else False)
    model.save(args.output)
    counts = model.node_counts()
    print(f"wrote {args.output}: {len(counts['int8'])} int8 nodes, {len(counts['float'])} "
          f"float nodes, {os.path.getsize(args.output) / 1024:.1f} KiB")
    info = model.info
    if "target_sqnr" in info:
        sq = ", ".join(f"{k} {v} dB" for k, v in info["output_sqnr"].items())
        print(f"target {info['target_sqnr']} dB {'met' if info['target_met'] else 'NOT met'} "
              f"on {info['evaluated_on']}: {sq}")
        if info["kept_float"]:
            print(f"kept float: {', '.join(info['kept_float'])} (run time x"
                  f"{info['speed_cost']:.2f} of all-int8)")
        if info.get("widened_to_8_bits"):
            print(f"widened to 8 bits: {', '.join(info['widened_to_8_bits'])}")
    return 0


def _cmd_run(args) -> int:
    from .api import load
    model = load(args.model)
    feeds = {}
    for spec in args.input:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = None, spec
        value = load_array_file(path)
        if isinstance(value, dict):
            feeds.update(value)
        elif name is None:
            if len(model.inputs) != 1:
                raise ValueError(f"the model has inputs {model.input_names}: pass "
                                 f"--input NAME=FILE.npy for each")
            feeds[model.input_names[0]] = value
        else:
            feeds[name] = value
    outputs = model.run(feeds, as_dict=True)
    if args.output:
        if args.output.endswith(".npz") or len(outputs) > 1:
            np.savez(args.output, **outputs)
        else:
            np.save(args.output, next(iter(outputs.values())))
        print(f"wrote {args.output}")
    else:
        for name, value in outputs.items():
            print(f"{name}: {value.dtype}{list(value.shape)}")
            print(np.array2string(value, threshold=40, precision=5))
    return 0


def _cmd_inspect(args) -> int:
    from .api import load
    model = load(args.model)
    shapes = None
    if args.batch:
        shapes = {t.name: tuple(args.batch if not isinstance(d, int) else d for d in t.shape)
                  for t in model.inputs}
    print(model.summary(shapes))
    counts = {}
    for n in model.graph.nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    print("Ops: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda t: -t[1])))
    params = sum(int(a.size) for a in model.graph.initializers.values())
    print(f"Parameters: {params:,} ({model.weight_bytes / 1024:.1f} KiB stored)")
    return 0


def _cmd_info(args) -> int:
    from .cpu import cpu_info
    info = cpu_info()
    feats = ", ".join(k for k, v in info["features"].items() if v) or "none"
    print(f"machine: {info['machine']}\nfeatures: {feats}\n"
          f"kernel paths: {', '.join(info['available_isas'])} (active: {info['isa']})\n"
          f"threads: {info['num_threads']}")
    return 0


def _cmd_bench(args) -> int:
    from .tools import bench
    return bench.main(args)


def _cmd_report(args) -> int:
    from .tools import report
    return report.main(args)


# ---- parser -------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .tools.bench import target_sqnr_arg
    p = argparse.ArgumentParser(prog="qengine",
                                description="Fast, exact int8 inference on CPUs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="quantize and evaluate the bundled digits CNN (default)",
                       description="Quantize the bundled float model with bundled calibration "
                       "images; compare float and int8 accuracy, size and latency.")
    d.add_argument("--threads", type=_positive_int, help="kernel threads (default: all cores)")
    d.add_argument("--runs", type=_positive_int, default=200, help="timed runs per engine")
    d.set_defaults(func=_cmd_demo)

    q = sub.add_parser("quantize", help="quantize a float ONNX or .keras model to int8 ONNX",
                       description="Calibrate on representative inputs and write a "
                       "quantized ONNX (QDQ) model.")
    q.add_argument("model", help="float model: .onnx or .keras")
    q.add_argument("-o", "--output", required=True, help="output .onnx path")
    q.add_argument("--calib", help="calibration inputs: .npy, .npz (one array per input "
                   "name) or a directory of images")
    q.add_argument("--method", default="minmax",
                   choices=["minmax", "moving_average", "percentile", "mean_std", "mse",
                            "entropy"], help="activation calibration method")
    q.add_argument("--weight-bits", type=int, default=8, help="2..8 (default 8)")
    q.add_argument("--activation-bits", type=int, default=8, help="2..8 (default 8)")
    q.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    q.add_argument("--symmetric-activations", action="store_true")
    q.add_argument("--keep-float", nargs="+", metavar="NODE",
                   help="node names or op types to keep in float")
    q.add_argument("--target-sqnr", default=30.0, type=target_sqnr_arg, metavar="DB",
                   help="every output's SQNR on held-back samples; the fewest layers stay "
                   "float until it is met ('none' disables; default 30)")
    q.add_argument("--no-output-aware", action="store_true",
                   help="quantize mismatched Concats and Sigmoid-like outputs anyway")
    q.add_argument("--equalize", action="store_true", help="cross-layer equalization")
    q.add_argument("--bias-correction", action="store_true", help="empirical bias correction")
    q.add_argument("--adaround", action="store_true", help="learned weight rounding (slow)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_quantize)

    r = sub.add_parser("run", help="run a model on inputs from .npy/.npz files")
    r.add_argument("model")
    r.add_argument("--input", required=True, action="append", metavar="[NAME=]FILE",
                   help=".npy for one input (NAME=FILE.npy per input), or .npz of all")
    r.add_argument("--output", help="write outputs to .npy (one) or .npz")
    r.set_defaults(func=_cmd_run)

    i = sub.add_parser("inspect", help="ops, int8 vs float nodes, sizes, kernels and ISA")
    i.add_argument("model")
    i.add_argument("--batch", type=_positive_int, help="batch size to plan for (default 1)")
    i.set_defaults(func=_cmd_inspect)

    b = sub.add_parser("bench", help="time qengine against other engines on a model")
    from .tools.bench import add_arguments as add_bench
    add_bench(b)
    b.set_defaults(func=_cmd_bench)

    rp = sub.add_parser("report", help="per-layer error report of a quantized model")
    from .tools.report import add_arguments as add_report
    add_report(rp)
    rp.set_defaults(func=_cmd_report)

    f = sub.add_parser("info", help="CPU features, kernel paths and threads")
    f.set_defaults(func=_cmd_info)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo"] + list(argv or sys.argv[1:]))
    from .errors import QEngineError
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("qengine: interrupted", file=sys.stderr)
        return 130
    except (QEngineError, OSError, ValueError, TypeError, RuntimeError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"qengine: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
