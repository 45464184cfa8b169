"""Mutations of .keras archives (a zip of config.json, metadata.json and model.weights.h5):
corrupted zips, missing or duplicated members, hostile values in the JSON config, damaged or
reshaped HDF5 weights."""
from __future__ import annotations

import io
import json
import random
import zipfile

from .mutate_onnx import NASTY_FLOATS, NASTY_INTS, bytes_mutation


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in members:
            z.writestr(name, blob)
    return buf.getvalue()


def _leaves(obj, path=()):
    """Every (path, value) of a JSON document's scalars and lists."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        yield path, obj
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    else:
        yield path, obj


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _hostile_json(value, rng: random.Random):
    if isinstance(value, bool):
        return rng.choice([not value, None, "yes", 2])
    if isinstance(value, int):
        return rng.choice(NASTY_INTS + [None, "3", 1.5])
    if isinstance(value, float):
        f = rng.choice(NASTY_FLOATS)
        return f if f == f and abs(f) != float("inf") else rng.choice([None, -1.0, 1e308])
    if isinstance(value, str):
        return rng.choice(["", "Conv2D", "Lambda", "relu", "nonexistent", "channels_first",
                           "same", "valid", "causal", "float16", "int8", "mixed_float16",
                           "__import__('os')", value * 3, None, 7])
    if isinstance(value, list):
        return rng.choice([[], value[:1], value + value[:1], [None] * len(value),
                           [rng.choice(NASTY_INTS) for _ in value], "notalist"])
    return rng.choice([None, {}, [], 0])


def config(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    members = _members(data)
    idx = [i for i, (n, _) in enumerate(members) if n == "config.json"]
    if not idx:
        return data, "no config.json"
    i = idx[0]
    doc = json.loads(members[i][1])
    leaves = list(_leaves(doc))
    descs = []
    for _ in range(rng.randint(1, 3)):
        path, value = rng.choice(leaves)
        if not path:
            continue
        new = _hostile_json(value, rng)
        _set(doc, path, new)
        descs.append(f"config {'/'.join(map(str, path))} = {str(new)[:30]}")
        leaves = list(_leaves(doc))
    members[i] = ("config.json", json.dumps(doc).encode())
    return _zip(members), "; ".join(descs)


def weights(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Damage model.weights.h5: bytes flipped or truncated, or a dataset replaced by one of
    another shape/dtype (h5py, when installed)."""
    members = _members(data)
    idx = [i for i, (n, _) in enumerate(members) if n.endswith(".h5")]
    if not idx:
        return data, "no weights file"
    i = idx[0]
    blob = members[i][1]
    if rng.random() < 0.5:
        try:
            blob, d = _reshape_dataset(blob, rng)
        except ImportError:
            blob, d = bytes_mutation(blob, rng)
    else:
        blob, d = bytes_mutation(blob, rng)
    members[i] = (members[i][0], blob)
    return _zip(members), f"weights: {d}"


def _reshape_dataset(blob: bytes, rng: random.Random) -> tuple[bytes, str]:
    import h5py
    import numpy as np
    f = h5py.File(io.BytesIO(blob), "r")
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    buf = io.BytesIO()
    out = h5py.File(buf, "w")
    target = rng.choice(names) if names else None
    desc = "no dataset"
    for n in names:
        arr = f[n][()]
        if n == target:
            choice = rng.randrange(4)
            if choice == 0 and getattr(arr, "ndim", 0):
                arr = arr[..., :max(arr.shape[-1] - 1, 0)]
            elif choice == 1:
                arr = np.asarray(arr).reshape(-1)
            elif choice == 2:
                arr = np.asarray(arr).astype(rng.choice([np.int64, np.float16, np.uint8]))
            else:
                arr = np.full(np.shape(arr), np.nan, np.float32)
            desc = f"dataset {n} -> {np.shape(arr)} {np.asarray(arr).dtype}"
        out.create_dataset(n, data=arr)
    out.close()
    f.close()
    return buf.getvalue(), desc


def members(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    ms = _members(data)
    choice = rng.randrange(4)
    if choice == 0 and ms:
        k = rng.randrange(len(ms))
        name = ms[k][0]
        del ms[k]
        return _zip(ms), f"{name} removed"
    if choice == 1 and ms:
        k = rng.randrange(len(ms))
        ms.append(ms[k])
        return _zip(ms), f"{ms[k][0]} duplicated"
    if choice == 2:
        ms.append(("../../evil.txt", b"x"))
        return _zip(ms), "path-traversal member"
    ms = [("config.json", b"[" * 100000 + b"]" * 100000)] + [m for m in ms if m[0] != "config.json"]
    return _zip(ms), "deeply nested config"


def mutate_archive(data: bytes, rng: random.Random) -> tuple[bytes, list]:
    fn = rng.choice([config, config, config, weights, weights, members, bytes_mutation])
    out, desc = fn(data, rng)
    return out, [desc]
