"""Live Keras models (Keras 3 on any backend; tf.keras best effort) -> ModelDef.

A live model is read through its public surface only: ``model.get_config()`` (the same
config a ``.keras`` file stores, so files and live models share one walker) and each layer's
``get_weights()`` (own variables first, trainable then non-trainable: the order the file
format uses too). Keras is never imported here: the model object brings it along.

tf.keras (Keras 2) models take the same path: their configs carry the older inbound-node
format and ``batch_input_shape``, both of which the walker reads. TensorFlow is not installed
where qengine is tested, so that path is best effort.
"""
from __future__ import annotations

import sys

import numpy as np

from ...errors import ModelError
from .source import LayerDef, ModelDef, WeightStore, parse_version

__all__ = ["is_keras_model", "read_live"]

_KERAS_ROOTS = ("keras", "tf_keras", "tensorflow")


def _mro_names(obj) -> list[tuple[str, str]]:
    return [(c.__module__ or "", c.__name__) for c in type(obj).__mro__]


def is_keras_model(obj) -> bool:
    """True for a Keras (3 or 2 / tf.keras) Model instance, without importing Keras."""
    return any(mod.split(".")[0] in _KERAS_ROOTS and name == "Model"
               for mod, name in _mro_names(obj))


def _keras_version(obj) -> tuple:
    root = type(obj).__module__.split(".")[0]
    mod = sys.modules.get(root)
    if root == "tensorflow":
        return (2,)
    return parse_version(getattr(mod, "__version__", None))


def _class_name(model) -> str:
    """Sequential / Functional for the two structured kinds, even when subclassed."""
    for mod, name in _mro_names(model):
        if mod.split(".")[0] in _KERAS_ROOTS and name in ("Sequential", "Functional"):
            return name
    return type(model).__name__


def read_live(model) -> ModelDef:
    cls = _class_name(model)
    if cls not in ("Sequential", "Functional"):
        raise ModelError(f"cannot import Keras model {getattr(model, 'name', '?')!r} of class "
                         f"{type(model).__name__}: only Sequential and functional models can "
                         f"be imported (a subclassed model's structure is Python code); "
                         f"rebuild it with keras.Input and layer calls")
    try:
        config = model.get_config()
    except Exception as e:
        raise ModelError(f"Keras model {getattr(model, 'name', '?')!r}: get_config() failed "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelError(f"Keras model {getattr(model, 'name', '?')!r}: its config lists no "
                         f"layers (is it built?)")
    return ModelDef(cls, config, LiveStore(model), _keras_version(model), source="live model")


class LiveStore(WeightStore):
    """Weights straight from the layer objects of a live model."""

    origin = "live model"

    def __init__(self, model):
        self.model = model
        self._by_name = None

    def _find(self, layer: LayerDef):
        if self._by_name is None:
            self._by_name = {}
            for lay in list(getattr(self.model, "layers", [])):
                self._by_name[getattr(lay, "name", None)] = lay
            for attr in ("_layers", "_operations"):   # the InputLayer of a Sequential
                for lay in list(getattr(self.model, attr, None) or []):
                    self._by_name.setdefault(getattr(lay, "name", None), lay)
        return self._by_name.get(layer.name)

    def weights(self, layer: LayerDef) -> list[np.ndarray]:
        obj = self._find(layer)
        if obj is None:
            if layer.class_name == "InputLayer":
                return []
            raise ModelError(f"live model: {layer.describe()} is in the config but not among "
                             f"the model's layers")
        get = getattr(obj, "get_weights", None)
        if get is None:
            return []
        try:
            return [np.asarray(w) for w in get()]
        except Exception as e:
            raise ModelError(f"live model: cannot read the weights of {layer.describe()} "
                             f"({type(e).__name__}: {e})") from None

    def sub(self, layer: LayerDef) -> "LiveStore":
        obj = self._find(layer)
        if obj is None:
            raise ModelError(f"live model: nested model {layer.describe()} not found")
        return LiveStore(obj)
