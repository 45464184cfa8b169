"""qengine report: where quantization lost fidelity, layer by layer.

    rep = qengine.report("model.onnx", "model.int8.onnx", images)   # or a qengine Model
    print(rep)                        # outputs, then the worst activations and weights
    rep.to_json("report.json"); rep.plot("report.png")              # SQNR along the depth
    rep = qengine.report(..., sensitivity=True)    # + each unit float alone / quantized alone

Activations are matched by tensor name through the QDQ structure (quant/layers.py) and
compared as the compiled int8 model computes them; weights by node name. SQNR in dB over all
samples; "local" is a tensor's own rounding and clipping (its float values fake-quantized).
Sensitivity units and measures: quant/sensitivity.py. Works on foreign QDQ models too
(onnxruntime's quantize_static); units whose float weights cannot be matched by node name
stay quantized in the "quantized alone" runs.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["report", "FidelityReport", "add_arguments", "main"]


def _num(x):
    """JSON has no infinity: an exact tensor's SQNR (+inf) is written as null."""
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


@dataclass
class FidelityReport:
    """The rows of a report; every list is worst first (sensitivity: most helpful first)."""
    outputs: list
    activations: list
    weights: list
    sensitivity: list = field(default_factory=list)
    samples: int = 0
    target_sqnr: float = 30.0

    # -- text ---------------------------------------------------------------------------------
    def table(self, top: Optional[int] = 20) -> str:
        f = _fmt
        lines = [f"qengine report: {self.samples} samples; SQNR in dB (higher is better), "
                 f"target {self.target_sqnr:g} dB"]
        lines.append("Outputs")
        lines.append(f"  {'output':<32} {'SQNR':>8} {'cosine':>9}")
        for r in self.outputs:
            lines.append(f"  {r['name']:<32} {f(r['sqnr_db']):>8} {r['cosine']:>9.5f}")
        acts = self.activations[:top] if top else self.activations
        lines.append(f"Activations, worst first ({len(acts)} of {len(self.activations)}; local "
                     f"= the tensor's own rounding)")
        lines.append(f"  {'tensor':<28} {'producer (op)':<30} {'depth':>5} {'SQNR':>8} "
                     f"{'local':>8} {'cosine':>9}")
        for r in acts:
            prod = f"{r['node']} ({r['op']})"
            lines.append(f"  {r['tensor'][:28]:<28} {prod[:30]:<30} {r['depth']:>5} "
                         f"{f(r['sqnr_db']):>8} {f(r['local_sqnr_db']):>8} {r['cosine']:>9.5f}")
        ws = self.weights[:top] if top else self.weights
        lines.append(f"Weights, worst first ({len(ws)} of {len(self.weights)})")
        lines.append(f"  {'node':<28} {'op':<14} {'bits':>4} {'per-ch':>6} {'SQNR':>8}")
        for r in ws:
            lines.append(f"  {r['node'][:28]:<28} {r['op']:<14} {r['bits']:>4} "
                         f"{'yes' if r['per_channel'] else 'no':>6} {f(r['sqnr_db']):>8}")
        if self.sensitivity:
            ss = self.sensitivity[:top] if top else self.sensitivity
            lines.append("Sensitivity: worst output SQNR with the unit kept float alone / "
                         "quantized alone, most helpful first")
            lines.append(f"  {'unit':<44} {'float alone':>11} {'quant alone':>11}  floats")
            for r in ss:
                u = f"{r['kind']} {r['name']} ({r['op']})"
                fl = ", ".join(r["float_nodes"][:4]) + (" ..." if len(r["float_nodes"]) > 4
                                                         else "")
                lines.append(f"  {u[:44]:<44} {f(r['float_alone_db']):>11} "
                             f"{f(r['quant_alone_db']):>11}  {fl}")
        return "\n".join(lines)

    __str__ = table

    # -- json ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def clean(rows):
            return [{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in rows]
        return {"samples": self.samples, "target_sqnr": self.target_sqnr,
                "outputs": clean(self.outputs), "activations": clean(self.activations),
                "weights": clean(self.weights), "sensitivity": clean(self.sensitivity)}

    def to_json(self, path=None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        return text

    # -- plot ---------------------------------------------------------------------------------
    def plot(self, path, annotate: int = 5) -> str:
        """A PNG: activation SQNR (and weight SQNR) along the network depth, the target as a
        line, the worst tensors named. Needs matplotlib."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise RuntimeError("plotting needs matplotlib: pip install matplotlib") from None
        acts = sorted(self.activations, key=lambda r: r["depth"])
        finite = [r["sqnr_db"] for r in self.activations + self.weights
                  if math.isfinite(r["sqnr_db"])]
        top = (max(finite) if finite else 60.0) + 5.0
        cap = lambda v: v if math.isfinite(v) else top            # noqa: E731
        fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
        ax.plot([r["depth"] for r in acts], [cap(r["sqnr_db"]) for r in acts], "o-", ms=3,
                lw=1, label="activation (int8 model vs float)")
        ax.plot([r["depth"] for r in acts], [cap(r["local_sqnr_db"]) for r in acts], ".",
                ms=3, alpha=0.6, label="activation, own rounding only")
        if self.weights:
            ax.plot([r["depth"] for r in self.weights], [cap(r["sqnr_db"]) for r in self.weights],
                    "s", ms=4, alpha=0.7, label="weights")
        outs = [r for r in self.outputs if r.get("depth") is not None]
        if outs:
            ax.plot([r["depth"] for r in outs], [cap(r["sqnr_db"]) for r in outs], "*", ms=10,
                    color="black", label="model output")
        ax.axhline(self.target_sqnr, color="red", ls="--", lw=1,
                   label=f"target {self.target_sqnr:g} dB")
        for r in self.activations[:annotate]:
            ax.annotate(r["tensor"], (r["depth"], cap(r["sqnr_db"])), fontsize=7,
                        xytext=(3, -10), textcoords="offset points")
        outs = ", ".join(f"{r['name']} {_fmt(r['sqnr_db'])} dB" for r in self.outputs[:3])
        ax.set_title(f"SQNR along the network ({self.samples} samples; outputs: {outs})",
                     fontsize=9)
        ax.set_xlabel("depth (node index in the float graph)")
        ax.set_ylabel("SQNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
        plt.close(fig)
        return os.fspath(path)


def _fmt(v) -> str:
    if v is None:
        return "exact"
    v = float(v)
    return "exact" if v == float("inf") else ("-inf" if not math.isfinite(v) else f"{v:.2f}")


# ---- building a report -----------------------------------------------------------------------
def report(float_model, quantized_model, data, *, sensitivity: bool = False,
           max_samples: int = 64, target_sqnr: float = 30.0,
           num_threads: Optional[int] = None) -> FidelityReport:
    """Compare a quantized model with its float original on `data` (anything quantize()
    accepts as calibration data; at most `max_samples` samples are used).

    float_model: a path, ONNX bytes/ModelProto, Keras model or Graph. quantized_model: a
    qengine Model, or a QDQ model in any of those forms (onnxruntime's included).
    sensitivity: also measure each unit (activation group, weighted node) kept float alone
    and quantized alone -- two compiled runs per unit."""
    from ..api import Model, _prepare, read_model
    from ..errors import InputError
    from ..quant.evaluate import OutputEvaluator
    from ..quant.layers import compare_layers
    from ..runtime.feeds import iter_batches
    from ..runtime.reference import ReferenceExecutor
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer, got {max_samples!r}")
    fgraph = _prepare(read_model(float_model))
    qgraph = quantized_model.graph if isinstance(quantized_model, Model) else \
        read_model(quantized_model)
    if fgraph.input_names != qgraph.input_names:
        raise InputError(f"the models' inputs differ: float {fgraph.input_names}, quantized "
                         f"{qgraph.input_names}")
    feeds, n = [], 0
    for f in iter_batches(fgraph.inputs, data, max_batch=16):
        rows = max((a.shape[0] if a.ndim else 1) for a in f.values())
        if n + rows > max_samples and len({a.shape[0] for a in f.values() if a.ndim}) == 1 \
                and all(a.ndim for a in f.values()):
            f = {k: a[:max_samples - n] for k, a in f.items()}
            rows = max_samples - n
        feeds.append(f)
        n += rows
        if n >= max_samples:
            break
    cmp = compare_layers(fgraph, qgraph, feeds, num_threads=num_threads)
    depth = {o: k + 1 for k, n in enumerate(fgraph.nodes) for o in n.outputs if o}
    outputs = [{"name": k, "sqnr_db": s.sqnr, "cosine": s.cosine, "max_abs_error": s.max_abs,
                "depth": depth.get(k, 0)} for k, s in cmp.outputs.items()]
    acts = [{"tensor": r.tensor, "node": r.node, "op": r.op, "depth": r.depth,
             "sqnr_db": r.sqnr, "local_sqnr_db": r.local_sqnr, "cosine": r.cosine,
             "max_abs_error": r.stats.max_abs, "scale": r.scale, "zero_point": r.zero_point}
            for r in cmp.activations.values()]
    weights = [{"node": r.node, "op": r.op, "depth": r.depth, "sqnr_db": r.sqnr,
                "cosine": r.cosine, "bits": int(math.ceil(math.log2(r.levels + 1))),
                "per_channel": r.per_channel} for r in cmp.weights.values()]
    key = lambda r: (r["sqnr_db"] if math.isfinite(r["sqnr_db"]) else 1e9)   # noqa: E731
    acts.sort(key=key)
    weights.sort(key=key)
    outputs.sort(key=key)
    sens = []
    if sensitivity:
        from ..quant.sensitivity import analyze
        ref = ReferenceExecutor(fgraph)
        refs = [ref.run(f) for f in feeds]
        ev = OutputEvaluator(feeds, refs, num_threads=num_threads)
        for s in analyze(qgraph, ev, float_graph=fgraph, float_alone=True, quant_alone=True):
            sens.append({"kind": s.unit.kind, "name": s.unit.name, "op": s.unit.op,
                         "float_alone_db": s.float_alone_db, "quant_alone_db": s.quant_alone_db,
                         "float_nodes": s.float_nodes})
        sens.sort(key=lambda r: -(r["float_alone_db"] if math.isfinite(r["float_alone_db"])
                                  else 1e9))
    return FidelityReport(outputs, acts, weights, sens, cmp.samples, float(target_sqnr))


# ---- the command -----------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("float_model", help="the float model (.onnx or .keras)")
    p.add_argument("quantized_model", help="its quantized QDQ .onnx (qengine's or "
                   "onnxruntime's)")
    p.add_argument("--data", required=True, help="inputs: .npy, .npz (one array per input "
                   "name) or a directory of images")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--plot", metavar="PATH", help="write SQNR along the depth as a PNG")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rank units kept float alone / quantized alone (2 runs each)")
    p.add_argument("--top", type=int, default=20, help="rows per table (0: all)")
    p.add_argument("--max-samples", type=int, default=64, help="samples used (default 64)")
    p.add_argument("--target-sqnr", type=float, default=30.0, help="the line on the plot")


def main(args) -> int:
    from .data_files import load_inputs
    data = load_inputs(args.data, args.float_model)
    rep = report(args.float_model, args.quantized_model, data, sensitivity=args.sensitivity,
                 max_samples=args.max_samples, target_sqnr=args.target_sqnr)
    print(rep.table(top=args.top or None))
    if args.json:
        rep.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        rep.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0
