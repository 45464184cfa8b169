"""Frontends: foreign model formats -> qengine Graph."""
from __future__ import annotations

from .onnx_import import import_onnx

__all__ = ["import_onnx"]
