"""Keras -> qengine Graph, without TensorFlow (and, for files, without Keras).

    graph = from_keras(model)             # a live Keras 3 model (any backend) / tf.keras
    graph = from_keras("model.keras")     # a .keras archive, read with zipfile + json + h5py
    graph = from_keras("model.h5")        # a legacy full-model HDF5 file

The graph holds standard ONNX ops (opset 17) with Keras' layout at its edges: inputs and
outputs are channels-last exactly as ``model.predict`` sees them, named after the Keras
input and output layers, with a symbolic batch ``"N"``. Inside, spatial layers run
channels-first and the transpose pass removes the layout changes between them.

Modules: source (the model as config + weights), archive (files), live (model objects),
walker (config -> nodes), call (what a layer converter sees), layers / spatial /
activations (the converters), builder (node emission with shapes).
"""
from __future__ import annotations

import os

from ...errors import ModelError
from ...graph import Graph
from ...passes.shapes import infer_shapes
from ...passes.transpose import optimize_transposes
from .archive import read_keras_file
from .call import CONVERTERS
from .live import is_keras_model, read_live
from .walker import build_graph

__all__ = ["from_keras", "is_keras_model", "supported_layers"]


def from_keras(model_or_path, *, optimize: bool = True) -> Graph:
    """Import a Keras model (live object, ``.keras`` archive or legacy ``.h5`` path) as a
    float qengine Graph computing what ``model.predict`` computes.

    ``optimize=False`` keeps every layer's own Transposes (the literal translation).
    Raises ModelError for a bad file (naming the problem) and UnsupportedLayerError naming
    the layer and its class for a layer qengine cannot import. Never executes code from the
    model: Lambda layers and custom objects are refused.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        mdef = read_keras_file(model_or_path)
    elif is_keras_model(model_or_path):
        mdef = read_live(model_or_path)
    else:
        raise ModelError(f"from_keras expects a Keras model or the path of a .keras/.h5 "
                         f"file, got {type(model_or_path).__name__}")
    graph = build_graph(mdef)
    if optimize:
        optimize_transposes(graph)
    infer_shapes(graph, declared=set(graph.input_names) | set(graph.output_names))
    graph.prune()
    graph.validate()
    return graph


def supported_layers() -> list[str]:
    """Keras layer classes that from_keras converts (plus InputLayer and nested models)."""
    return sorted(CONVERTERS)
