"""The public API: quantize / quantize_dynamic / load and the model object that runs.

This module wires the stages (frontends -> passes -> calibrate -> quantize -> compile ->
execute, docs/pipeline.md) and holds no logic of its own beyond argument handling.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .errors import InputError, ModelError, QuantizationError
from .graph import Graph, Value, format_shape
from .runtime.feeds import as_feeds

__all__ = ["quantize", "quantize_dynamic", "load", "Model", "QuantizedModel", "TensorInfo",
           "read_model"]

ModelLike = Union[str, os.PathLike, bytes, Graph, Any]


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, shape (ints, symbolic names such as 'N', or None) and
    numpy dtype."""
    name: str
    shape: tuple
    dtype: np.dtype

    def __str__(self) -> str:
        return f"{self.name}: {np.dtype(self.dtype).name}{format_shape(self.shape)}"


def read_model(model: ModelLike) -> Graph:
    """Any supported model form as a qengine Graph: a path (.onnx, .keras, .h5), ONNX bytes, an
    onnx.ModelProto, a live Keras model, or a Graph (returned as a copy)."""
    if isinstance(model, Graph):
        from .frontends.qoperator import rewrite_qoperator
        g = model.copy()
        if rewrite_qoperator(g):
            from .passes import simplify
            simplify(g, declared=set(g.values))
        return g
    if isinstance(model, (str, os.PathLike)) and not os.path.exists(os.fspath(model)):
        raise ModelError(f"model file {os.fspath(model)!r} does not exist")
    from .frontends import import_model
    return import_model(model)


def _prepare(graph: Graph) -> Graph:
    """Float graph -> the graph calibration sees: opset >= 13 (per-axis DequantizeLinear
    needs it), a Sum of two inputs spelled Add (Caffe2 exports), Transpose pairs cancelled
    (TensorFlow/Keras exports), BatchNorm and per-channel Mul/Add folded into the op before,
    the BatchNorms left made depthwise 1x1 convs (passes/fuse.py)."""
    from .passes.canonical import sum_pairs_to_add
    from .passes.fuse import batchnorm_to_depthwise, fold_channel_affines
    from .passes.opset import upgrade_opset
    from .passes.transpose import optimize_transposes
    g = upgrade_opset(graph, 13)
    sum_pairs_to_add(g)
    optimize_transposes(g)
    fold_channel_affines(g)
    if batchnorm_to_depthwise(g):
        fold_channel_affines(g)   # a scale and shift after the BatchNormalization join its conv
    return g


class Model:
    """A model qengine runs: its graph compiled for this CPU's kernels (per input shape, on
    first use). Float ops run in numpy, quantized ones on the int8 kernels."""

    def __init__(self, graph: Graph, *, num_threads: Optional[int] = None,
                 memory_limit: Optional[int] = None, info: Optional[dict] = None):
        from .runtime.executor import Executor
        if num_threads is not None and (isinstance(num_threads, bool) or
                                        not isinstance(num_threads, int) or num_threads < 1):
            raise InputError(f"num_threads must be a positive integer, got {num_threads!r}")
        self.graph = graph
        self.info = dict(info or {})
        self._executor = Executor(graph, num_threads=num_threads, memory_limit=memory_limit)
        self._raw = None

    # -- description ----------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(v.name, tuple(v.shape or ()), np.dtype(v.dtype or np.float32))
                for v in self.graph.inputs]

    @property
    def outputs(self) -> list[TensorInfo]:
        out = []
        for v in self.graph.outputs:
            v = self.graph.value(v.name) if v.shape is None else v
            out.append(TensorInfo(v.name, tuple(v.shape or ()), np.dtype(v.dtype or np.float32)))
        return out

    @property
    def input_names(self) -> list[str]:
        return self.graph.input_names

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_names

    # -- running ------------------------------------------------------------------------------
    def run(self, inputs, *, as_dict: bool = False, raw: bool = False):
        """Run the model on one batch. inputs: an array (one-input model), a list (in input
        order) or a {name: array} dict. Returns the output array (one output), a list of them,
        or {name: array} with as_dict. raw=True returns the quantized outputs (uint8/int8 codes)
        instead of dequantized float32 (see raw_output_params())."""
        if not (as_dict or raw):
            outs = self._executor.run_compiled(inputs)
            if outs is not None:
                return outs[0] if len(outs) == 1 else outs
        feeds = as_feeds(self.graph.inputs, inputs)
        ex = self._raw_executor() if raw else self._executor
        result = ex.run(feeds)
        if as_dict:
            return result
        values = [result[n] for n in ex.output_names]
        return values[0] if len(values) == 1 else values

    __call__ = run

    def predict(self, x, batch_size: int = 32, verbose: int = 0):
        """Keras-style: run in batches of `batch_size` along the first axis and concatenate."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        feeds = as_feeds(self.graph.inputs, x)
        n = {a.shape[0] for a in feeds.values() if a.ndim}
        if len(n) != 1:
            raise InputError(f"inputs disagree on the batch size: {sorted(n)}")
        total = n.pop()
        if total == 0:
            raise InputError("predict() got an empty batch")
        parts = []
        for i in range(0, total, batch_size):
            parts.append(self._executor.run({k: v[i:i + batch_size] for k, v in feeds.items()}))
        names = self._executor.output_names
        out = [np.concatenate([p[nm] for p in parts]) for nm in names]
        return out[0] if len(out) == 1 else out

    def run_profiled(self, inputs) -> tuple[dict, list]:
        """Run once and return (outputs, [(step op, node name, seconds, operations)])."""
        feeds = as_feeds(self.graph.inputs, inputs)
        ex = self._executor
        shapes = ex._check(feeds)
        program = ex.plan_for(shapes).plan.program
        times = np.zeros(len(program))
        out = ex.run(feeds, times)
        # a step that runs per image (Program.per_image) reports its time and work over them all
        steps = [(s.op, s.name, float(t), float(getattr(s, "ops", 0.0)) * program.images(i))
                 for i, (s, t) in enumerate(zip(program.steps, times))]
        return out, steps

    def _raw_executor(self):
        """An executor whose outputs are the quantized tensors behind DequantizeLinear outputs."""
        if self._raw is None:
            from .runtime.executor import Executor
            g = self.graph.copy()
            prod = g.producers_map()
            outs = []
            for v in g.outputs:
                p = prod.get(v.name)
                if p is not None and p.op_type == "DequantizeLinear" and \
                        p.inputs[0] not in g.initializers:
                    outs.append(g.value(p.inputs[0]))
                else:
                    outs.append(g.value(v.name))
            g.outputs = outs
            g.prune()
            self._raw = Executor(g, num_threads=self._executor.num_threads)
        return self._raw

    def raw_output_params(self) -> dict:
        """{output name: (scale, zero_point)} of the outputs raw=True returns quantized."""
        prod = self.graph.producers_map()
        res = {}
        for name in self.output_names:
            p = prod.get(name)
            if p is not None and p.op_type == "DequantizeLinear":
                init = self.graph.initializers
                res[name] = (init[p.inputs[1]], init.get(p.input(2)))
        return res

    # -- saving and describing ------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model as standard ONNX (a quantized model: QDQ form, opset >= 13), which
        qengine.load and onnxruntime read."""
        from .io import save_onnx
        save_onnx(self.graph, path, doc=f"qengine {self.info.get('summary', '')}".strip())

    def to_onnx(self):
        from .io import to_onnx
        return to_onnx(self.graph)

    def node_counts(self, input_shapes: Optional[dict] = None) -> dict:
        """{'int8': [...], 'float': [...]} node names for the given (or a batch-1) shape."""
        plan = self._plan(input_shapes).lowered
        return {"int8": list(plan.int8_nodes), "float": list(plan.float_nodes)}

    def _plan(self, input_shapes: Optional[dict] = None):
        shapes = input_shapes or {v.name: tuple(1 if not isinstance(d, int) else d
                                                for d in (v.shape or ()))
                                  for v in self.graph.inputs}
        return self._executor.plan_for(shapes).plan

    @property
    def weight_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.graph.initializers.values()))

    def summary(self, input_shapes: Optional[dict] = None) -> str:
        """A text summary: inputs, outputs, int8 and float nodes, kernels, sizes, arena."""
        from .cpu import active_isa, get_num_threads
        plan = self._plan(input_shapes)
        low = plan.lowered
        lines = [f"qengine model {self.graph.name!r}"]
        lines += ["Inputs:"] + [f"  {t}" for t in self.inputs]
        lines += ["Outputs:"] + [f"  {t}" for t in self.outputs]
        n_int8, n_float = len(low.int8_nodes), len(low.float_nodes)
        lines.append(f"Nodes: {n_int8} int8, {n_float} float")
        if low.float_nodes:
            shown = ", ".join(low.float_nodes[:12]) + (" ..." if n_float > 12 else "")
            lines.append(f"  float: {shown}")
        lines.append(f"Weights: {self.weight_bytes / 1024:.1f} KiB; activation arena "
                     f"{plan.activation_bytes(get_num_threads()) / 1024:.1f} KiB for input shapes "
                     f"{ {k: s for k, _, _, s in [(n, 0, 0, sh) for n, _, _, sh in plan.inputs]} }")
        lines.append(f"Kernels ({active_isa()}, {get_num_threads()} threads):")
        for node, label in plan.kernels:
            lines.append(f"  {label:<28} {node}")
        for key in ("target_sqnr", "output_sqnr", "kept_float", "speed_cost",
                    "output_aware_float"):
            if key in self.info:
                lines.append(f"{key}: {self.info[key]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<qengine.{type(self).__name__} {self.graph.name!r} inputs="
                f"{[str(t) for t in self.inputs]} outputs={[str(t) for t in self.outputs]}>")


QuantizedModel = Model


def _options(weight_bits, activation_bits, per_channel, weight_method, symmetric_activations,
             keep_float, output_aware=True):
    from .quant.qdq import QuantizeOptions
    if isinstance(keep_float, str):
        keep_float = [keep_float]
    return QuantizeOptions(weight_bits=weight_bits, activation_bits=activation_bits,
                           per_channel=bool(per_channel), weight_method=weight_method,
                           symmetric_activations=bool(symmetric_activations),
                           keep_float=frozenset(keep_float or ()),
                           output_aware=bool(output_aware))


def quantize(model: ModelLike, calibration_data, *, weight_bits: int = 8,
             activation_bits: int = 8, per_channel: bool = True, method="minmax",
             method_options: Optional[dict] = None, weight_method: str = "minmax",
             symmetric_activations: bool = False, keep_float: Iterable[str] = (),
             target_sqnr: Optional[float] = 30.0, output_aware: bool = True,
             equalize: bool = False, bias_correction: bool = False, adaround=False,
             fidelity_options: Optional[dict] = None,
             progress: Optional[bool] = None, num_threads: Optional[int] = None) -> Model:
    """Quantize a float model with calibration data and compile it for this CPU.

    model: a path (.onnx, .keras), ONNX bytes, onnx.ModelProto, a Keras model, or a Graph.
    calibration_data: an array, a list of arrays or of {input name: array} dicts, or any
    iterable/generator of those (a few hundred representative samples are plenty).
    weight_bits / activation_bits: 2..8. per_channel: per-output-channel weight scales.
    method: the activation observer ('minmax', 'moving_average', 'percentile', 'mean_std',
    'mse', 'entropy'; options via method_options, e.g. {'percentile': 99.99}), or a dict
    choosing it per tensor: {tensor name or producing op type: method or (method, options),
    '*': the default}.
    weight_method: 'minmax' or 'mse' (per channel). symmetric_activations: uint8 with zero
    point 128. keep_float: node names or op types to leave in float. progress: a progress bar
    over calibration (default: when stderr is a terminal).

    Fidelity (docs/fidelity.md):
    target_sqnr: dB every model output must reach on held-back calibration samples (15%, at
    most 32); the fewest layers are kept in float until it does, ranked by sensitivity.
    Model.info / summary() list them, the SQNR reached and the speed it cost. None disables.
    output_aware: a Concat of mismatched ranges, or a Sigmoid/HardSigmoid/... region, that no
    int8 op reads runs in float (detector heads; outputs stay float).
    equalize: cross-layer equalization of Conv -> ReLU -> Conv chains (incl. depthwise).
    bias_correction: per-channel bias shift measured on calibration samples.
    adaround: learned weight rounding (True, or a dict of options such as {'iterations':
    1000}); matters most at 4-bit weights.
    fidelity_options: {'holdout_fraction', 'max_holdout', 'max_trials', 'max_units',
    'keep_samples'} of the search (quant/recipe.py)."""
    from .quant.recipe import Recipe, run_recipe
    t0 = time.perf_counter()
    opts = _options(weight_bits, activation_bits, per_channel, weight_method,
                    symmetric_activations, keep_float, output_aware)
    recipe = Recipe.make(fidelity_options, target_sqnr=target_sqnr, equalize=bool(equalize),
                         bias_correction=bool(bias_correction), adaround=adaround)
    graph = _prepare(read_model(model))
    qgraph, extra = run_recipe(graph, calibration_data, opts, recipe, method=method,
                               method_options=method_options, progress=progress,
                               num_threads=num_threads)
    info = {"method": method, "weight_bits": opts.weight_bits,
            "activation_bits": opts.activation_bits, "per_channel": opts.per_channel}
    info.update(extra)
    info["quantize_seconds"] = round(time.perf_counter() - t0, 3)
    return Model(qgraph, num_threads=num_threads, info=info)


def quantize_dynamic(model: ModelLike, *, weight_bits: int = 8, per_channel: bool = True,
                     op_types: Sequence[str] = ("MatMul", "Gemm"),
                     num_threads: Optional[int] = None) -> Model:
    """Quantize weights offline and activations per run (their range measured on each input):
    no calibration data, for MatMul/Gemm-heavy models (the form onnxruntime's quantize_dynamic
    writes: DynamicQuantizeLinear + MatMulInteger)."""
    from .quant.dynamic import quantize_dynamic_graph
    graph = _prepare(read_model(model))
    qgraph = quantize_dynamic_graph(graph, weight_bits=weight_bits, per_channel=per_channel,
                                    op_types=tuple(op_types))
    return Model(qgraph, num_threads=num_threads, info={"dynamic": True})


def load(model: ModelLike, *, num_threads: Optional[int] = None,
         memory_limit: Optional[int] = None) -> Model:
    """Load a model to run: a quantized ONNX file (QDQ, as qengine and onnxruntime write it, or
    QOperator: QLinearConv, QLinearMatMul, MatMulInteger, ...), or a float one (runs in float)."""
    return Model(read_model(model), num_threads=num_threads, memory_limit=memory_limit)
