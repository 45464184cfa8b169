"""The benchmark models of benchmarks/models.py: the torch twins compute what the ONNX models
compute (onnxruntime as the referee), qengine quantizes and runs each, the full-size networks
have the published work, and `--compare torch` runs through the harness."""
import numpy as np
import pytest

import qengine
from qengine.tools import bench

bm = bench.builtin_models_module()

# small versions of each architecture: same blocks, a fraction of the widths and pixels
SMALL = {
    "resnet18": dict(size=32, width=8, num_classes=10),
    "mobilenetv2": dict(size=32, width_mult=0.25, num_classes=10),
    "yolo": dict(size=64, width=4, num_classes=3),
    "ocr": dict(height=32, line_width=64, stem=8, last=32, dim=16, heads=2, depth=1,
                num_classes=7),
}
BUILD = {"resnet18": bm.resnet18, "mobilenetv2": bm.mobilenetv2, "yolo": bm.yolo_detector,
         "ocr": bm.ocr_recognizer}


def _input(model, batch=2, seed=0):
    shape = [d.dim_value or batch for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kind", list(SMALL))
def test_torch_twin_matches_onnx_and_qengine_runs_it(kind):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    m = BUILD[kind](**SMALL[kind])
    x = _input(m)
    ref = ort.InferenceSession(m.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    module = bm.torch_module(kind, **SMALL[kind])
    with torch.inference_mode():
        got = module(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    calib = np.concatenate([_input(m, 4, seed) for seed in (1, 2)])
    q = qengine.quantize(m.SerializeToString(), calib, progress=False)
    y = q.run(x)
    assert y.shape == ref.shape
    sqnr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((y - ref) ** 2))
    assert sqnr > 12, f"{kind}: int8 SQNR {sqnr:.1f} dB"


def test_full_size_models_have_the_published_shapes_and_work():
    r18 = bm.BENCHMARKS["resnet18"].onnx()
    assert bm.count_gop(r18) == pytest.approx(3.628, abs=0.002)     # 1.814 GMAC
    assert bm.count_gop(bm.BENCHMARKS["mobilenetv2"].onnx()) == pytest.approx(0.599, abs=0.002)
    yolo = bm.BENCHMARKS["yolo"].onnx()
    dims = [d.dim_value or d.dim_param for d in yolo.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3 * (40 * 40 + 20 * 20 + 10 * 10), 85]
    ocr = bm.BENCHMARKS["ocr"].onnx()
    dims = [d.dim_value or d.dim_param for d in ocr.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 80, 97]
    elt = bm.BENCHMARKS["eltwise"].onnx()
    dims = [d.dim_value or d.dim_param for d in elt.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 32, 56, 56]
    kinds = [n.op_type for n in elt.graph.node]
    assert kinds.count("Conv") == 5 and len(kinds) - kinds.count("Conv") == 42  # element-wise
    for name, spec in bm.BENCHMARKS.items():     # the net of element-wise constants has none
        assert (spec.torch is not None) == (name != "eltwise") and spec.description


def test_harness_compares_torch_on_the_same_weights():
    """... and gives torch its thread count back (the engine sets it per configuration)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    kw = SMALL["yolo"]
    m = bm.yolo_detector(**kw)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        res = bench.benchmark(m, torch_model=bm.torch_module("yolo", **kw),
                              calibration=_input(m, 8, 3), compare=["onnxruntime", "torch"],
                              threads=(1, 2), rounds=2, min_round_seconds=0.0, progress=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    c = res["results"][0]
    assert set(c["engines"]) == {"qengine", "onnxruntime", "torch"}
    assert c["fidelity"]["sqnr_db"]["torch"] > 80          # float vs float: the same network
    assert c["fidelity"]["sqnr_db"]["qengine"] > 12
    assert res["model"]["sizes_bytes"]["torch"] == pytest.approx(
        res["model"]["sizes_bytes"]["float"], rel=0.05)
