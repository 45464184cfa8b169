"""qengine: fast, exact int8 inference on CPUs."""
from __future__ import annotations

__version__ = "0.1.0"

from .cpu import cpu_info, get_num_threads, set_num_threads
from .errors import (ExecutionError, InputError, ISAError, ModelError, QEngineError,
                     QuantizationError, UnsupportedLayerError, UnsupportedOpError)


def from_keras(model_or_path, *, optimize: bool = True):
    """Import a Keras model (live, ``.keras`` or legacy ``.h5``) as a float qengine Graph.
    See :func:`qengine.frontends.keras.from_keras`. Importing qengine never imports Keras."""
    from .frontends import from_keras as _from_keras
    return _from_keras(model_or_path, optimize=optimize)


__all__ = [
    "__version__", "cpu_info", "get_num_threads", "set_num_threads",
    "from_keras",
    "QEngineError", "ModelError", "UnsupportedOpError", "UnsupportedLayerError", "InputError",
    "QuantizationError", "ISAError", "ExecutionError",
]
