"""pytest-benchmark version of conv_table.py: every ResNet-18 conv and MobileNetV2 depthwise
layer (224x224, batch 1), qengine and onnxruntime's QLinearConv side by side, 1 and 2 threads.
Each group (layer, threads) holds both engines, so pytest-benchmark's relative columns give the
speed ratio of the same run:

    python -m pytest benchmarks/bench_conv.py --benchmark-only -p no:cacheprovider \
        --benchmark-columns=min,median,rounds --benchmark-sort=name

(--benchmark-only overrides the project's default --benchmark-skip; filter with e.g. -k mv2).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's spinning BLAS threads steal a core
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_layers import LAYERS, make_data, ort_runner, qengine_runner  # noqa: E402

pytest.importorskip("pytest_benchmark")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("engine", ["qengine", "onnxruntime"])
@pytest.mark.parametrize("layer", LAYERS, ids=[l.name for l in LAYERS])
def test_conv_layer(benchmark, layer, engine, threads):
    from qengine import _kernels as K
    data = make_data(layer)
    before = K.get_num_threads()
    K.set_num_threads(threads)
    try:
        if engine == "qengine":
            run, packed = qengine_runner(layer, *data)
            benchmark.extra_info["method"] = packed.method
        else:
            pytest.importorskip("onnxruntime")
            run = ort_runner(layer, *data, threads)
        benchmark.group = f"{layer.name} t={threads}"
        benchmark.extra_info["gops_per_run"] = 2 * layer.macs / 1e9
        benchmark.pedantic(run, warmup_rounds=3, rounds=30, iterations=1)
    finally:
        K.set_num_threads(before)
