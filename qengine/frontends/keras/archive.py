"""Keras model files read without Keras: ``.keras`` archives and legacy ``.h5`` files.

A ``.keras`` file is a zip of ``config.json`` (the model config, plain JSON), ``metadata.json``
(the Keras version) and ``model.weights.h5``. The h5 file holds one group per layer,
``layers/<key>/vars/0..n``, where ``<key>`` is not the layer's name but the snake_case of its
class, made unique in the order of ``model.layers`` (``conv2d``, ``conv2d_1``...); a nested
model's layers sit under ``layers/<key>/layers/...``. Recent Keras versions also write the
layer's name as an attribute of ``vars``; we use it when every group has it, else the rule.

A legacy ``.h5`` file (``model.save("m.h5")``, Keras 2 and 3) keeps the config as a JSON
attribute ``model_config`` and the weights under ``model_weights/<layer name>``, listed in
order by the attribute ``weight_names``.

Nothing here executes code from the file: JSON is parsed as data, arrays are read as arrays.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Optional

import numpy as np

from ...errors import ModelError
from .source import LayerDef, ModelDef, WeightStore, is_operation, parse_version

__all__ = ["read_keras_file", "HDF5_MAGIC"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ModelError("reading Keras files needs h5py (pip install h5py, or the "
                         "'keras' extra of qengine)") from None
    return h5py


def read_keras_file(path) -> ModelDef:
    """A ``.keras`` archive or a legacy ``.h5`` model file -> ModelDef (ModelError on a bad
    file, naming what is wrong)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"no Keras model file at {path!r}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_MAGIC:
        return _read_legacy_h5(path)
    if not zipfile.is_zipfile(path):
        if head[:4] == b"PK\x03\x04":
            raise ModelError(f"{path!r}: the .keras archive is truncated or corrupt (its zip "
                             f"directory cannot be read)")
        raise ModelError(f"{path!r} is not a Keras model: neither a .keras archive (zip) nor "
                         f"an HDF5 file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if CONFIG not in names:
                raise ModelError(f"{path!r}: the .keras archive has no {CONFIG}")
            config = _json(z.read(CONFIG), f"{path!r}: {CONFIG}")
            meta = _json(z.read(METADATA), f"{path!r}: {METADATA}") if METADATA in names \
                else {}
            weights = z.read(WEIGHTS) if WEIGHTS in names else None
            sharded = any(n.startswith("model.weights") and n.endswith(".json") for n in names)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
        raise ModelError(f"{path!r}: the .keras archive is truncated or corrupt "
                         f"({type(e).__name__}: {e})") from None
    except Exception as e:      # zlib.error and friends on a damaged member
        raise ModelError(f"{path!r}: cannot read the .keras archive "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) or \
            not isinstance(config.get("config"), dict):
        raise ModelError(f"{path!r}: {CONFIG} does not describe a Keras model (it needs "
                         f"'class_name' and 'config')")
    version = parse_version((meta or {}).get("keras_version") if isinstance(meta, dict)
                            else None)
    if weights is None:
        if sharded:
            raise ModelError(f"{path!r}: sharded weights (model.weights.json) are not "
                             f"supported; save the model as one .keras file")
        store: WeightStore = _MissingWeights(path)
    else:
        store = H5Store.open(weights, path)
    return ModelDef(config["class_name"], config["config"], store, version, source=path)


def _json(data: bytes, what: str):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{what} is not valid JSON ({e})") from None


class _MissingWeights(WeightStore):
    """An archive without model.weights.h5: fine for weightless models, an error as soon as
    a layer needs its weights."""

    origin = "archive"

    def __init__(self, path):
        self.path = path

    def weights(self, layer):
        raise ModelError(f"{self.path!r}: the archive has no weights file {WEIGHTS}, needed "
                         f"by {layer.describe()}")

    def sub(self, layer):
        return self


# -- .keras: model.weights.h5 ------------------------------------------------------------------
def _snake(name: str) -> str:
    """Keras' naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class H5Store(WeightStore):
    """The groups of one model in model.weights.h5 (``group`` holds ``layers/``)."""

    origin = "model.weights.h5"

    def __init__(self, group, path: str, where: str = ""):
        self.group, self.path, self.where = group, path, where
        self._keys: Optional[dict] = None

    @classmethod
    def open(cls, data: bytes, path: str) -> "H5Store":
        h5py = _h5py()
        try:
            f = h5py.File(io.BytesIO(data), "r")
        except Exception as e:
            raise ModelError(f"{path!r}: {WEIGHTS} is not a readable HDF5 file "
                             f"({type(e).__name__}: {e})") from None
        return cls(f, path)

    def _fail(self, msg: str) -> ModelError:
        return ModelError(f"{self.path!r}: {WEIGHTS}{' ' + self.where if self.where else ''}: "
                          f"{msg}")

    def _key_map(self, layers: list[LayerDef], sequential: bool) -> dict:
        """layer name -> group key under layers/."""
        if self._keys is not None:
            return self._keys
        groups = self.group.get("layers") if "layers" in self.group else None
        named = {}
        if groups is not None:
            for key in groups:
                vars_ = groups[key].get("vars") if hasattr(groups[key], "get") else None
                nm = vars_.attrs.get("name") if vars_ is not None else None
                if isinstance(nm, bytes):
                    nm = nm.decode("utf-8", "replace")
                if isinstance(nm, str):
                    named[nm] = key
        if groups is not None and named and len(named) == len(groups):
            self._keys = named
            return named
        # the saver's rule: snake_case(class name), uniquified along model.layers
        keys, used = {}, {}
        for i, l in enumerate(layers):
            if is_operation(l) or (sequential and i == 0 and l.class_name == "InputLayer"):
                continue
            base = _snake(l.class_name)
            if base in used:
                used[base] += 1
                keys[l.name] = f"{base}_{used[base]}"
            else:
                used[base] = 0
                keys[l.name] = base
        self._keys = keys
        return keys

    def bind(self, layers: list[LayerDef], sequential: bool) -> "H5Store":
        """Tell the store which layers its model has (the key rule needs their order)."""
        self._key_map(layers, sequential)
        return self

    def _layer_group(self, layer: LayerDef):
        if self._keys is None:
            raise self._fail("internal: the store was not bound to its layers")
        key = self._keys.get(layer.name)
        layers = self.group.get("layers") if "layers" in self.group else None
        if key is None or layers is None or key not in layers:
            return None
        return layers[key]

    def weights(self, layer: LayerDef) -> list[np.ndarray]:
        g = self._layer_group(layer)
        if g is None or "vars" not in g:
            return []
        vars_ = g["vars"]
        try:
            idx = sorted(int(k) for k in vars_)
        except ValueError:
            raise self._fail(f"the variables of {layer.describe()} are not numbered "
                             f"0..n") from None
        if idx != list(range(len(idx))):
            raise self._fail(f"the variables of {layer.describe()} are numbered {idx}, "
                             f"not 0..{len(idx) - 1}")
        try:
            return [np.asarray(vars_[str(i)][()]) for i in idx]
        except Exception as e:
            raise self._fail(f"cannot read the weights of {layer.describe()} "
                             f"({type(e).__name__}: {e})") from None

    def sub(self, layer: LayerDef) -> "H5Store":
        g = self._layer_group(layer)
        if g is None:
            raise self._fail(f"no weights group for nested model {layer.describe()}")
        return H5Store(g, self.path, f"{self.where}/{layer.name}".lstrip("/"))


# -- legacy .h5 -----------------------------------------------------------------------------
def _read_legacy_h5(path: str) -> ModelDef:
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise ModelError(f"{path!r}: cannot open the HDF5 file ({type(e).__name__}: {e}); "
                         f"it may be truncated") from None
    try:
        raw = f.attrs.get("model_config")
    except Exception as e:
        raise ModelError(f"{path!r}: unreadable HDF5 attributes ({e})") from None
    if raw is None:
        raise ModelError(f"{path!r} is an HDF5 file without a model config: a weights-only "
                         f"file (save_weights) cannot be imported without its model")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    config = _json(str(raw).encode("utf-8"), f"{path!r}: model_config")
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelError(f"{path!r}: model_config does not describe a Keras model")
    if "model_weights" not in f:
        raise ModelError(f"{path!r}: the file has no model_weights group")
    version = f.attrs.get("keras_version")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    store = LegacyH5Store(f["model_weights"], path)
    return ModelDef(str(config.get("class_name")), config["config"], store,
                    parse_version(version), source=path)


def _names(attr) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in list(attr)]


class LegacyH5Store(WeightStore):
    """``model_weights/<layer>``: datasets listed in order by ``weight_names``. A nested
    model's group lists every weight of its layers, ``<inner layer>/<var>``."""

    origin = "legacy h5"

    def __init__(self, group, path: str, nested: str = ""):
        self.group, self.path, self.nested = group, path, nested    # nested: the model name

    def _listed(self, g) -> list[str]:
        return _names(g.attrs.get("weight_names", []))

    def weights(self, layer: LayerDef) -> list[np.ndarray]:
        try:
            if not self.nested:
                if layer.name not in self.group:
                    return []
                g = self.group[layer.name]
                return [np.asarray(g[n][()]) for n in self._listed(g)]
            return [np.asarray(self.group[n][()]) for n in self._listed(self.group)
                    if self._owner(n) == layer.name]
        except Exception as e:
            raise ModelError(f"{self.path!r}: cannot read the weights of {layer.describe()} "
                             f"({type(e).__name__}: {e})") from None

    def _owner(self, weight_name: str) -> str:
        """The inner layer of a nested model's weight: ``d/kernel`` or ``model/d/kernel``
        (Keras versions differ)."""
        parts = weight_name.split("/")
        if len(parts) > 2 and parts[0] == self.nested:
            parts = parts[1:]
        return parts[0]

    def sub(self, layer: LayerDef) -> "LegacyH5Store":
        if self.nested:
            raise ModelError(f"{self.path!r}: models nested two deep are not supported in "
                             f"legacy .h5 files ({layer.describe()}); save as .keras")
        if layer.name not in self.group:
            raise ModelError(f"{self.path!r}: no weights group for nested model "
                             f"{layer.describe()}")
        return LegacyH5Store(self.group[layer.name], self.path, nested=layer.name)
