"""Keras -> Graph, the entry qengine.api imports; the code lives in qengine/frontends/keras/
(archive and live-model reading, the config walker, one module per layer family)."""
from __future__ import annotations

from .keras import from_keras, is_keras_model, supported_layers

__all__ = ["from_keras", "is_keras_model", "supported_layers"]
