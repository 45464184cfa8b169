"""qengine: fast, exact int8 inference on CPUs."""
from __future__ import annotations

__version__ = "0.1.0"

from .cpu import cpu_info, get_num_threads, set_num_threads
from .errors import (ExecutionError, InputError, ISAError, ModelError, QEngineError,
                     QuantizationError, UnsupportedOpError)

__all__ = [
    "__version__", "cpu_info", "get_num_threads", "set_num_threads",
    "QEngineError", "ModelError", "UnsupportedOpError", "InputError", "QuantizationError",
    "ISAError", "ExecutionError",
]
