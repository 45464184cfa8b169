"""What `qengine bench` times: the model under test (a built-in name, a float or int8 ONNX, a
Keras file, a qengine Model), its float form for the float baselines and onnxruntime-int8, and
the calibration data both quantizers use (given, from a file or image directory, or random
with a warning). load_subject resolves all of it into an engines.Subject.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from typing import Optional

import numpy as np

from .data_files import image_batch, load_array_file
from .engines import Subject, random_feeds

__all__ = ["BUILTIN_MODELS", "Subject", "builtin_models_module", "calibration_batches",
           "load_subject", "prepare_calibration", "quantization_summary"]

BUILTIN_MODELS = ("resnet18", "mobilenetv2", "yolo", "ocr", "eltwise")
RANDOM_CALIBRATION_SAMPLES = 8
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
              "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}


def builtin_models_module():
    """benchmarks/models.py of the source checkout this qengine runs from (not installed with
    the package: the built-in names need a checkout)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "models.py"
    if not path.exists():
        raise ValueError(f"built-in benchmark models live in benchmarks/models.py of a source "
                         f"checkout; {path} does not exist (pass an .onnx or .keras file)")
    mod = sys.modules.get("qengine_bench_models")
    if mod is None:
        spec = importlib.util.spec_from_file_location("qengine_bench_models", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["qengine_bench_models"] = mod
        spec.loader.exec_module(mod)
    return mod


def _load_arrays(path: str):
    """A --calib file's arrays, or None for a directory of images (it needs the model)."""
    if os.path.isdir(path):
        return None
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such calibration file: {path}")
    if not path.endswith((".npy", ".npz")):
        raise ValueError(f"--calib {path}: expected a .npy, a .npz or a directory of images")
    return load_array_file(path)


def calibration_batches(inputs, data, max_batch: int = 16) -> list:
    """Calibration data (an array for a one-input model, {name: array}, or a list of such
    dicts) as a list of {name: array} batches small enough for both qengine and onnxruntime
    (a fixed first dimension is respected)."""
    if isinstance(data, list) and all(isinstance(d, dict) for d in data):
        return data
    if isinstance(data, np.ndarray):
        if len(inputs) != 1:
            raise ValueError(f"the model has inputs {[t.name for t in inputs]}: calibrate with "
                             f"a .npz holding one array per input")
        data = {inputs[0].name: data}
    if not isinstance(data, dict):
        raise TypeError(f"calibration data must be an array or a dict of arrays, got "
                        f"{type(data).__name__}")
    missing = [t.name for t in inputs if t.name not in data]
    if missing:
        raise ValueError(f"calibration data lacks input(s) {missing}")
    n = {np.asarray(data[t.name]).shape[0] for t in inputs}
    if len(n) != 1:
        raise ValueError(f"calibration arrays disagree on the number of samples: {sorted(n)}")
    total = n.pop()
    fixed = inputs[0].shape[0] if inputs[0].shape and isinstance(inputs[0].shape[0], int) \
        else None
    step = fixed or max_batch
    batches = []
    for i in range(0, total - (total % step if fixed else 0), step):
        batches.append({t.name: np.ascontiguousarray(np.asarray(data[t.name])[i:i + step],
                                                     dtype=np.dtype(t.dtype))
                        for t in inputs})
    if not batches:
        raise ValueError(f"no calibration batch: {total} samples for a fixed batch of {fixed}")
    return batches


def _is_quantized_onnx(data: bytes, name: str) -> bool:
    import onnx

    from ..errors import ModelError
    try:
        m = onnx.load_from_string(data)
    except Exception as e:   # noqa: BLE001 -- protobuf's DecodeError and friends
        raise ModelError(f"cannot load ONNX model {name!r}: {type(e).__name__}: {e}") from None
    return any(n.op_type in _QUANT_OPS for n in m.graph.node)


def load_subject(model, *, calibration=None, float_model=None, torch_model=None,
                 quantize_options: Optional[dict] = None, warn=print) -> Subject:
    """Resolve what to benchmark: a built-in name, a path (.onnx float or int8, .keras), ONNX
    bytes / ModelProto, or a qengine Model. Quantizes a float model with `calibration`
    (array, {name: array}, list of dicts, or a file path), or with random data and a warning,
    passing `quantize_options` to qengine.quantize. Unless they say otherwise, random
    calibration turns the fidelity target off (target_sqnr=None): random inputs say nothing
    about the model's accuracy, so every supported node runs int8, as onnxruntime-int8's."""
    from .. import api
    torch_factory = None if torch_model is None else (lambda: torch_model)
    keras_path = None
    if isinstance(model, api.Model):
        subject = Subject(name=model.graph.name or "model", source="quantized-onnx",
                          model=model)
    else:
        if isinstance(model, (str, os.PathLike)) and not os.path.exists(model) and \
                str(model).lower() in BUILTIN_MODELS:
            spec = builtin_models_module().BENCHMARKS[str(model).lower()]
            data, name, source = spec.onnx().SerializeToString(), spec.name, "builtin"
            torch_factory = torch_factory or spec.torch
        elif isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if not os.path.exists(path):
                raise ValueError(f"{path!r} is neither a model file nor a built-in model "
                                 f"({', '.join(BUILTIN_MODELS)})")
            name = os.path.basename(path)
            if path.endswith((".keras", ".h5")):
                keras_path, source = path, "keras"
                try:
                    data = api.load(path).to_onnx().SerializeToString()
                except ModuleNotFoundError as e:
                    if "keras_import" not in str(e):
                        raise
                    raise ValueError(f"{path}: this qengine build has no Keras frontend "
                                     f"(qengine.frontends.keras_import)") from None
            else:
                with open(path, "rb") as f:
                    data = f.read()
                source = "onnx"
        elif isinstance(model, bytes):
            data, name, source = model, "model", "onnx"
        elif hasattr(model, "SerializeToString"):
            data, name, source = model.SerializeToString(), model.graph.name or "model", "onnx"
        else:
            raise TypeError(f"cannot benchmark a {type(model).__name__}: pass a path, ONNX bytes"
                            f", an onnx.ModelProto, a qengine Model or a built-in name")
        if source == "onnx" and _is_quantized_onnx(data, name):
            subject = Subject(name=name, source="quantized-onnx", model=api.load(data))
        else:
            subject = Subject(name=name, source=source, float_onnx=data)
    subject.torch_factory = torch_factory
    if float_model is not None:
        with open(os.fspath(float_model), "rb") as f:
            subject.float_onnx = f.read()
    if subject.model is None:                     # a float model: quantize it here
        prepare_calibration(subject, calibration, warn)
        options = dict(quantize_options or {})
        if subject.calibration_source == "random" and "target_sqnr" not in options:
            options["target_sqnr"] = None
            subject.notes.append("random calibration: fidelity target off (target_sqnr=None),"
                                 " every supported node int8")
        subject.model = api.quantize(keras_path or subject.float_onnx, subject.calibration,
                                     progress=False, **options)
    elif subject.float_onnx is not None and calibration is not None:
        prepare_calibration(subject, calibration, warn)     # for onnxruntime-int8
    return subject


def prepare_calibration(subject: Subject, calibration, warn=print) -> None:
    """Fill subject.calibration: from an array / dict / list of dicts, a file or directory
    path, or (None) random N(0, 1) samples of the float model's input shapes, with a warning."""
    from .. import api
    float_model = api.load(subject.float_onnx)
    inputs = float_model.inputs
    subject.calibration_source = "file" if isinstance(calibration, (str, os.PathLike)) \
        else "given"
    if isinstance(calibration, (str, os.PathLike)):
        arrays = _load_arrays(os.fspath(calibration))
        if arrays is None:
            arrays = image_batch(os.fspath(calibration), float_model)
        calibration = arrays
    if calibration is None:
        calibration = random_feeds(inputs, RANDOM_CALIBRATION_SAMPLES, seed=1)
        shapes = {k: list(v.shape) for k, v in calibration.items()}
        subject.calibration_source = "random"
        warn(f"qengine bench: warning: no --calib data; calibrating on "
             f"{RANDOM_CALIBRATION_SAMPLES} random N(0, 1) samples {shapes}: speed is "
             f"representative, accuracy is not")
        subject.notes.append("calibrated on random N(0, 1) data")
    subject.calibration = calibration_batches(inputs, calibration)


def quantization_summary(model) -> dict:
    """What the benchmarked qengine model runs in int8 and in float (batch-1 plan), and what
    its fidelity search decided (Model.info), so a ratio is never read without it."""
    counts = model.node_counts()
    out = {"int8_nodes": len(counts["int8"]), "float_nodes": len(counts["float"]),
           "float": counts["float"]}
    for key in ("target_sqnr", "target_met", "kept_float", "output_sqnr", "speed_cost"):
        if key in model.info:
            out[key] = model.info[key]
    return out
