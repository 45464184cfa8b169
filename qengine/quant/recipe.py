"""The quantization recipe behind qengine.quantize: calibrate, the optional post-training
steps, and the automatic fidelity target, in that order.

    [equalize]          cross-layer equalization of the float graph (quant/equalize.py)
    calibrate           on the calibration samples, some held back (quant/holdout.py)
    [adaround]          learned weight rounding (quant/adaround.py)
    [bias_correction]   per-channel bias shift of quantized layers (quant/bias_correction.py)
    target_sqnr         keep the fewest layers float until every output meets it on the
                        held-back samples (quant/mixed.py); else one quantize_graph
Output-aware decisions (quant/output_aware.py) happen inside quantize_graph.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import QuantizationError
from ..graph import Graph
from ..runtime.reference import ReferenceExecutor
from .calibrate import calibrate
from .holdout import CalibrationSplit
from .qdq import QuantizeOptions, quantize_graph

__all__ = ["Recipe", "run_recipe"]


@dataclass
class Recipe:
    """The fidelity options of qengine.quantize (see its docstring)."""
    target_sqnr: Optional[float] = 30.0
    equalize: bool = False
    bias_correction: bool = False
    adaround: Union[bool, dict] = False
    holdout_fraction: float = 0.15        # share of calibration samples held back
    max_holdout: int = 32                 # at most this many held-back samples
    max_trials: int = 8                   # bisection trials of the search (doubling: log2 n)
    max_units: int = 24                   # units measured per round of the search
    keep_samples: int = 256               # calibration samples kept for adaround / bias corr.

    def __post_init__(self):
        t = self.target_sqnr
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or
                              not np.isfinite(t)):
            raise QuantizationError(f"target_sqnr must be a number of dB or None, got {t!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise QuantizationError(f"holdout_fraction must be in (0, 1), got "
                                    f"{self.holdout_fraction!r}")
        if not isinstance(self.adaround, (bool, dict)):
            raise QuantizationError(f"adaround must be True/False or a dict of options, got "
                                    f"{self.adaround!r}")
        if isinstance(self.adaround, dict):
            known = {"iterations", "reg", "lr", "warmup", "max_rows", "seed", "layers"}
            unknown = sorted(set(self.adaround) - known)
            if unknown:
                raise QuantizationError(f"unknown adaround option(s) {unknown}; known: "
                                        f"{sorted(known)}")
        for name in ("max_holdout", "max_trials", "max_units", "keep_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise QuantizationError(f"{name} must be a positive integer, got {v!r}")

    @classmethod
    def make(cls, fidelity_options: Optional[dict] = None, **kw) -> "Recipe":
        """A Recipe from quantize()'s keywords plus its fidelity_options dict."""
        opts = dict(fidelity_options or {})
        tunable = {"holdout_fraction", "max_holdout", "max_trials", "max_units", "keep_samples"}
        unknown = sorted(set(opts) - tunable)
        if unknown:
            raise QuantizationError(f"unknown fidelity option(s) {unknown}; known: "
                                    f"{sorted(tunable)}")
        return cls(**kw, **opts)


def run_recipe(graph: Graph, data, options: QuantizeOptions, recipe: Recipe, *,
               method="minmax", method_options: Optional[dict] = None,
               progress: Optional[bool] = None,
               num_threads: Optional[int] = None) -> tuple[Graph, dict]:
    """A prepared float graph and calibration data -> (QDQ graph, info for Model.info)."""
    info: dict = {}
    if recipe.equalize:
        from .equalize import equalize
        graph, pairs = equalize(graph)
        info["equalized_pairs"] = pairs
    needs_samples = bool(recipe.adaround or recipe.bias_correction)
    split = CalibrationSplit(graph.inputs, data,
                             fraction=recipe.holdout_fraction if recipe.target_sqnr is not None
                             else 0.0, max_holdout=recipe.max_holdout,
                             keep=max(recipe.keep_samples if needs_samples else 0,
                                      recipe.max_holdout if recipe.target_sqnr is not None else 0))
    observers = calibrate(graph, split.calibration(), method=method, options=method_options,
                          progress=progress)
    weight_codes = bias_shift = None
    if recipe.adaround:
        from .adaround import adaround
        opts = recipe.adaround if isinstance(recipe.adaround, dict) else {}
        t0 = time.perf_counter()
        weight_codes = adaround(graph, observers, options, split.kept, **opts)
        info["adaround_layers"] = len(weight_codes)
        info["adaround_seconds"] = round(time.perf_counter() - t0, 3)
    if recipe.bias_correction:
        from .bias_correction import bias_correction
        bias_shift = bias_correction(graph, observers, options, split.kept,
                                     weight_codes=weight_codes)
        info["bias_corrected_layers"] = len(bias_shift)
    if recipe.target_sqnr is None:
        qgraph = quantize_graph(graph, observers, options, weight_codes=weight_codes,
                                bias_shift=bias_shift)
    else:
        qgraph, finfo = _meet_target(graph, observers, split, options, recipe, weight_codes,
                                     bias_shift, num_threads)
        info.update(finfo)
    if options.output_aware:
        from .output_aware import output_aware_float
        info["output_aware_float"] = output_aware_float(graph, observers, options)
    return qgraph, info


def _meet_target(graph, observers, split: CalibrationSplit, options, recipe, weight_codes,
                 bias_shift, num_threads) -> tuple[Graph, dict]:
    """Float references on the evaluation samples (and, when those are held-back samples,
    the final observers: calibration plus them), then the search."""
    from .evaluate import OutputEvaluator
    from .mixed import meet_target
    feeds, what = split.evaluation()
    final = observers
    held = what == "held-back samples"
    if held:
        final = copy.deepcopy(observers)

    def observe(name: str, value: np.ndarray) -> None:
        obs = final.get(name)
        if obs is not None and value.dtype == np.float32:
            obs.update(value)

    ref = ReferenceExecutor(graph)
    refs = [ref.run(f, on_value=observe if held else None) for f in feeds]
    n = sum(max(a.shape[0] if a.ndim else 1 for a in f.values()) for f in feeds)
    evaluator = OutputEvaluator(feeds, refs, num_threads=num_threads)
    res = meet_target(graph, observers, final, options, evaluator, float(recipe.target_sqnr),
                      weight_codes=weight_codes, bias_shift=bias_shift,
                      max_trials=recipe.max_trials, max_units=recipe.max_units,
                      evaluated_on=f"{n} {what}")
    return res.graph, res.info()
