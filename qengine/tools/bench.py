"""qengine bench: time qengine's int8 model against other engines on one model, side by side.

    qengine bench MODEL [--threads 1,2] [--batch 1,8]
                  [--compare onnxruntime,onnxruntime-int8,fp32,onnxruntime-qdq,torch]
                  [--calib X.npy] [--float FLOAT.onnx] [--json OUT.json] [--plot OUT.png]
                  [--profile] [--rounds 10] [--warmup 2] [--min-time 0.05]

MODEL: a float ONNX (quantized here with --calib data, or random data with a warning), an int8
ONNX (loaded; float baselines need --float), a .keras file, or a built-in benchmark model
(resnet18, mobilenetv2, yolo, ocr, eltwise: benchmarks/models.py of a source checkout).

For every (threads, batch) configuration all engines are built, each output is checked against
the float reference (SQNR), and the engines are timed interleaved (qengine/tools/timing.py).
Reported: median and spread per engine, qengine's latency as a ratio of each engine's (the
median of per-round ratios), model sizes, achieved int8 GOPS vs this CPU's peak, and with
--profile the time per step and per op type. The JSON schema: docs/bench.md. What MODEL and
--calib resolve to: bench_subject.py; the engines: engines.py; the timing: timing.py.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from .bench_subject import (BUILTIN_MODELS, Subject, builtin_models_module,  # noqa: F401
                            calibration_batches, load_subject, prepare_calibration,
                            quantization_summary)
from .engines import ENGINES, missing_requirement, random_feeds, resolve_engines
from .profile import format_profile, peak_gops_per_core, profile_model
from .timing import ratio_stats, time_interleaved

__all__ = ["add_arguments", "main", "benchmark", "load_subject", "BUILTIN_MODELS",
           "SCHEMA_VERSION"]

SCHEMA_VERSION = "qengine-bench/1"
DEFAULT_COMPARE = ("onnxruntime", "onnxruntime-int8")
DEFAULT_SETTLE_SECONDS = 0.1     # onnxruntime's pool spins tens of ms after a run; 0.1 s
                                 # measured enough (docs/bench.md)
SQNR_CAP_DB = 200.0
_UNSET = object()            # --target-sqnr not given: the default of load_subject


# ---- one configuration ---------------------------------------------------------------------------
def _as_list(out) -> list:
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o, dtype=np.float64)
            for o in out]


def sqnr_db(reference: list, outputs: list) -> Optional[float]:
    """Signal-to-quantization-noise ratio (dB) of outputs against reference, all outputs
    pooled; None when shapes differ or the reference is all zeros; SQNR_CAP_DB when equal
    (JSON has no infinity)."""
    if len(reference) != len(outputs) or any(a.shape != b.shape for a, b in
                                             zip(reference, outputs)):
        return None
    sig = sum(float(np.sum(a * a)) for a in reference)
    err = sum(float(np.sum((a - b) ** 2)) for a, b in zip(reference, outputs))
    if sig == 0:
        return None
    return float(min(SQNR_CAP_DB, 10 * np.log10(sig / err))) if err > 0 else SQNR_CAP_DB


def _batch_ok(inputs, batch: int) -> bool:
    return all(not t.shape or not isinstance(t.shape[0], int) or t.shape[0] == batch
               for t in inputs)


def _stats_ms(stats) -> dict:
    return {"median_ms": stats.median * 1e3, "q1_ms": stats.q1 * 1e3, "q3_ms": stats.q3 * 1e3,
            "min_ms": stats.min * 1e3, "max_ms": stats.max * 1e3, "mean_ms": stats.mean * 1e3}


def _cpu_ratio(a, b) -> Optional[float]:
    """Median per-round ratio of CPU times, or None when a CPU time did not advance (a clock
    coarser than the calls)."""
    if any(x <= 0 for x in a) or any(x <= 0 for x in b):
        return None
    return ratio_stats(a, b).median


def run_config(subject: Subject, engines: list, threads: int, batch: int, *, rounds: int,
               warmup: int, min_round_seconds: float, profile: bool, profile_runs: int,
               peak_per_core: Optional[float], on_round=None, seed: int = 0,
               settle_seconds: float = 0.0, sleep=time.sleep) -> dict:
    """Build every engine for (threads, batch), check outputs, time them interleaved (with
    settle_seconds of idle before each engine's block when threads > 1: thread pools' spin
    tails), profile qengine (after the same pause); the JSON 'results' entry."""
    feeds = random_feeds(subject.model.inputs, batch, seed)
    runners = {}
    for e in engines:
        fn = e.build(subject, threads)
        runners[e.name] = (lambda fn=fn: fn(feeds))
    # builders may touch process-wide thread settings (fp32 loads a qengine model): set
    # qengine's pool for this configuration after all of them
    from ..cpu import set_num_threads
    set_num_threads(threads)
    outputs = {name: _as_list(r()) for name, r in runners.items()}
    ref_name = next((n for n in ("onnxruntime", "fp32", "torch") if n in outputs), None)
    fidelity = {"reference": ref_name, "sqnr_db": {}}
    if ref_name:
        for name, out in outputs.items():
            if name != ref_name:
                fidelity["sqnr_db"][name] = sqnr_db(outputs[ref_name], out)
    timings = time_interleaved(runners, rounds=rounds, warmup=warmup,
                               min_round_seconds=min_round_seconds,
                               settle_seconds=settle_seconds if threads > 1 else 0.0,
                               on_round=on_round, sleep=sleep)
    _, steps = subject.model.run_profiled(feeds)
    gop = sum(s[3] for s in steps) / 1e9
    peak = None if peak_per_core is None else peak_per_core * threads
    res: dict = {"threads": threads, "batch": batch, "engines": {}, "ratios": {},
                 "fidelity": fidelity}
    for name in runners:
        st = timings.stats(name)
        cpu = timings.cpu_stats(name)
        res["engines"][name] = dict(
            _stats_ms(st), per_image_ms=st.median * 1e3 / batch, rounds=st.n,
            calls_per_round=timings.calls_per_round[name],
            samples_ms=[s * 1e3 for s in timings.samples[name]],
            cpu_median_ms=cpu.median * 1e3, cpu_min_ms=cpu.min * 1e3)
        if name != "qengine":
            r = ratio_stats(timings.samples["qengine"], timings.samples[name])
            rc = _cpu_ratio(timings.cpu_samples["qengine"], timings.cpu_samples[name])
            res["ratios"][name] = {"latency_ratio": r.median, "q1": r.q1, "q3": r.q3,
                                   "speedup": 1.0 / r.median, "cpu_ratio": rc}
    qe = timings.stats("qengine").median
    res["gop"] = gop
    res["gops"] = gop / qe if qe > 0 and gop > 0 else None
    res["peak_gops"] = peak
    res["peak_fraction"] = res["gops"] / peak if res["gops"] and peak else None
    if profile and threads > 1 and len(runners) > 1 and settle_seconds:
        # the last engine timed may have been another one, whose pool spins for tens of
        # milliseconds and took a core from the profiled runs (ResNet-18 at 2 threads behind
        # onnxruntime fp32: wall 8.8 ms against 4.6 ms of steps); profile_model's first call
        # is untimed, as after each pause in the timing
        sleep(settle_seconds)
    res["profile"] = (profile_model(subject.model.run_profiled, feeds, profile_runs,
                                    peak_gops=peak) if profile else None)
    return res


# ---- the whole benchmark ---------------------------------------------------------------------------
def _versions() -> dict:
    """Versions of qengine and the engines' packages (read from metadata: importing torch
    only to learn its version would cost seconds)."""
    from importlib import metadata

    from .. import __version__
    v = {"qengine": __version__, "numpy": np.__version__, "python": platform.python_version()}
    for dist in ("onnx", "onnxruntime", "torch"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return v


def _loadavg() -> Optional[float]:
    """The 1-minute load average (other processes competing for the cores), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmark(model, *, calibration=None, float_model=None, torch_model=None,
              threads: Sequence[int] = (1,), batch: Sequence[int] = (1,),
              compare: Optional[Sequence[str]] = None, rounds: int = 10, warmup: int = 2,
              min_round_seconds: float = 0.05, profile: bool = False, profile_runs: int = 5,
              peak_gops: Optional[float] = None, progress: bool = True, print_fn=print,
              warn=None, command: Optional[str] = None, strict: bool = True,
              quantize_options: Optional[dict] = None,
              settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> dict:
    """Benchmark `model` (see load_subject) and return the result object of docs/bench.md.
    quantize_options: keyword arguments of qengine.quantize for a float model.
    settle_seconds: idle before each engine's timed block at more than one thread
    (time_interleaved: spinning thread pools of the engine before).
    compare: engine names (None: onnxruntime fp32 and int8 when the float model is known and
    onnxruntime is installed, else onnxruntime on qengine's int8 model, else nothing).
    strict: an engine that cannot run raises; otherwise it is skipped and listed."""
    from ..cpu import cpu_info, get_num_threads, set_num_threads
    warn = warn or (lambda m: print(m, file=sys.stderr))
    engines = resolve_engines(compare or ())
    for n in list(threads) + list(batch):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads and batch sizes must be positive integers, got {n!r}")
    subject = load_subject(model, calibration=calibration, float_model=float_model,
                           torch_model=torch_model, quantize_options=quantize_options,
                           warn=warn)
    # the subject's temporary files (onnxruntime-int8's models) go when the results are made,
    # and torch gets its thread count back (qengine's: saved_threads below)
    try:
        if compare is None:
            engines = [e for e in resolve_engines(DEFAULT_COMPARE + ("onnxruntime-qdq",))
                       if not missing_requirement(e, subject)][:3]
            if subject.float_onnx is not None:
                engines = [e for e in engines if e.name != "onnxruntime-qdq"]
        if any(e.name == "onnxruntime-int8" for e in engines) and not subject.calibration and \
                subject.float_onnx is not None:
            prepare_calibration(subject, None, warn)      # onnxruntime's quantize_static needs it
        skipped = []
        for e in list(engines[1:]):
            why = missing_requirement(e, subject)
            if why:
                if strict:
                    raise ValueError(why)
                skipped.append({"engine": e.name, "reason": why})
                engines.remove(e)
        info = cpu_info()
        # measured before any engine runs, while nothing of ours competes for the core
        per_core = peak_gops if peak_gops is not None else peak_gops_per_core(info["isa"])
        peak_source = "given" if peak_gops is not None else ("probe" if per_core else None)
        configs = [(t, b) for t in threads for b in batch if _batch_ok(subject.model.inputs, b)]
        if not configs:
            raise ValueError(f"nothing to time: the model's inputs have a fixed batch size "
                             f"({', '.join(str(t) for t in subject.model.inputs)}), not "
                             f"{', '.join(map(str, batch))}")
        for b in batch:
            if not _batch_ok(subject.model.inputs, b):
                skipped.append({"batch": b, "reason": f"the model's inputs have a fixed batch "
                                f"size: {[str(t) for t in subject.model.inputs]}"})
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(configs) * rounds, unit="round", leave=False, file=sys.stderr)
        saved_threads = get_num_threads()
        load_start = _loadavg()
        cores = os.cpu_count() or 1
        if load_start is not None and load_start + max(threads) > cores + 0.5:
            warn(f"qengine bench: warning: load average {load_start} on {cores} cores: other "
                 f"processes compete for the cores, wall times will be inflated (the 'cpu' "
                 f"ratio at 1 thread is not)")
        results = []
        try:
            for t, b in configs:
                if bar is not None:
                    bar.set_description(f"{subject.name} threads={t} batch={b}")
                results.append(run_config(
                    subject, engines, t, b, rounds=rounds, warmup=warmup,
                    min_round_seconds=min_round_seconds, profile=profile,
                    profile_runs=profile_runs, peak_per_core=per_core,
                    settle_seconds=settle_seconds,
                    on_round=(lambda _: bar.update(1)) if bar is not None else None))
        finally:
            if bar is not None:
                bar.close()
            set_num_threads(saved_threads)
        sizes = {e.name: e.size(subject) for e in engines}
        sizes["float"] = None if subject.float_onnx is None else len(subject.float_onnx)
        gop1 = results[0]["gop"] / results[0]["batch"] if results else None
        return {
            "schema": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "machine": {"cpu": _cpu_name(), "machine": info["machine"], "cores": os.cpu_count(),
                        "isa": info["isa"], "available_isas": info["available_isas"],
                        "peak_gops_per_core": per_core, "peak_source": peak_source,
                        "versions": _versions(),
                        "load_average": [load_start, _loadavg()]},
            "model": {"name": subject.name, "source": subject.source,
                      "inputs": [{"name": t.name, "shape": [d if isinstance(d, int) else str(d)
                                                            for d in t.shape],
                                  "dtype": np.dtype(t.dtype).name} for t in subject.model.inputs],
                      "gop_per_image": gop1,
                      "calibration": {"source": subject.calibration_source,
                                      "batches": len(subject.calibration),
                                      "samples": sum(int(next(iter(b.values())).shape[0])
                                                     for b in subject.calibration)},
                      "sizes_bytes": sizes,
                      "quantization": quantization_summary(subject.model)},
            "settings": {"threads": list(threads), "batch": list(batch), "rounds": rounds,
                         "warmup": warmup, "min_round_seconds": min_round_seconds,
                         "settle_seconds": settle_seconds,
                         "engines": [e.name for e in engines], "profile": bool(profile)},
            "results": results,
            "skipped": skipped,
            "notes": subject.notes,
        }
    finally:
        subject.close()


# ---- text output -----------------------------------------------------------------------------------
def _quantization_line(q: Optional[dict]) -> str:
    if not q:
        return "qengine model: -"
    line = f"qengine model: {q['int8_nodes']} int8 nodes, {q['float_nodes']} float"
    if q["float"]:
        line += " (" + ", ".join(q["float"][:6]) + (", ..." if len(q["float"]) > 6 else "") + ")"
    if "target_sqnr" in q:
        line += (f"; fidelity target {q['target_sqnr']} dB "
                 f"{'met' if q.get('target_met') else 'NOT met'}, "
                 f"{len(q.get('kept_float', []))} node(s) kept float for it")
    return line


def _mib(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 2 ** 20:.2f} MiB"


def _cpu_cell(ratio: Optional[dict], threads: int) -> str:
    if ratio is None or threads != 1 or ratio.get("cpu_ratio") is None:
        return ""
    return f"{ratio['cpu_ratio']:.2f}"


def format_result(result: dict) -> str:
    """The human-readable report of a benchmark() result."""
    m, mach = result["model"], result["machine"]
    lines = [f"model {m['name']} ({m['source']}); inputs "
             + ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in m["inputs"])]
    if m["gop_per_image"]:
        lines[-1] += f"; {m['gop_per_image']:.3f} GOP per image"
    lines.append("sizes: " + ", ".join(f"{k} {_mib(v)}" for k, v in m["sizes_bytes"].items()
                                       if v is not None))
    lines.append(_quantization_line(m.get("quantization")))
    peak = mach["peak_gops_per_core"]
    lines.append(f"cpu: {mach['cpu']}, {mach['cores']} cores; kernels {mach['isa']}"
                 + (f" (int8 peak {peak:.0f} GOPS per core, "
                    f"{'measured' if mach.get('peak_source') == 'probe' else 'given'})"
                    if peak else "")
                 + (f"; load average {mach['load_average'][0]} -> {mach['load_average'][1]}"
                    if mach["load_average"][0] is not None else ""))
    s = result["settings"]
    lines.append(f"timing: {s['warmup']} warm-up calls, {s['rounds']} interleaved rounds of "
                 f">= {s['min_round_seconds'] * 1e3:.0f} ms per engine; median and "
                 f"quartiles per call; qe/x = qengine latency / x (median of per-round ratios);"
                 f" cpu = the same with process CPU time (1 thread: load-independent)")
    head = (f"{'threads':>7} {'batch':>5}  {'engine':<18}{'median ms':>10}{'q1..q3 ms':>20}"
            f"{'min..max ms':>20}{'ms/image':>10}{'qe/x':>7}{'cpu':>6}{'SQNR dB':>9}")
    lines += ["", head, "-" * len(head)]
    for r in result["results"]:
        sq = r["fidelity"]["sqnr_db"]
        for i, (name, e) in enumerate(r["engines"].items()):
            ratio = r["ratios"].get(name)
            q = f"{e['q1_ms']:.3f}..{e['q3_ms']:.3f}"
            mm = f"{e['min_ms']:.3f}..{e['max_ms']:.3f}"
            snr = sq.get(name)
            snr_s = "ref" if name == r["fidelity"]["reference"] else \
                ("-" if snr is None else f"{snr:.1f}")
            lines.append(f"{r['threads'] if i == 0 else '':>7} {r['batch'] if i == 0 else '':>5}"
                         f"  {name:<18}{e['median_ms']:>10.3f}{q:>20}{mm:>20}"
                         f"{e['per_image_ms']:>10.3f}"
                         f"{'' if ratio is None else format(ratio['latency_ratio'], '.2f'):>7}"
                         f"{_cpu_cell(ratio, r['threads']):>6}{snr_s:>9}")
        if r["gops"]:
            pf = r["peak_fraction"]
            lines.append(f"{'':>15}qengine: {r['gops']:.1f} int8 GOPS"
                         + (f" = {pf * 100:.1f}% of {r['peak_gops']:.0f} GOPS peak" if pf else ""))
        if r["profile"]:
            lines.append(format_profile(r["profile"]))
    for sk in result["skipped"]:
        lines.append(f"skipped {sk.get('engine') or 'batch ' + str(sk.get('batch'))}: "
                     f"{sk['reason']}")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------------
def _int_list(text: str) -> list:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of positive integers, got "
                         f"{text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"expected a comma-separated list of positive integers, got {text!r}")
    return vals


def target_sqnr_arg(text: str) -> Optional[float]:
    """argparse type of --target-sqnr: a number of dB or 'none'."""
    import argparse
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of dB or 'none', got {text!r}") \
            from None


def add_arguments(p) -> None:
    p.add_argument("model", help="float ONNX, int8 ONNX, .keras, or a built-in model: "
                   + ", ".join(BUILTIN_MODELS))
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    p.add_argument("--compare", help="comma-separated engines to compare with qengine: "
                   + ", ".join(n for n in ENGINES if n != "qengine") + " (default: "
                   "onnxruntime,onnxruntime-int8, or onnxruntime-qdq for an int8 MODEL "
                   "without --float; 'none': qengine alone)")
    p.add_argument("--calib", help="calibration inputs (.npy, .npz, or a directory of images);"
                   " default: random data, with a warning")
    p.add_argument("--target-sqnr", type=target_sqnr_arg, default=_UNSET, metavar="DB",
                   help="qengine's fidelity target when quantizing a float MODEL (dB, or "
                   "'none': every supported node int8); default: qengine.quantize's 30 dB "
                   "with --calib data, none with random data")
    p.add_argument("--float", dest="float_model", metavar="FLOAT_MODEL",
                   help="the float ONNX model of a quantized MODEL (for float baselines)")
    p.add_argument("--json", help="write the results (docs/bench.md schema) to this file")
    p.add_argument("--plot", help="write a latency/speed-up chart (PNG; needs matplotlib)")
    p.add_argument("--profile", action="store_true",
                   help="per-step and per-op-type times, GOPS and share of peak")
    p.add_argument("--profile-runs", type=int, default=5, help="profiled runs (median)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=2, help="warm-up calls per engine")
    p.add_argument("--min-time", type=float, default=0.05,
                   help="seconds each engine runs per round (short calls repeat)")
    p.add_argument("--settle", type=float, default=DEFAULT_SETTLE_SECONDS, metavar="SECONDS",
                   help="idle before each engine's timed block at more than one thread, so "
                   "the previous engine's spinning pool sleeps (default %(default)s)")
    p.add_argument("--peak-gops", type=float, help="int8 GOPS per core to compare against "
                   "(default: measured at start by the active kernel path's peak probe)")
    p.add_argument("--isa", choices=["auto", "avx512vnni", "avx2", "ref", "neon", "neondot"],
                   help="qengine kernel path to time (default: QENGINE_ISA or the best one)")
    p.add_argument("--skip-unavailable", action="store_true",
                   help="skip engines that cannot run instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args) -> int:
    compare = None if args.compare is None else \
        [] if args.compare.strip().lower() in ("", "none") else args.compare.split(",")
    if args.rounds < 1 or args.warmup < 1 or args.min_time < 0 or args.profile_runs < 1 \
            or not args.settle >= 0:
        raise ValueError("--rounds, --warmup and --profile-runs must be >= 1, --min-time and "
                         "--settle >= 0")
    if args.plot:
        from .plot import require_matplotlib
        require_matplotlib()
    if args.isa:
        from ..cpu import available_isas, set_isa
        if args.isa != "auto" and args.isa not in available_isas():
            raise ValueError(f"--isa {args.isa}: this CPU or build has "
                             f"{', '.join(available_isas())}")
        set_isa(args.isa)
    result = benchmark(args.model, calibration=args.calib, float_model=args.float_model,
                       threads=_int_list(args.threads), batch=_int_list(args.batch),
                       compare=compare, rounds=args.rounds, warmup=args.warmup,
                       min_round_seconds=args.min_time, profile=args.profile,
                       profile_runs=args.profile_runs, peak_gops=args.peak_gops,
                       progress=not args.no_progress, strict=not args.skip_unavailable,
                       settle_seconds=args.settle,
                       quantize_options=None if args.target_sqnr is _UNSET else
                       {"target_sqnr": args.target_sqnr},
                       command="qengine " + " ".join(sys.argv[1:]))
    print(format_result(result))
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, allow_nan=False, default=_json_default)
        print(f"wrote {args.json}")
    if args.plot:
        from .plot import plot_result
        plot_result(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
