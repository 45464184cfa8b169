"""qengine: fast, exact int8 inference on CPUs.

    import qengine
    model = qengine.quantize("model.onnx", calibration_images)   # calibrate, quantize, compile
    probs = model.run(images)                                    # numpy in, numpy out
    model.save("model.int8.onnx")                                # standard ONNX (QDQ)
    model = qengine.load("model.int8.onnx")                      # bit-identical outputs
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import api
from .api import Model, QuantizedModel, TensorInfo, load, quantize, quantize_dynamic
from .cpu import cpu_info, get_num_threads, set_num_threads
from .session import InferenceSession, NodeArg, SessionOptions
from .errors import (ExecutionError, InputError, ISAError, ModelError, QEngineError,
                     QuantizationError, UnsupportedLayerError, UnsupportedOpError)


def from_keras(model_or_path, *, optimize: bool = True):
    """Import a Keras model (live, ``.keras`` or legacy ``.h5``) as a float qengine Graph.
    See :func:`qengine.frontends.keras.from_keras`. Importing qengine never imports Keras."""
    from .frontends import from_keras as _from_keras
    return _from_keras(model_or_path, optimize=optimize)


__all__ = [
    "__version__", "quantize", "quantize_dynamic", "load", "Model", "QuantizedModel",
    "TensorInfo", "from_keras", "report", "InferenceSession", "SessionOptions", "NodeArg",
    "cpu_info", "get_num_threads", "set_num_threads",
    "QEngineError", "ModelError", "UnsupportedOpError", "UnsupportedLayerError", "InputError",
    "QuantizationError", "ISAError", "ExecutionError",
]


def report(float_model, quantized_model, data, **options):
    """Where quantization lost fidelity: per-layer SQNR / cosine of activations and weights,
    worst first, optional sensitivity ranking; .table(), .to_json(), .plot() (a PNG).
    See qengine.tools.report.report for the options."""
    from .tools.report import report as _report
    return _report(float_model, quantized_model, data, **options)
