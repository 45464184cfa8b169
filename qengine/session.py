"""qengine.InferenceSession: onnxruntime's session API on qengine, so code written for
onnxruntime switches with one import:

    import qengine as ort            # instead of: import onnxruntime as ort
    sess = ort.InferenceSession("model.int8.onnx")
    (probs,) = sess.run(None, {sess.get_inputs()[0].name: x})
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from .api import Model, load
from .errors import InputError

__all__ = ["InferenceSession", "NodeArg", "SessionOptions"]

_TYPE_NAMES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.float64): "tensor(double)",
               np.dtype(np.float16): "tensor(float16)", np.dtype(np.uint8): "tensor(uint8)",
               np.dtype(np.int8): "tensor(int8)", np.dtype(np.int16): "tensor(int16)",
               np.dtype(np.uint16): "tensor(uint16)", np.dtype(np.int32): "tensor(int32)",
               np.dtype(np.int64): "tensor(int64)", np.dtype(np.bool_): "tensor(bool)",
               np.dtype(np.uint32): "tensor(uint32)", np.dtype(np.uint64): "tensor(uint64)"}


@dataclass(frozen=True)
class NodeArg:
    """An input or output as onnxruntime describes it: name, shape (ints, dim names or None),
    and a type string such as 'tensor(float)'."""
    name: str
    shape: list
    type: str


class SessionOptions:
    """The subset of onnxruntime.SessionOptions qengine honours: intra_op_num_threads (0 =
    the default pool). Other attributes are accepted and ignored."""

    def __init__(self):
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.graph_optimization_level = None
        self.log_severity_level = 2


class InferenceSession:
    """Run an ONNX model (quantized or float) with onnxruntime's session interface."""

    def __init__(self, path_or_bytes: Union[str, os.PathLike, bytes],
                 sess_options: Optional[SessionOptions] = None,
                 providers: Optional[Sequence[Any]] = None, **kwargs):
        threads = getattr(sess_options, "intra_op_num_threads", 0) or None
        self._model: Model = load(path_or_bytes, num_threads=threads)

    @property
    def model(self) -> Model:
        return self._model

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(t.name, list(t.shape), _TYPE_NAMES.get(np.dtype(t.dtype), "tensor"))
                for t in self._model.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(t.name, list(t.shape), _TYPE_NAMES.get(np.dtype(t.dtype), "tensor"))
                for t in self._model.outputs]

    def get_providers(self) -> list[str]:
        return ["QEngineExecutionProvider"]

    def run(self, output_names: Optional[Sequence[str]], input_feed: dict,
            run_options: Any = None) -> list[np.ndarray]:
        """Outputs in the order of output_names (None: every output), as a list."""
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict {{name: array}}, got "
                             f"{type(input_feed).__name__}")
        result = self._model.run(input_feed, as_dict=True)
        names = list(output_names) if output_names else self._model.output_names
        unknown = [n for n in names if n not in result]
        if unknown:
            raise InputError(f"unknown output name(s) {unknown}; the model's outputs are "
                             f"{self._model.output_names}")
        return [result[n] for n in names]
