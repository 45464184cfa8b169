"""The engines `qengine bench` times, as a registry: each knows what it needs, how to build a
runner for a thread count, and how big its model is.

    qengine           the int8 model under test (quantized by qengine, or a loaded int8 ONNX)
    fp32              the float model in qengine itself (numpy float ops: what quantizing bought)
    onnxruntime       the float model in onnxruntime (CPU provider, all graph optimizations)
    onnxruntime-int8  onnxruntime's own int8: quantize_static (QDQ, per-channel s8 weights, u8
                      activations, the same calibration data), after its quant_pre_process
    onnxruntime-qdq   onnxruntime running qengine's int8 model (same file: engine vs engine)
    torch             the torch module in eager float (a built-in model, or one passed to the
                      Python API)

onnxruntime and torch are imported only when an engine needs them. Thread counts: qengine and
torch have process-wide settings, set when a runner is built (right before its configuration is
timed); onnxruntime gets one session per thread count (intra_op_num_threads, inter_op 1).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

__all__ = ["Subject", "Engine", "ENGINES", "ALIASES", "resolve_engines", "missing_requirement"]


@dataclass
class Subject:
    """The model being benchmarked and everything the engines derive from it."""
    name: str
    source: str                              # builtin | onnx | quantized-onnx | keras
    model: Any = None                        # the qengine Model (int8) under test
    float_onnx: Optional[bytes] = None       # the float model as ONNX, if known
    calibration: list = field(default_factory=list)   # [{input name: array}] batches
    calibration_source: str = "none"         # none (already quantized) | random | file | given
    torch_factory: Optional[Callable[[], Any]] = None
    workdir: Optional[str] = None            # temporary files of the engines, see path()
    notes: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)

    @property
    def input_names(self) -> list:
        return [t.name for t in self.model.inputs]

    def path(self, name: str) -> str:
        """A file in the subject's temporary directory, made on first use: the models
        onnxruntime-int8 writes (about 100 MB for ResNet-18). close() removes it."""
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="qengine-bench-")
        return os.path.join(self.workdir, name)

    def close(self) -> None:
        """Give back what the engines changed: torch's thread count, and the temporary
        directory (runners built from its files keep working: onnxruntime reads a model file
        when its session is made)."""
        if "torch_threads_before" in self.cache:
            import torch
            torch.set_num_threads(self.cache.pop("torch_threads_before"))
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.cache.pop("ort_int8_path", None)


@dataclass(frozen=True)
class Engine:
    name: str
    description: str
    needs: tuple                                     # requirements, see missing_requirement
    build: Callable[[Subject, int], Callable[[dict], Any]]
    size: Callable[[Subject], Optional[int]]


# ---- requirements ------------------------------------------------------------------------------
def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def missing_requirement(engine: Engine, subject: Subject) -> Optional[str]:
    """Why `engine` cannot run on `subject` (a sentence), or None when it can."""
    for need in engine.needs:
        if need == "float" and subject.float_onnx is None:
            return (f"{engine.name} needs the float model: this one is already quantized; pass "
                    f"--float FLOAT_MODEL.onnx")
        if need in ("onnxruntime", "torch") and not _has_module(need):
            return f"{engine.name} needs {need}: pip install {need}"
        if need == "torch_model" and subject.torch_factory is None:
            return (f"{engine.name} needs a torch model: use a built-in model name (resnet18, "
                    f"mobilenetv2, yolo, ocr) or qengine.tools.bench.benchmark(..., "
                    f"torch_model=module)")
    return None


# ---- qengine -----------------------------------------------------------------------------------
def _build_qengine(subject: Subject, threads: int):
    from ..cpu import set_num_threads
    set_num_threads(threads)
    return subject.model.run


def _qengine_bytes(subject: Subject) -> int:
    if "qengine_bytes" not in subject.cache:
        subject.cache["qengine_bytes"] = len(subject.model.to_onnx().SerializeToString())
    return subject.cache["qengine_bytes"]


def _build_fp32(subject: Subject, threads: int):
    from ..api import load
    from ..cpu import set_num_threads
    set_num_threads(threads)
    if "fp32_model" not in subject.cache:
        subject.cache["fp32_model"] = load(subject.float_onnx)
    return subject.cache["fp32_model"].run


def _float_bytes(subject: Subject) -> Optional[int]:
    return None if subject.float_onnx is None else len(subject.float_onnx)


# ---- onnxruntime -------------------------------------------------------------------------------
def _ort_session(subject: Subject, key: str, model, threads: int):
    """One onnxruntime session per (model, thread count), reused across batch sizes."""
    cached = subject.cache.get(("ort", key, threads))
    if cached is not None:
        return cached
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    run = subject.cache[("ort", key, threads)] = lambda feeds: sess.run(None, feeds)
    return run


def _build_ort_fp32(subject: Subject, threads: int):
    return _ort_session(subject, "fp32", subject.float_onnx, threads)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the harness's calibration batches."""

    def __init__(self, batches):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):   # not needed by MinMax calibration; present for the protocol
        pass


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs advice and per-tensor warnings on the root logger."""
    import logging
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


_ORT_QDQ_OPSET = 13    # per-channel DequantizeLinear (its axis attribute) needs opset 13


def _for_ort_quantizer(model_bytes: bytes, notes: list) -> bytes:
    """The float model as onnxruntime's quantize_static can take it. Older files (the model
    zoo's, IR version 3, opset 9) fail it twice: before IR 4 every initializer is also listed
    as a graph input, and the calibration session asks for them as inputs to feed ("Required
    inputs ... are missing"); and below opset 13 the per-channel QDQ model it writes is
    invalid (DequantizeLinear has no axis). So initializers leave the inputs (the benchmark
    feeds only the others and every engine takes them as constants: the model computes the
    same) and the opset is raised by onnx's version converter, with a note."""
    import onnx
    m = onnx.load_from_string(model_bytes)
    changed = False
    inits = {t.name for t in m.graph.initializer}
    if any(i.name in inits for i in m.graph.input):
        keep = [i for i in m.graph.input if i.name not in inits]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        m.ir_version = max(m.ir_version, 4)
        changed = True
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset < _ORT_QDQ_OPSET:
        from onnx import version_converter
        try:
            m = version_converter.convert_version(m, _ORT_QDQ_OPSET)
            notes.append(f"onnxruntime-int8 quantized the model converted from opset {opset} to "
                         f"{_ORT_QDQ_OPSET} (per-channel QDQ needs it)")
            changed = True
        except Exception as e:   # noqa: BLE001 -- quantize_static decides what it can take
            notes.append(f"onnx's version converter failed on opset {opset} "
                         f"({type(e).__name__}: {str(e)[:80]}); onnxruntime-int8 quantized "
                         f"the model as given")
    return m.SerializeToString() if changed else model_bytes


def ort_quantize_static(subject: Subject) -> str:
    """onnxruntime's own int8 model of the float model (path; made once per subject):
    quant_pre_process (shape inference, BatchNorm folding), then quantize_static in QDQ form
    with per-channel int8 weights, uint8 activations and MinMax calibration on the same data
    qengine calibrated on."""
    if "ort_int8_path" in subject.cache:
        return subject.cache["ort_int8_path"]
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    src = subject.path("float.onnx")
    with open(src, "wb") as f:
        f.write(_for_ort_quantizer(subject.float_onnx, subject.notes))
    pre = subject.path("float.pre.onnx")
    from onnxruntime.quantization.shape_inference import quant_pre_process
    try:
        # ONNX shape inference + onnxruntime's basic graph optimizations (BatchNorm folding,
        # constant folding). Symbolic shape inference is skipped: it imports torch and sympy
        # (seconds) and fails on some static graphs; ONNX's own inference covers static shapes.
        with _quiet_root_logger():
            quant_pre_process(src, pre, skip_symbolic_shape=True)
    except Exception as e:   # noqa: BLE001 -- any failure: quantize the model as given
        subject.notes.append(f"onnxruntime quant_pre_process failed ({type(e).__name__}: "
                             f"{str(e)[:80]}); onnxruntime-int8 quantized the model as given")
        pre = src
    dst = subject.path("onnxruntime-int8.onnx")
    with _quiet_root_logger():
        quantize_static(pre, dst, _Reader(subject.calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    subject.cache["ort_int8_path"] = dst
    subject.cache["ort_int8_bytes"] = os.path.getsize(dst)
    return dst


def _build_ort_int8(subject: Subject, threads: int):
    return _ort_session(subject, "int8", ort_quantize_static(subject), threads)


def _ort_int8_bytes(subject: Subject) -> Optional[int]:
    return subject.cache.get("ort_int8_bytes")


def _build_ort_qdq(subject: Subject, threads: int):
    if "qdq_bytes" not in subject.cache:
        subject.cache["qdq_bytes"] = subject.model.to_onnx().SerializeToString()
    return _ort_session(subject, "qdq", subject.cache["qdq_bytes"], threads)


# ---- torch -------------------------------------------------------------------------------------
def _build_torch(subject: Subject, threads: int):
    import torch
    subject.cache.setdefault("torch_threads_before", torch.get_num_threads())
    torch.set_num_threads(threads)
    if "torch_module" not in subject.cache:
        subject.cache["torch_module"] = subject.torch_factory().eval()
    module, names = subject.cache["torch_module"], subject.input_names

    def run(feeds):
        with torch.inference_mode():
            return module(*[torch.from_numpy(feeds[n]) for n in names])
    return run


def _torch_bytes(subject: Subject) -> Optional[int]:
    module = subject.cache.get("torch_module")
    if module is None:
        return None
    return int(sum(p.numel() * p.element_size() for p in module.parameters()) +
               sum(b.numel() * b.element_size() for b in module.buffers()))


ENGINES: dict = {e.name: e for e in [
    Engine("qengine", "qengine int8", (), _build_qengine, _qengine_bytes),
    Engine("fp32", "qengine float (numpy ops)", ("float",), _build_fp32, _float_bytes),
    Engine("onnxruntime", "onnxruntime fp32", ("float", "onnxruntime"), _build_ort_fp32,
           _float_bytes),
    Engine("onnxruntime-int8", "onnxruntime int8 (its quantize_static)",
           ("float", "onnxruntime"), _build_ort_int8, _ort_int8_bytes),
    Engine("onnxruntime-qdq", "onnxruntime on qengine's int8 model", ("onnxruntime",),
           _build_ort_qdq, _qengine_bytes),
    Engine("torch", "torch eager fp32", ("torch", "torch_model"), _build_torch, _torch_bytes),
]}

ALIASES = {"ort": "onnxruntime", "onnxruntime-fp32": "onnxruntime", "ort-fp32": "onnxruntime",
           "ort-int8": "onnxruntime-int8", "ort-qdq": "onnxruntime-qdq", "float": "fp32",
           "pytorch": "torch"}


def resolve_engines(names) -> list:
    """Engine names (aliases allowed, 'qengine' implied first) -> [Engine]; ValueError naming
    an unknown one and the known ones."""
    out = [ENGINES["qengine"]]
    for raw in names:
        key = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not key:
            continue
        if key not in ENGINES:
            raise ValueError(f"unknown engine {raw!r} in --compare; known: "
                             f"{', '.join(n for n in ENGINES if n != 'qengine')}")
        if ENGINES[key] not in out:
            out.append(ENGINES[key])
    return out


def random_feeds(inputs, batch: int, seed: int = 0) -> dict:
    """Inputs for timing: standard normal floats (integers: zeros), symbolic dims = batch."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in inputs:
        shape = tuple(batch if not isinstance(d, int) else d for d in t.shape)
        dt = np.dtype(t.dtype)
        feeds[t.name] = (rng.standard_normal(shape).astype(dt) if dt.kind == "f"
                         else np.zeros(shape, dt))
    return feeds
