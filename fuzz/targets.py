"""The fuzz targets: one entry of TARGETS per loader or entry point. Adding a loader (say, a
TFLite frontend) is one more Target here: which seeds it mutates, how a case is made from a
seed, and how a case is run.

A case is run in a worker process (fuzz/worker.py). What it may do:
  ok        loaded (and ran, where inputs could be made) without error;
  rejected  raised a qengine exception (QEngineError) with a non-empty message: the expected
            way to refuse a bad model or input;
and what it must not do (each counted as a failure of the run):
  error     raised anything else (a bare numpy/protobuf/Python error from deep inside);
  wrong     ran, but gave different outputs for inputs that hold the same values, or a model
            that stops giving its reference outputs after a rejected call;
  crash     killed the worker (segfault, abort, sanitizer report);
  hang      did not finish within the per-case timeout.
"""
from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import mutate_inputs, mutate_keras, mutate_onnx

MAX_INPUT_ELEMENTS = 1 << 22      # larger declared inputs are loaded but not run


class Wrong(AssertionError):
    """A property violation (not an exception a user would see): counted as 'wrong'."""


@dataclass
class Target:
    name: str
    doc: str
    seed_kinds: tuple                # manifest kinds this target mutates ("onnx", "qdq", "keras")
    make: Callable                   # (seed bytes, rng) -> (payload, [descriptions])
    run: Callable                    # (payload, seed name, rng, state) -> None; raises to fail
    weight: float = 1.0              # share of cases in a mixed run
    available: Callable = field(default=lambda: (True, ""))


# -- helpers -------------------------------------------------------------------------------------
def feeds_for(model, rng: random.Random):
    """Inputs the model declares, with symbolic dims set to 1 or 2; None when the declared
    inputs are too large to make (they are loaded, not run)."""
    feeds = {}
    for v in model.graph.inputs:
        shape = v.shape if v.shape is not None else (1,)
        dims = [d if isinstance(d, int) else rng.choice([1, 2]) for d in shape]
        if int(np.prod(dims, dtype=np.float64)) > MAX_INPUT_ELEMENTS:
            return None
        dt = np.dtype(v.dtype) if v.dtype is not None else np.dtype(np.float32)
        nrng = np.random.default_rng(rng.randrange(1 << 30))
        if dt.kind == "f":
            a = nrng.standard_normal(dims).astype(dt)
        elif dt.kind == "b":
            a = nrng.random(dims) < 0.5
        else:
            a = nrng.integers(0, 3, dims).astype(dt)
        feeds[v.name] = a
    return feeds


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        a, b, equal_nan=a.dtype.kind == "f")


def _check_same(ref: dict, got: dict, what: str) -> None:
    for k in ref:
        if k not in got or not _same(ref[k], got[k]):
            raise Wrong(f"{what}: output {k!r} differs")


def _exercise(model, rng: random.Random) -> None:
    """Run a loaded model the ways a user would: run, raw run, summary, save and reload."""
    import qengine
    feeds = feeds_for(model, rng)
    if feeds is None:
        return
    out = model.run(feeds, as_dict=True)
    r = rng.random()
    if r < 0.2:
        model.summary()
    elif r < 0.35:
        model.run(feeds, raw=True)
    elif r < 0.5:           # what we save, we load again, with the same outputs
        again = qengine.load(model.to_onnx().SerializeToString())
        _check_same(out, again.run(feeds, as_dict=True), "save/load round trip")
    elif r < 0.6:           # a batch of two equals two batches of one (per-shape plans),
        # exactly when every node runs on the int8 kernels (float ops go through BLAS, whose
        # summation order may depend on the batch)
        if all(a.ndim and a.shape[0] == 1 for a in feeds.values()) and model.graph.inputs and \
                all(v.shape and not isinstance(v.shape[0], int) for v in model.graph.inputs) \
                and not model.node_counts({k: a.shape for k, a in feeds.items()})["float"]:
            two = {k: np.concatenate([a, a]) for k, a in feeds.items()}
            out2 = model.run(two, as_dict=True)
            for k, v in out.items():
                if v.ndim and out2[k].shape[:1] == (2,) and v.shape[0] == 1:
                    if not (_same(out2[k][:1], v) and _same(out2[k][1:], v)):
                        raise Wrong(f"batch of two differs from batch of one at {k!r}")


# -- ONNX (float and QDQ): qengine.load ---------------------------------------------------------
def onnx_make(seed: bytes, rng: random.Random):
    return mutate_onnx.mutate_model(seed, rng)


def onnx_run(payload: bytes, seed_name: str, rng: random.Random, state: dict) -> None:
    import qengine
    kwargs = {}
    if rng.random() < 0.2:
        kwargs["num_threads"] = rng.choice([1, 2])
    if rng.random() < 0.1:
        kwargs["memory_limit"] = rng.choice([0, 1, 4096, 1 << 20])
    model = qengine.load(payload, **kwargs)
    _exercise(model, rng)


# -- quantize: calibrate and quantize a mutated float model --------------------------------------
def quantize_run(payload: bytes, seed_name: str, rng: random.Random, state: dict) -> None:
    import qengine
    from qengine.api import read_model
    g = read_model(payload)
    probe = type("M", (), {"graph": g})()
    calib = [feeds_for(probe, rng) for _ in range(2)]
    if calib[0] is None:
        return
    model = qengine.quantize(g, calib, progress=False, target_sqnr=None,
                             method=rng.choice(["minmax", "minmax", "percentile", "entropy"]),
                             weight_bits=rng.choice([8, 8, 4]))
    _exercise(model, rng)


# -- run-time inputs: valid models, hostile arguments ---------------------------------------------
def inputs_make(seed: bytes, rng: random.Random):
    return seed, []


def _reference(state: dict, seed_name: str, blob: bytes, rng: random.Random):
    """The model of this seed (loaded once per worker), its canonical feeds and outputs."""
    import qengine
    cache = state.setdefault("models", {})
    if seed_name not in cache:
        model = qengine.load(blob)
        feeds = feeds_for(model, random.Random(seed_name))
        int8 = not model.node_counts({k: a.shape for k, a in feeds.items()})["float"]
        cache[seed_name] = (model, feeds, model.run(feeds, as_dict=True), int8)
    return cache[seed_name]


def inputs_run(payload: bytes, seed_name: str, rng: random.Random, state: dict) -> None:
    import qengine
    model, feeds, ref, int8 = _reference(state, seed_name, payload, rng)
    form, args, desc, equivalent = mutate_inputs.mutate(feeds, rng)
    state["last_desc"] = desc
    call = rng.choice(["run", "run", "session", "predict", "call"])
    try:
        if call == "session":
            sess = state.setdefault("sessions", {}).get(seed_name)
            if sess is None:
                sess = state["sessions"][seed_name] = qengine.InferenceSession(payload)
            if form == "list":
                args = dict(zip(model.input_names, args))
            elif form == "single":
                args = {model.input_names[0]: args}
            got = dict(zip(model.output_names, sess.run(None, args)))
        elif call == "predict" and len(feeds) == 1:
            # smaller batches than the input's are exact only on the int8 kernels (BLAS may
            # sum in another order for another batch size)
            bs = (rng.choice([1, 2, 32]) if int8 else 32) if equivalent else \
                rng.choice([1, 0, -1, True, 2.5, 32])
            got = model.predict(args, batch_size=bs)
            got = dict(zip(model.output_names, got if isinstance(got, list) else [got]))
        elif call == "call":
            got = model(args, as_dict=True)
        else:
            got = model.run(args, as_dict=True)
        if equivalent:
            _check_same(ref, got, f"equivalent inputs ({desc})")
    finally:
        # whatever happened, the model still gives its reference outputs
        _check_same(ref, model.run(feeds, as_dict=True), f"after a call with {desc}")


# -- Keras archives -------------------------------------------------------------------------------
def _keras_available():
    import qengine.frontends as F
    found = hasattr(F, "from_keras")
    return (found, "" if found else "this tree has no Keras frontend")


def keras_make(seed: bytes, rng: random.Random):
    return mutate_keras.mutate_archive(seed, rng)


def keras_run(payload: bytes, seed_name: str, rng: random.Random, state: dict) -> None:
    import qengine
    if "tmpdir" not in state:      # one directory per worker, inside the run's directory
        state["tmpdir"] = tempfile.mkdtemp(prefix="qe_fuzz_", dir=os.environ.get("QE_FUZZ_TMP"))
        atexit.register(shutil.rmtree, state["tmpdir"], True)
    path = Path(state["tmpdir"]) / "case.keras"
    path.write_bytes(payload)
    try:
        model = qengine.load(str(path))
        _exercise(model, rng)
    finally:
        path.unlink(missing_ok=True)


TARGETS = {t.name: t for t in [
    Target("onnx", "mutated float ONNX models -> qengine.load -> run / save / reload",
           ("onnx",), onnx_make, onnx_run, weight=3.0),
    Target("qdq", "mutated quantized (QDQ) ONNX models -> qengine.load -> int8 kernels",
           ("qdq",), onnx_make, onnx_run, weight=3.5),
    Target("qop", "mutated QOperator / dynamic-quantized ONNX models -> qengine.load -> run",
           ("qop",), onnx_make, onnx_run, weight=1.5),
    Target("quantize", "mutated float ONNX models -> qengine.quantize (calibrate) -> run",
           ("onnx",), onnx_make, quantize_run, weight=1.0),
    Target("inputs", "valid models, hostile run-time inputs (run, predict, session)",
           ("onnx", "qdq", "qop"), inputs_make, inputs_run, weight=2.0),
    Target("keras", "mutated .keras archives -> qengine.load -> run",
           ("keras",), keras_make, keras_run, weight=0.8, available=_keras_available),
]}


# -- the harness's own check (tests/hardening/test_fuzz_harness.py) ------------------------------
def _selftest_run(payload: bytes, seed_name: str, rng: random.Random, state: dict) -> None:
    """Behave as the seed's name says, so a test can check that each outcome is counted as
    such: a segfault or abort kills only the worker, a hang is cut by the timeout."""
    import ctypes
    import time

    from qengine.errors import ModelError
    kind = seed_name.split(".")[0]
    if kind == "reject":
        raise ModelError("selftest: a clear rejection")
    if kind == "error":
        raise TypeError("selftest: a bare Python error")
    if kind == "wrong":
        raise Wrong("selftest: a wrong answer")
    if kind == "segv":
        ctypes.string_at(0)
    if kind == "abort":
        os.abort()
    if kind == "hang":
        time.sleep(3600)


if os.environ.get("QE_FUZZ_SELFTEST") == "1":
    TARGETS["selftest"] = Target("selftest", "the harness's own check: every outcome on demand",
                                 ("selftest",), inputs_make, _selftest_run)
