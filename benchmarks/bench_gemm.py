"""pytest-benchmark suite of the int8 GEMM, qengine next to onnxruntime (same problem).

    python -m pytest benchmarks/bench_gemm.py --benchmark-only -p no:cacheprovider \
        --benchmark-group-by=param:shape,param:threads

Each group holds the two engines on one shape and thread count, so the table pytest-benchmark
prints reads as a ratio; benchmarks/gemm_table.py prints GOPS and % of peak directly.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle OpenBLAS threads spin on our cores
import pytest  # noqa: E402

# this checkout's qengine, not another one an editable install may point at
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
from gemm_common import Problem  # noqa: E402

SHAPES = [(256, 256, 256), (1024, 1024, 1024), (1, 1024, 1024), (3136, 64, 576)]
_problems = {}


def problem(shape):
    if shape not in _problems:
        _problems[shape] = Problem(*shape)
    return _problems[shape]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("engine", ["qengine", "onnxruntime"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm(benchmark, shape, engine, threads):
    pytest.importorskip("onnxruntime")
    prob = problem(shape)
    fn = getattr(prob, engine)(threads)
    fn()  # warm-up
    benchmark.extra_info["gops"] = None
    benchmark(fn)
    benchmark.extra_info["gops"] = prob.ops / benchmark.stats.stats.median / 1e9
