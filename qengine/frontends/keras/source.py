"""What a Keras model is made of, wherever it comes from: a config tree plus its weights.

The walker (walker.py) only sees these classes, so a live model, a ``.keras`` archive and a
legacy ``.h5`` file go down one code path:

- :class:`ModelDef`: the top model's class name and config (what ``model.get_config()`` gives;
  what ``config.json`` holds), the Keras version that wrote it, and a :class:`WeightStore`;
- :class:`LayerDef`: one entry of a config's ``layers`` list;
- :class:`WeightStore`: ``weights(layer)`` -> the layer's arrays in Keras' own order
  (trainable variables first, then non-trainable: kernel, bias / gamma, beta, moving mean,
  moving variance ...), ``sub(layer)`` -> the store of a nested model.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ...errors import ModelError

__all__ = ["ModelDef", "LayerDef", "WeightStore", "MODEL_CLASSES", "is_model_entry",
           "layer_defs", "is_operation"]

#: config class names of models (a nested model is walked like the top one)
MODEL_CLASSES = ("Functional", "Sequential", "Model")


@dataclass
class LayerDef:
    """One layer (or nested model) of a model config."""

    name: str
    class_name: str
    config: dict
    module: str = ""
    inbound: list = field(default_factory=list)    # raw inbound_nodes (one entry per call)

    @property
    def is_model(self) -> bool:
        return self.class_name in MODEL_CLASSES and isinstance(self.config.get("layers"), list)

    def describe(self) -> str:
        return f"layer {self.name!r} ({self.class_name})"


def is_model_entry(entry: dict) -> bool:
    return entry.get("class_name") in MODEL_CLASSES and \
        isinstance((entry.get("config") or {}).get("layers"), list)


def is_operation(layer: LayerDef) -> bool:
    """A Keras 3 functional op that is no Layer (``x + 3.0``, ``keras.ops.*`` on symbolic
    tensors): it owns no weights and is absent from ``model.layers``. Legacy .h5 configs
    drop the module; there an op is told by its config, which lacks the 'trainable' and
    'dtype' entries every layer config has."""
    if layer.module:
        return layer.module.startswith(("keras.src.ops", "keras.ops"))
    return layer.class_name != "InputLayer" and not (
        {"trainable", "dtype"} & set(layer.config))


def layer_defs(config: dict, what: str) -> list[LayerDef]:
    """The LayerDefs of a model config, validated enough for the walker to trust."""
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise ModelError(f"{what}: the model config has no 'layers' list")
    out = []
    for k, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise ModelError(f"{what}: entry {k} of 'layers' is not a layer config")
        cfg = entry.get("config")
        if not isinstance(cfg, dict):
            raise ModelError(f"{what}: layer entry {k} ({entry['class_name']}) has no config")
        name = entry.get("name") or cfg.get("name")
        if not isinstance(name, str) or not name:
            raise ModelError(f"{what}: layer entry {k} ({entry['class_name']}) has no name")
        inbound = entry.get("inbound_nodes") or []
        if not isinstance(inbound, list):
            raise ModelError(f"{what}: layer {name!r} has malformed inbound_nodes")
        out.append(LayerDef(name, entry["class_name"], cfg, str(entry.get("module") or ""),
                            inbound))
    dup = sorted(n for n, c in Counter(l.name for l in out).items() if c > 1)
    if dup:
        raise ModelError(f"{what}: layer name(s) {dup} are used twice")
    return out


class WeightStore:
    """The weights of one model's layers (subclasses: archive.H5Store, live.LiveStore...)."""

    #: what the weights come from, for messages
    origin = "model"

    def weights(self, layer: LayerDef) -> list[np.ndarray]:
        raise NotImplementedError

    def sub(self, layer: LayerDef) -> "WeightStore":
        raise NotImplementedError

    def bind(self, layers: list[LayerDef], sequential: bool) -> "WeightStore":
        """Called by the walker with the model's layers before any weights are asked for
        (a store that finds weights by position needs them)."""
        return self


class NoWeights(WeightStore):
    """For configs read without weights: every layer must be weightless."""

    origin = "config only"

    def weights(self, layer):
        return []

    def sub(self, layer):
        return self


@dataclass
class ModelDef:
    class_name: str
    config: dict
    weights: WeightStore
    keras_version: tuple = (3,)
    source: str = "model"                      # a path or "live model", for messages
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def keras_major(self) -> int:
        return int(self.keras_version[0]) if self.keras_version else 3

    @property
    def name(self) -> str:
        return str(self.config.get("name") or "keras_model")


def parse_version(text: Optional[str]) -> tuple:
    """'3.15.1' -> (3, 15, 1); unknown -> (3,) (the format we read by default)."""
    if not text:
        return (3,)
    parts = []
    for p in str(text).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or (3,)
