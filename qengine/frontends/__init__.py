"""Frontends: foreign model formats -> qengine Graph.

``import_model`` is the one entry the API uses: it recognises ONNX (ModelProto, bytes, a
``.onnx`` path) and Keras (a live model, a ``.keras`` archive, a legacy ``.h5`` file) without
importing Keras or TensorFlow itself.
"""
from __future__ import annotations

import os

from ..errors import ModelError
from ..graph import Graph
from .onnx_import import import_onnx

__all__ = ["import_onnx", "from_keras", "import_model", "is_keras_source"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def from_keras(model_or_path, *, optimize: bool = True) -> Graph:
    """Keras -> Graph (see qengine.frontends.keras; imported lazily: it needs h5py)."""
    from .keras import from_keras as _from_keras
    return _from_keras(model_or_path, optimize=optimize)


def is_keras_source(model) -> bool:
    """True for a live Keras model or the path of a ``.keras`` / ``.h5`` file (by extension,
    else by content: a zip holding config.json, or an HDF5 file)."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        ext = os.path.splitext(path)[1].lower()
        if ext in (".keras", ".h5", ".hdf5"):
            return True
        if ext == ".onnx" or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(8)
        if head == _HDF5_MAGIC:
            return True
        if head[:4] == b"PK\x03\x04":
            import zipfile
            try:
                with zipfile.ZipFile(path) as z:
                    return "config.json" in z.namelist()
            except zipfile.BadZipFile:
                return True      # a damaged archive: the Keras reader names the problem
        return False
    from .keras.live import is_keras_model
    return is_keras_model(model)


def import_model(model) -> Graph:
    """Any supported model -> float Graph: Keras sources through from_keras, everything else
    through import_onnx (which names what it cannot read)."""
    if is_keras_source(model):
        return from_keras(model)
    if isinstance(model, Graph):
        raise ModelError("import_model got a qengine Graph: it is already imported")
    return import_onnx(model)
