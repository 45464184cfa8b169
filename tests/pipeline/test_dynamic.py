"""Dynamic quantization (qengine.quantize_dynamic) and the integer ops it compiles onto.

- A MatMul/Gemm-heavy MLP and ocr_block (its attention block): close to float (SQNR), the
  saved file runs in onnxruntime with matching outputs, qengine.load of it is bit-identical to
  the in-memory model, and the compiled model equals the float reference executor on the same
  graph bit for bit (the fused "MatMulInteger -> Cast -> Mul -> Add" GEMM computes exactly
  float32(acc) * (x_scale * w_scale[n]) + bias[n], as the graph says).
- onnxruntime's own quantize_dynamic models (ConvInteger, MatMulInteger) run by qengine.load.
- MatMulInteger / ConvInteger corner cases (int8 and uint8 operands, zero points per column /
  per channel / per row, batched run-time B, groups, 1-D) against their exact references on
  every ISA.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import qengine
from qengine.api import load, quantize_dynamic
from qengine.errors import InputError, QuantizationError
from qengine.runtime.reference import ReferenceExecutor

import models
from models import make_model, random_input, vi

ort = pytest.importorskip("onnxruntime")


def mlp(seed=0, d_in=64, hidden=128, d_out=10):
    """MatMul + Add, Gemm (transB, alpha, beta, bias), Gemm (plain, no bias), ReLUs."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0]))
                                       .astype(np.float32), f"w{len(inits)}")
    inits = []
    inits.append(w(d_in, hidden))
    inits.append(numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32),
                                         "b0"))
    inits.append(w(hidden, hidden))        # used as (N, K) with transB
    inits.append(numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32),
                                         "b1"))
    inits.append(w(hidden, d_out))
    nodes = [helper.make_node("MatMul", ["input", "w0"], ["m0"], name="fc0"),
             helper.make_node("Add", ["m0", "b0"], ["a0"], name="fc0_bias"),
             helper.make_node("Relu", ["a0"], ["r0"], name="relu0"),
             helper.make_node("Gemm", ["r0", "w2", "b1"], ["g1"], name="fc1", transB=1,
                              alpha=0.7, beta=0.5),
             helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
             helper.make_node("Gemm", ["r1", "w4"], ["logits"], name="fc2")]
    return make_model(nodes, [vi("input", ["N", d_in])], [vi("logits", ["N", d_out])], inits,
                      opset=13)


def _sqnr(ref, got) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) /
                               np.sum((ref.astype(np.float64) - got) ** 2)))


def _ort_run(model_bytes, feeds):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


CASES = {"mlp": (mlp, 30.0), "ocr_block": (models.ocr_block, 30.0)}


@pytest.mark.parametrize("name", list(CASES))
def test_quantize_dynamic_matches_float_onnxruntime_and_itself(tmp_path, name):
    build, min_sqnr = CASES[name]
    proto = build()
    feeds = random_input(proto, batch=4, seed=1)
    ref = _ort_run(proto.SerializeToString(), feeds)
    model = quantize_dynamic(proto)
    got = model.run(feeds)
    sqnr = _sqnr(ref, got)
    print(f"{name}: dynamic int8 SQNR {sqnr:.1f} dB")
    assert sqnr > min_sqnr
    # every MatMul / Gemm became the fused GEMM; DynamicQuantizeLinear runs natively
    labels = dict(model._plan({"input": feeds["input"].shape}).kernels)
    integer = [n.name for n in model.graph.nodes if n.op_type == "MatMulInteger"]
    assert integer and all(labels.get(n) == "gemm f32 epilogue" for n in integer), labels
    assert not any(n.op_type in ("MatMul", "Gemm") and n.inputs[1] in model.graph.initializers
                   for n in model.graph.nodes)
    # the float reference of its own graph: the integer GEMMs agree exactly, float ops that
    # run as C kernels (the final LogSoftmax) may differ from numpy in the last float32 bit
    want = ReferenceExecutor(model.graph).run(feeds)[model.output_names[0]]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    # the saved file: onnxruntime agrees, and qengine reads it back bit for bit
    path = tmp_path / f"{name}_dynamic.onnx"
    model.save(path)
    ort_got = _ort_run(path.read_bytes(), feeds)
    np.testing.assert_allclose(ort_got, got, rtol=1e-4, atol=1e-5 * float(np.abs(got).max()))
    np.testing.assert_array_equal(load(path).run(feeds), got)


def test_quantize_dynamic_on_every_isa_and_edge_inputs(isa):
    """Exact against the reference whatever the ISA, including inputs whose range is
    degenerate (all zero: scale 1/255), one-signed, or huge."""
    proto = mlp(seed=3)
    model = quantize_dynamic(proto, op_types=["MatMul", "Gemm"])
    ref = ReferenceExecutor(model.graph)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    for feed in (x, np.zeros_like(x), -np.abs(x), np.abs(x) + 5, x * 1e6, x[:1]):
        got = model.run({"input": feed})
        np.testing.assert_array_equal(got, ref.run({"input": feed})["logits"])


def test_quantize_dynamic_options_and_errors():
    proto = mlp(seed=4)
    feeds = random_input(proto, batch=2, seed=2)
    ref = _ort_run(proto.SerializeToString(), feeds)
    s8 = _sqnr(ref, quantize_dynamic(proto).run(feeds))
    s4 = _sqnr(ref, quantize_dynamic(proto, weight_bits=4).run(feeds))
    per_tensor = _sqnr(ref, quantize_dynamic(proto, per_channel=False).run(feeds))
    assert s8 > s4 > 10 and s8 > 30 and per_tensor > 25
    only_matmul = quantize_dynamic(proto, op_types=["MatMul"])
    assert sum(n.op_type == "MatMulInteger" for n in only_matmul.graph.nodes) == 1
    with pytest.raises(QuantizationError, match="op types"):
        quantize_dynamic(proto, op_types=["Softmax"])
    with pytest.raises(QuantizationError, match="weight_bits"):
        quantize_dynamic(proto, weight_bits=9)
    x = feeds["input"].copy()
    x[0, 0] = np.nan
    with pytest.raises(InputError, match="DynamicQuantizeLinear.*NaN"):
        quantize_dynamic(proto).run({"input": x})


def test_quantize_dynamic_convolutions(tmp_path):
    """op_types with Conv: ConvInteger with the float epilogue on the conv kernels."""
    proto = models.resnet18(size=16, width=8)
    feeds = random_input(proto, batch=2, seed=3)
    model = quantize_dynamic(proto, op_types=("Conv", "Gemm"))
    got = model.run(feeds)
    # its own graph's float reference: exact integer parts, float C kernels to the last bit
    np.testing.assert_allclose(got, ReferenceExecutor(model.graph).run(feeds)[
        model.output_names[0]], rtol=2e-6, atol=1e-6)
    labels = dict(model._plan({"input": feeds["input"].shape}).kernels)
    convs = [n.name for n in model.graph.nodes if n.op_type == "ConvInteger"]
    assert convs and all(labels.get(n) == "conv f32 epilogue" for n in convs)
    path = tmp_path / "resnet_dynamic.onnx"
    model.save(path)
    np.testing.assert_allclose(_ort_run(path.read_bytes(), feeds), got, rtol=1e-4,
                               atol=1e-5 * float(np.abs(got).max()))


@pytest.mark.parametrize("name", ["resnet18", "ocr_block"])
def test_onnxruntime_quantize_dynamic_models(tmp_path, name):
    oq = pytest.importorskip("onnxruntime.quantization")
    from qengine.api import _prepare, read_model
    from qengine.io import to_onnx
    proto = {"resnet18": lambda: models.resnet18(size=16, width=8),
             "ocr_block": models.ocr_block}[name]()
    fpath, qpath = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(to_onnx(_prepare(read_model(proto))), fpath)
    logging.disable(logging.WARNING)
    try:
        oq.quantize_dynamic(str(fpath), str(qpath), weight_type=oq.QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    feeds = random_input(proto, batch=2, seed=4)
    model = load(qpath)
    got = model.run(feeds)
    want = _ort_run(qpath.read_bytes(), feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    # its own graph's float reference: exact integer parts, float C kernels to the last bit
    np.testing.assert_allclose(got, ReferenceExecutor(model.graph).run(feeds)[
        model.output_names[0]], rtol=2e-6, atol=1e-6)
    labels = dict(model._plan({"input": feeds["input"].shape}).kernels)
    ints = [n.name for n in model.graph.nodes if n.op_type in ("ConvInteger", "MatMulInteger")]
    assert ints and all(labels.get(n, "").endswith("f32 epilogue") for n in ints), labels


# ---- integer op corner cases --------------------------------------------------------------------
def _integer_model(op, a_shape, b, a_dt, zps, b_input=False, attrs=None):
    """One MatMulInteger / ConvInteger; b constant (or a graph input), zero points constant."""
    et = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
    inputs = [vi("a", a_shape, et[a_dt])]
    inits, names = [], ["a", "b"]
    if b_input:
        inputs.append(vi("b", list(b.shape), et[b.dtype.type]))
    else:
        inits.append(numpy_helper.from_array(b, "b"))
    for k, z in enumerate(zps):
        if z is None:
            names.append("")
            continue
        inits.append(numpy_helper.from_array(np.asarray(z), f"z{k}"))
        names.append(f"z{k}")
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    return make_model([node], inputs, [vi("y", None, TensorProto.INT32)], inits, opset=13)


def _check_exact(proto, feeds, label=None):
    model = load(proto)
    got = model.run(feeds)
    want = ReferenceExecutor(model.graph).run(feeds)["y"]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    if label is not None:
        labels = [lab for _, lab in model._plan({k: v.shape for k, v in feeds.items()}).kernels]
        assert label in labels, labels
    return got


def test_matmul_integer_forms(isa):
    rng = np.random.default_rng(7)

    def u8(*s):
        return rng.integers(0, 256, s).astype(np.uint8)

    def s8(*s):
        return rng.integers(-128, 128, s).astype(np.int8)
    a = u8(5, 40)
    # uint8 A, int8 B, per-column int8 zero points
    _check_exact(_integer_model("MatMulInteger", [5, 40], s8(40, 24), np.uint8,
                                [np.uint8(131), s8(24)]), {"a": a}, "gemm i32")
    # int8 A (flipped to uint8 inside), uint8 B with per-column zero points, 3-D A
    a3 = s8(2, 3, 40)
    _check_exact(_integer_model("MatMulInteger", [2, 3, 40], u8(40, 17), np.int8,
                                [np.int8(-7), u8(17)]), {"a": a3}, "gemm i32")
    # extreme codes: the int32 accumulator at its largest (|a - za| = |b - zb| = 255)
    big_a = np.full((2, 300), 255, np.uint8)
    _check_exact(_integer_model("MatMulInteger", [2, 300], np.zeros((300, 3), np.uint8),
                                np.uint8, [np.uint8(0), np.uint8(255)]), {"a": big_a}, "gemm i32")
    # per-row A zero points: no kernel form, the exact reference runs
    _check_exact(_integer_model("MatMulInteger", [5, 40], s8(40, 8), np.uint8,
                                [u8(5), None]), {"a": a})
    # run-time B, batched with broadcasting: packed per run
    b = s8(3, 40, 6)
    proto = _integer_model("MatMulInteger", [1, 5, 40], b, np.uint8, [np.uint8(3), s8(6)],
                           b_input=True)
    _check_exact(proto, {"a": a[None], "b": b}, "gemm i32 (B packed per run)")


def test_conv_integer_forms(isa):
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (2, 6, 7, 9)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    attrs = dict(group=2, pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])
    _check_exact(_integer_model("ConvInteger", [2, 6, 7, 9], w, np.uint8,
                                [np.uint8(100), rng.integers(-5, 5, 4).astype(np.int8)],
                                attrs=attrs), {"x" if False else "a": x}, "conv i32")
    # int8 x, uint8 weights with a scalar zero point, 1-D
    x1 = rng.integers(-128, 128, (1, 4, 11)).astype(np.int8)
    w1 = rng.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    _check_exact(_integer_model("ConvInteger", [1, 4, 11], w1, np.int8,
                                [np.int8(-3), np.uint8(120)], attrs=dict(pads=[1, 1])),
                 {"a": x1}, "conv i32")
    # run-time weights
    _check_exact(_integer_model("ConvInteger", [2, 6, 7, 9], w, np.uint8, [np.uint8(9)],
                                b_input=True, attrs=attrs), {"a": x, "b": w},
                 "conv i32 (W packed per run)")


def test_integer_ops_reject_mismatched_types():
    bad = _integer_model("MatMulInteger", [2, 4], np.zeros((4, 3), np.int8), np.uint8,
                         [np.int8(0)])
    with pytest.raises(qengine.ModelError, match="zero point"):
        load(bad)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 70), n=st.integers(1, 40), signed=st.booleans(),
       b_u8=st.booleans(), per_column=st.booleans(), with_bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_fused_epilogue_property(m, k, n, signed, b_u8, per_column, with_bias, seed):
    """MatMulInteger (run-time A and zero point, constant B) -> Cast -> Mul(run-time scales)
    [-> Add(bias)]: one GEMM step, equal to the graph's float semantics bit for bit."""
    rng = np.random.default_rng(seed)
    at, bt = (np.int8 if signed else np.uint8), (np.uint8 if b_u8 else np.int8)
    et = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
    info_a, info_b = np.iinfo(at), np.iinfo(bt)
    b = rng.integers(info_b.min, info_b.max + 1, (k, n)).astype(bt)
    bz = rng.integers(info_b.min, info_b.max + 1, n if per_column else ()).astype(bt)
    inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(bz, "bz")]
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["f"], to=1),
             helper.make_node("Mul", ["s", "f"], ["y" if not with_bias else "p"])]
    if with_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "c"))
        nodes.append(helper.make_node("Add", ["p", "c"], ["y"]))
    proto = make_model(nodes, [vi("a", [m, k], et[at]), vi("az", [], et[at]),
                               vi("s", [n], TensorProto.FLOAT)], [vi("y", None)], inits, opset=13)
    feeds = {"a": rng.integers(info_a.min, info_a.max + 1, (m, k)).astype(at),
             "az": np.array(rng.integers(info_a.min, info_a.max + 1), at),
             "s": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
    model = load(proto)
    labels = [lab for _, lab in model._plan({x: v.shape for x, v in feeds.items()}).kernels]
    assert "gemm f32 epilogue" in labels
    np.testing.assert_array_equal(model.run(feeds), ReferenceExecutor(model.graph).run(feeds)["y"])
