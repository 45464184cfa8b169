"""What a user may pass as model inputs, turned into {input name: array} feeds.

One run takes a single array (a one-input model), a list/tuple of arrays (positional), or a
{name: array} dict. Calibration data is any of those, or an iterable/generator of them (each
item one batch); a large array is split into batches so memory stays bounded.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..graph import Value

__all__ = ["as_feeds", "iter_batches"]


def _as_array(x, v: Value) -> np.ndarray:
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise InputError(f"input {v.name!r}: cannot convert {type(x).__name__} to an "
                             f"array: {e}") from None
        if a.dtype == object:
            raise InputError(f"input {v.name!r}: {type(x).__name__} is not a numeric array")
    if v.dtype is not None and a.dtype != v.dtype:
        if a.dtype.kind in "fiub" and np.dtype(v.dtype).kind in "fiu":
            a = a.astype(v.dtype)   # e.g. float64 images for a float32 model
        else:
            raise InputError(f"input {v.name!r} has dtype {a.dtype}, the model expects "
                             f"{np.dtype(v.dtype).name}")
    # a single sample without its batch dim, e.g. one (32, 32, 3) image for an (N, 32, 32, 3)
    # input: add the batch dim, as Keras' predict does for a single example
    if v.shape is not None and a.ndim == len(v.shape) - 1 and not isinstance(v.shape[0], int):
        a = a[None]
    return a


def as_feeds(inputs: Sequence[Value], data) -> dict[str, np.ndarray]:
    """One run's inputs as {name: array}; InputError naming what does not fit."""
    if type(data) is np.ndarray and len(inputs) == 1:   # the common call, kept cheap
        v = inputs[0]
        if data.dtype == v.dtype and (v.shape is None or data.ndim == len(v.shape)):
            return {v.name: data}
    names = [v.name for v in inputs]
    if isinstance(data, Mapping):
        unknown = [k for k in data if k not in names]
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; the model's inputs are {names}")
        missing = [k for k in names if k not in data]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}")
        return {v.name: _as_array(data[v.name], v) for v in inputs}
    if isinstance(data, (list, tuple)):
        if len(data) != len(inputs):
            raise InputError(f"got {len(data)} positional inputs, the model has {len(inputs)} "
                             f"({names})")
        return {v.name: _as_array(x, v) for v, x in zip(inputs, data)}
    if len(inputs) != 1:
        raise InputError(f"the model has {len(inputs)} inputs ({names}): pass a dict "
                         f"{{name: array}} or a list in that order")
    return {inputs[0].name: _as_array(data, inputs[0])}


def _split(feeds: dict[str, np.ndarray], inputs: Sequence[Value], max_batch: int):
    """Split feeds along a symbolic batch dim shared by every input into <= max_batch rows."""
    sizes = {a.shape[0] if a.ndim else None for a in feeds.values()}
    symbolic = all(v.shape is not None and len(v.shape) and not isinstance(v.shape[0], int)
                   for v in inputs)
    if not symbolic or len(sizes) != 1 or None in sizes:
        yield feeds
        return
    n = sizes.pop()
    if n == 0:
        raise InputError("calibration batch has 0 samples")
    for i in range(0, n, max_batch):
        yield {k: a[i:i + max_batch] for k, a in feeds.items()}


def iter_batches(inputs: Sequence[Value], data, max_batch: int = 64) -> Iterator[dict]:
    """Calibration data as a stream of feeds. `data`: an array, a {name: array} dict, a list
    of arrays/dicts (one batch each; for a multi-input model, a list of positional lists), or
    any iterable/generator of those."""
    if data is None:
        raise InputError("calibration data is required (a few representative inputs)")
    if isinstance(data, (np.ndarray, Mapping)):
        items: Iterable = [data]
    elif isinstance(data, (list, tuple)) and len(inputs) > 1 and data and \
            all(isinstance(x, np.ndarray) for x in data) and len(data) == len(inputs) and \
            not all(x.shape == data[0].shape for x in data):
        items = [data]  # one positional batch for a multi-input model
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        items = data
    else:
        raise InputError(f"calibration data must be an array, a dict, or an iterable of them; "
                         f"got {type(data).__name__}")
    count = 0
    for item in items:
        for feeds in _split(as_feeds(inputs, item), inputs, max_batch):
            count += 1
            yield feeds
    if count == 0:
        raise InputError("calibration data is empty")
