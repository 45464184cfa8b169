"""Mutations of run-time inputs: what a caller may pass to Model.run / predict /
InferenceSession.run instead of the arrays the model expects.

`mutate(feeds, rng)` returns (call arguments, description, equivalent) where `equivalent` is
True when the mutated inputs hold exactly the values of `feeds` (another memory layout, a
Python list, a wider float type...): such a call must succeed and give the outputs of the
canonical call, bit for bit.
"""
from __future__ import annotations

import random

import numpy as np

SPECIAL = [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -0.0, 1e30]


def _unaligned(a: np.ndarray) -> np.ndarray:
    """The same values in a buffer that starts one byte past an aligned address."""
    buf = np.empty(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def _strided(a: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a larger array)."""
    big = np.empty(a.shape[:-1] + (a.shape[-1] * 2,), a.dtype) if a.ndim else None
    if big is None:
        return a
    big[..., ::2] = a
    return big[..., ::2]


def _reversed(a: np.ndarray) -> np.ndarray:
    """The same values through negative strides."""
    if not a.ndim:
        return a
    r = np.ascontiguousarray(a[::-1])
    return r[::-1]


def _layout(a: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    kind = rng.choice(["fortran", "strided", "reversed", "readonly", "unaligned", "transposed",
                       "big_endian", "float64", "list"])
    if kind == "fortran":
        return np.asfortranarray(a), kind
    if kind == "strided":
        return _strided(a), kind
    if kind == "reversed":
        return _reversed(a), kind
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b, kind
    if kind == "unaligned":
        return _unaligned(a), kind
    if kind == "transposed":
        return np.ascontiguousarray(a.T).T, kind
    if kind == "big_endian" and a.dtype.kind == "f":
        return a.astype(a.dtype.newbyteorder(">")), kind
    if kind == "float64" and a.dtype == np.float32:
        return a.astype(np.float64), kind
    if kind == "list" and a.size <= 4096:
        return a.tolist(), kind
    return a.copy(), "copy"


def _hostile(name: str, a: np.ndarray, rng: random.Random):
    """A value for input `name` that is wrong or extreme; the model may reject it."""
    choice = rng.randrange(15)
    if choice == 0:
        b = a.astype(np.float32, copy=True) if a.dtype.kind == "f" else a.copy()
        if b.dtype.kind == "f" and b.size:
            idx = rng.sample(range(b.size), min(b.size, rng.randint(1, 8)))
            b.reshape(-1)[idx] = rng.choice(SPECIAL)
        return b, "special values"
    if choice == 1:
        dt = rng.choice([np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex64,
                         np.int32, np.uint64])
        with np.errstate(all="ignore"):
            return a.astype(dt), f"dtype {np.dtype(dt).name}"
    if choice == 2:
        return np.array([str(x) for x in a.reshape(-1)[:8]]), "strings"
    if choice == 3:
        return np.empty(a.shape, dtype=object), "object array"
    if choice == 4 and a.ndim:
        return a.reshape(-1), f"flattened to {a.size}"
    if choice == 5:
        return a[None], "extra leading dim"
    if choice == 6 and a.ndim:
        shape = list(a.shape)
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, 2, 3, shape[i] + 1, max(shape[i] - 1, 0), 7])
        return np.zeros(shape, a.dtype), f"shape {shape}"
    if choice == 7:
        return np.float32(1.5), "a numpy scalar"
    if choice == 8:
        return None, "None"
    if choice == 9:
        return "image.png", "a string"
    if choice == 10 and a.ndim:
        return a.tolist()[:max(1, len(a) - 1)] + [[1.0]], "a ragged list"
    if choice == 11:
        return np.zeros((0,) + a.shape[1:], a.dtype), "empty batch"
    if choice == 12 and a.ndim > 1:
        return a[0], "batch dim dropped"
    if choice == 13:
        return {"nested": a}, "a dict value"
    return np.broadcast_to(a, a.shape), "read-only broadcast view"


def mutate(feeds: dict, rng: random.Random):
    """(kind, payload, description, equivalent): kind is 'dict', 'list', 'single' or 'bad'
    (payload passed to run() as is)."""
    names = list(feeds)
    if rng.random() < 0.4:            # same values, other form: must give the same outputs
        mut = {}
        descs = []
        for k in names:
            v, d = _layout(feeds[k], rng)
            mut[k] = v
            descs.append(f"{k}: {d}")
        form = rng.choice(["dict", "list", "single"] if len(names) == 1 else ["dict", "list"])
        payload = mut if form == "dict" else ([mut[k] for k in names] if form == "list"
                                              else mut[names[0]])
        return form, payload, "; ".join(descs), True
    r = rng.random()
    if r < 0.15:                      # container-level mistakes
        choice = rng.randrange(6)
        if choice == 0:
            return "bad", {**feeds, "not_an_input": feeds[names[0]]}, "extra key", False
        if choice == 1:
            return "bad", {}, "empty dict", False
        if choice == 2:
            return "bad", [feeds[k] for k in names] * 2, "too many positional inputs", False
        if choice == 3:
            return "bad", {1: feeds[names[0]]}, "int key", False
        if choice == 4:
            return "bad", (x for x in [feeds[names[0]]]), "a generator", False
        return "bad", set(), "a set", False
    k = rng.choice(names)
    v, d = _hostile(k, feeds[k], rng)
    return "dict", {**feeds, k: v}, f"{k}: {d}", False
