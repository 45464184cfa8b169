"""One call of one Keras layer, as its converter sees it, and the converter table.

A converter is ``fn(call: LayerCall) -> str | list[str]``: it reads the layer's config and
weights through ``call``, emits ONNX nodes with ``call.op`` and returns the output tensor(s).
Register it with ``@converter("Conv2D", ...)``; the walker looks classes up in
:data:`CONVERTERS` and raises UnsupportedLayerError (naming layer and class) for the rest.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from ...errors import ModelError, UnsupportedLayerError
from .builder import GraphBuilder
from .source import LayerDef, WeightStore

__all__ = ["LayerCall", "CONVERTERS", "OP_CONVERTERS", "converter", "op_converter",
           "as_tuple"]

CONVERTERS: dict[str, Callable] = {}
#: Keras operations applied to symbolic tensors in functional models (``x + 3.0``,
#: ``keras.ops.multiply``): their config class names clash with layers', so a table apart
OP_CONVERTERS: dict[str, Callable] = {}
_REQUIRED = object()


def converter(*class_names: str):
    """Decorator: ``fn`` converts layers of these config class names."""
    def deco(fn):
        for c in class_names:
            CONVERTERS[c] = fn
        return fn
    return deco


def op_converter(*class_names: str):
    """Decorator: ``fn`` converts Keras operations (module keras.src.ops.*) of these names."""
    def deco(fn):
        for c in class_names:
            OP_CONVERTERS[c] = fn
        return fn
    return deco


def as_tuple(v, n: int, what: str = "value") -> tuple:
    """Keras' int-or-sequence arguments (kernel_size=3 or (3, 3)) as an n-tuple of ints."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),) * n
    if isinstance(v, (list, tuple)) and len(v) == n and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
        return tuple(int(x) for x in v)
    raise ModelError(f"{what} must be an int or {n} ints, got {v!r}")


class LayerCall:
    """What a converter needs: config, weights, inputs, and a way to add named nodes."""

    def __init__(self, b: GraphBuilder, layer: LayerDef, store: WeightStore, path: str,
                 inputs: Sequence[str], keras_major: int, cache: dict):
        self.b, self.layer, self.store = b, layer, store
        self.path = path                 # "<outer model>/<layer name>": names nodes, constants
        self.inputs = list(inputs)
        self.keras_major = keras_major
        self._cache = cache              # shared by every call of the layer: one weight copy

    # -- errors ----------------------------------------------------------------------------
    @property
    def class_name(self) -> str:
        return self.layer.class_name

    def error(self, msg: str) -> ModelError:
        return ModelError(f"Keras layer {self.path!r} ({self.class_name}): {msg}")

    def unsupported(self, detail: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(self.class_name, self.path, detail)

    # -- config ----------------------------------------------------------------------------
    def cfg(self, key: str, default: Any = _REQUIRED, *alt: str) -> Any:
        """Config value ``key`` (or the first of the ``alt`` names Keras 2 used)."""
        c = self.layer.config
        for k in (key,) + alt:
            if k in c:
                return c[k]
        if default is _REQUIRED:
            raise self.error(f"its config lacks {key!r}")
        return default

    def cfg_tuple(self, key: str, n: int, default: Any = _REQUIRED, lo: int = 1) -> tuple:
        """An int-or-n-ints argument (kernel_size, strides...), every value >= ``lo``."""
        v = self.cfg(key, default)
        try:
            t = as_tuple(v, n, key)
        except ModelError as e:
            raise self.error(str(e)) from None
        if any(a < lo for a in t):
            raise self.error(f"{key}={v!r}: values must be >= {lo}")
        return t

    def cfg_int(self, key: str, default: Any = _REQUIRED, lo: int = 1) -> int:
        v = self.cfg(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.error(f"{key}={v!r} must be an integer >= {lo}")
        return v

    def cfg_float(self, key: str, default: Any = _REQUIRED, *alt: str) -> float:
        v = self.cfg(key, default, *alt)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"{key} must be a number, got {v!r}")
        return float(v)

    def cfg_choice(self, key: str, choices: Sequence[str], default: Any = _REQUIRED) -> str:
        v = self.cfg(key, default)
        v = v.lower() if isinstance(v, str) else v
        if v not in choices:
            raise self.unsupported(f"{key}={v!r} (supported: {', '.join(choices)})")
        return v

    def axis(self, x: str, key: str = "axis", default: Any = -1) -> int:
        """A single axis from the config, normalised against tensor ``x``'s rank."""
        a = self.cfg(key, default)
        if isinstance(a, (list, tuple)) and len(a) == 1:
            a = a[0]
        if isinstance(a, bool) or not isinstance(a, int):
            raise self.unsupported(f"{key}={a!r}: one integer axis is supported")
        r = self.rank(x)
        if not -r <= a < r:
            raise self.error(f"{key}={a} is out of range for a rank-{r} input")
        return a % r

    # -- tensors ---------------------------------------------------------------------------
    def shape(self, x: str) -> Optional[tuple]:
        return self.b.shape(x)

    def rank(self, x: str) -> int:
        s = self.b.shape(x)
        if s is None:
            raise self.error(f"the rank of its input {x!r} is unknown")
        return len(s)

    def dim(self, x: str, axis: int, what: str = "this dimension") -> int:
        """A dim that must be static (channel counts, feature sizes)."""
        s = self.b.shape(x)
        d = s[axis] if s is not None else None
        if not isinstance(d, int):
            raise self.error(f"{what} (axis {axis} of input shape "
                             f"{list(s) if s else '?'}) must be known")
        return d

    def one_input(self) -> str:
        if len(self.inputs) != 1:
            raise self.error(f"expects 1 input, got {len(self.inputs)}")
        return self.inputs[0]

    # -- weights ---------------------------------------------------------------------------
    def weights(self, expected: Sequence[tuple]) -> list[np.ndarray]:
        """The layer's arrays, checked against ``expected``: (label, shape) pairs whose
        shape dims may be None (unchecked)."""
        key = ("__weights__",)
        if key not in self._cache:
            self._cache[key] = self.store.weights(self.layer)
        got = self._cache[key]
        labels = ", ".join(lbl for lbl, _ in expected) or "none"
        if len(got) != len(expected):
            raise self.error(f"expected {len(expected)} weight array(s) ({labels}), the "
                             f"{self.store.origin} has {len(got)}"
                             + (f" with shapes {[list(w.shape) for w in got]}" if got else ""))
        out = []
        for (label, shape), w in zip(expected, got):
            w = np.asarray(w)
            if w.dtype.kind not in "fiu":
                raise self.error(f"weight {label!r} has dtype {w.dtype}, not numeric")
            if len(w.shape) != len(shape) or any(
                    e is not None and e != g for e, g in zip(shape, w.shape)):
                want = [("?" if e is None else e) for e in shape]
                raise self.error(f"weights shape mismatch: {label!r} has shape "
                                 f"{list(w.shape)}, expected {want}")
            out.append(w.astype(np.float32))
        return out

    def const(self, key: str, make: Callable[[], Any], dtype=None) -> str:
        """An initializer named ``<layer>/<key>``, made once per layer (shared calls reuse it)."""
        ck = ("__const__", key)
        if ck not in self._cache:
            self._cache[ck] = self.b.const(f"{self.path}/{key}", make(), dtype)
        return self._cache[ck]

    def tmp_const(self, key: str, array, dtype=None) -> str:
        """An initializer that is not cached (small per-call constants)."""
        return self.b.const(f"{self.path}/{key}", array, dtype)

    # -- nodes -----------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], what: str = "", **attrs) -> str:
        return self.b.op(op_type, inputs, f"{self.path}/{what or op_type}", **attrs)

    def transpose(self, x: str, perm: Sequence[int], what: str) -> str:
        return self.b.transpose(x, perm, f"{self.path}/{what}")
