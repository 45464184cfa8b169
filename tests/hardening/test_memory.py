"""Memory: weights are packed once per node (never per run, shared by the plans of every input
shape); a run allocates only its outputs; summary() shows the planned activation arena; a
memory limit makes a plan that needs more raise before anything is allocated; RSS stays flat
over repeated runs (the 10,000-run soak is fuzz/soak.py)."""
from __future__ import annotations

import gc
import resource
import tracemalloc

import numpy as np
import pytest
from onnx import helper

import qengine
from qengine import _kernels as K
from qengine.errors import InputError

from models import make_model, random_input, resnet18, vi
from onnx import numpy_helper


def _quantized(model, batch=2):
    calib = [random_input(model, batch=batch, seed=s) for s in range(2)]
    return qengine.quantize(model.SerializeToString(), calib, progress=False, target_sqnr=None)


@pytest.fixture(scope="module")
def resnet():
    return _quantized(resnet18(size=32, width=8, num_classes=10))


@pytest.fixture(scope="module")
def wide_gemm():
    """One 1024x1024 Gemm: 1 MiB of int8 weights, a tiny activation arena."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((1024, 1024)) / 32).astype(np.float32)
    m = make_model([helper.make_node("Gemm", ["input", "w"], ["y"], transB=1),
                    helper.make_node("Relu", ["y"], ["out"])],
                   [vi("input", ["N", 1024])], [vi("out", None)],
                   [numpy_helper.from_array(w, "w")])
    return _quantized(m)


@pytest.fixture(scope="module")
def big_activations():
    """Two 3x3 convolutions on 16x96x96 activations: megabytes of arena per batch."""
    rng = np.random.default_rng(5)
    ws = [(rng.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32) for _ in range(2)]
    m = make_model([helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["a"], ["b"]),
                    helper.make_node("Conv", ["b", "w2"], ["out"], pads=[1, 1, 1, 1])],
                   [vi("input", ["N", 16, 96, 96])], [vi("out", None)],
                   [numpy_helper.from_array(w, f"w{i + 1}") for i, w in enumerate(ws)])
    return _quantized(m, batch=1)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


# -- weights ---------------------------------------------------------------------------------------
def test_weights_are_packed_once_per_node(resnet, monkeypatch):
    """Count every packing call: the first compile packs each weight once; later runs and
    the plans of other batch sizes pack nothing."""
    packs = []
    for cls in ("ConvPacked", "GemmPacked"):
        real = getattr(K, cls)

        def counting(*args, _real=real, _name=cls, **kwargs):
            packs.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(K, cls, counting)
    model = qengine.Model(resnet.graph)
    x1 = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    model.run(x1)
    first = len(packs)
    assert first >= 20                       # every conv and the gemm of resnet18
    for batch in (1, 2, 3, 1, 2):
        model.run(np.repeat(x1, batch, axis=0))
    assert len(packs) == first, f"{len(packs) - first} weights packed again"
    assert len(model._executor._plans) == 3


def test_a_run_allocates_only_its_outputs(wide_gemm):
    """Python-visible allocations of 100 runs (numpy reports to tracemalloc): no growth, and a
    peak far below the 1 MiB of weights (a weight copy per run would show)."""
    x = np.random.default_rng(2).standard_normal((4, 1024)).astype(np.float32)
    for _ in range(5):
        wide_gemm.run(x)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100):
            wide_gemm.run(x)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out_bytes = 4 * 1024 * 4
    assert now - base < 64 * 1024, f"{now - base} bytes kept after 100 runs"
    assert peak - base < 4 * out_bytes + 64 * 1024, f"peak {peak - base} bytes in one run"
    assert wide_gemm.weight_bytes >= 1 << 20


def test_rss_flat_over_repeated_runs(resnet):
    """2,000 runs after a warm-up: resident memory grows by less than 1% (and 2 MiB)."""
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    for _ in range(300):
        resnet.run(x)
    gc.collect()
    before = _rss_kib()
    for _ in range(2000):
        resnet.run(x)
    gc.collect()
    grown = _rss_kib() - before
    assert grown < max(before // 100, 2048), f"RSS grew by {grown} KiB from {before} KiB"


# -- the planned arena and the limit ----------------------------------------------------------
def test_summary_shows_the_planned_arena(resnet):
    plan = resnet._plan({"input": (4, 3, 32, 32)})
    text = resnet.summary({"input": (4, 3, 32, 32)})
    assert f"activation arena {plan.arena_bytes / 1024:.1f} KiB" in text
    assert plan.arena_bytes > 0


def test_memory_limit_raises_before_allocating(big_activations, monkeypatch):
    """A limit between the arenas of batch 1 and batch 8: batch 1 runs, batch 8 raises an
    InputError naming both sizes before any run context (the arena) exists: no plan is
    kept (so no RunContext is made), and tracemalloc (which sees numpy's allocations) never saw the arena's bytes.
    (Batched: run image by image, batch 8 needs no more than batch 1, runtime/per_image.py.)"""
    monkeypatch.setenv("QENGINE_PER_IMAGE", "off")
    q = big_activations
    a1 = q._plan({"input": (1, 16, 96, 96)}).arena_bytes
    a8 = q._plan({"input": (8, 16, 96, 96)}).arena_bytes
    assert a8 > 4 * a1 > 1 << 20
    limit = 2 * a1
    model = qengine.load(q.to_onnx().SerializeToString(), memory_limit=limit)
    x = np.random.default_rng(4).standard_normal((8, 16, 96, 96)).astype(np.float32)
    expected = q.run(x[:1])
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        with pytest.raises(InputError, match=f"needs {a8:,} bytes of activations, above the "
                                             f"memory limit of {limit:,}"):
            model.run(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not model._executor._plans
    assert peak - base < a8 // 2, f"{peak - base} bytes allocated for a refused plan"
    np.testing.assert_array_equal(model.run(x[:1]), expected)         # within the limit
    assert [(c.plan.arena_bytes, c.contexts_made) for c in model._executor._plans.values()] \
        == [(a1, 1)]
    with pytest.raises(InputError, match="memory limit"):              # still refused
        model.run(x)


def test_memory_limit_through_model_and_session(resnet):
    with pytest.raises(InputError, match="memory limit"):
        qengine.Model(resnet.graph, memory_limit=1).run(
            np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.parametrize("bad", [-1, "1GB", 1.5, True])
def test_memory_limit_must_be_a_byte_count(resnet, bad):
    with pytest.raises(InputError, match="memory_limit"):
        qengine.Model(resnet.graph, memory_limit=bad)
