"""qengine's exceptions. Every failure a user can cause surfaces as one of these, with a message
that names the problem (node, op, shape, dtype); none is ever a crash."""
from __future__ import annotations

__all__ = [
    "QEngineError",
    "ModelError",
    "UnsupportedOpError",
    "UnsupportedLayerError",
    "InputError",
    "QuantizationError",
    "ISAError",
    "ExecutionError",
]


class QEngineError(Exception):
    """Base class of every qengine error."""


class ModelError(QEngineError, ValueError):
    """A model (file, graph, node or attribute) is malformed or inconsistent."""


class UnsupportedOpError(ModelError):
    """An operator that qengine does not implement (the message names op, domain and node)."""

    def __init__(self, op_type: str, domain: str = "", node: str = "", detail: str = ""):
        self.op_type, self.domain, self.node = op_type, domain or "ai.onnx", node
        msg = f"unsupported operator {op_type!r} (domain {self.domain!r}) at node {node!r}"
        super().__init__(msg + (f": {detail}" if detail else ""))


class UnsupportedLayerError(UnsupportedOpError):
    """A Keras layer (or one of its options) that qengine cannot import; the message names
    the layer and its class. ``op_type`` is the class, ``node`` the layer name."""

    def __init__(self, class_name: str, layer: str, detail: str = ""):
        self.op_type, self.domain, self.node = class_name, "keras", layer
        self.class_name, self.layer = class_name, layer
        msg = f"unsupported Keras layer {layer!r} of class {class_name}"
        ModelError.__init__(self, msg + (f": {detail}" if detail else ""))


class InputError(QEngineError, ValueError):
    """A run-time input has the wrong name, shape, dtype or value."""


class QuantizationError(QEngineError, ValueError):
    """Quantization parameters or calibration data that cannot give a sound quantizer."""


class ISAError(QEngineError, RuntimeError):
    """A kernel path (ISA) was requested that this CPU or build does not have."""


class ExecutionError(QEngineError, RuntimeError):
    """A node failed while a graph ran (the message names node, op and input shapes)."""
