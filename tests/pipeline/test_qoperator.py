"""Pre-quantized ONNX in: QOperator models (QLinearConv, QGemm, com.microsoft QLinear*) and the
integer ops (MatMulInteger, ConvInteger, DynamicQuantizeLinear), run by qengine.load on the
compiled path.

1. ONNX's node test cases of QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul,
   ConvInteger, MatMulInteger and DynamicQuantizeLinear pass exactly (values and dtype), twice:
   - as shipped: every parameter (scales, zero points, weights) is a graph input. Integer ops
     then still run natively (weights packed per run); QLinear ops with run-time scales cannot
     become kernel constants and run their QDQ meaning in float;
   - with the parameters frozen as initializers, as real models carry them: then the kernels
     must run them (asserted on the plan's kernel labels), except where no kernel form exists
     (per-axis activation scales, 16-bit types, float16 scales, a batched 3-D constant B of
     QLinearMatMul, blocked quantization), which run in float, exactly.
   Cases with element types qengine does not support (float8 e4m3/e5m2, float4e2m1,
   int4/uint4, int2/uint2) cannot be loaded: they must fail with a ModelError naming the type.
2. Models of tests/models.py quantized by onnxruntime's quantize_static(QOperator, per
   channel, uint8 activations, int8 weights; and one with int8 activations and uint8 weights)
   run within 1 LSB of onnxruntime on >= 99.9% of every quantized tensor, with all their
   Conv / Gemm / MatMul nodes on the int8 kernels.
3. Hand-built graphs of the com.microsoft ops the models do not use, against onnxruntime.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import qengine
from qengine.api import _prepare, load, read_model
from qengine.errors import ModelError
from qengine.io import to_onnx

import models

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")

OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
       "MatMulInteger", "DynamicQuantizeLinear")
UNSUPPORTED_TYPES = ("e4m3fn", "e5m2", "uint4", "int4", "uint2", "int2", "float4e2m1")

# frozen parameters: the kernel label the plan must contain (None: no kernel form, float)
NATIVE = {
    "test_quantizelinear": "quantize", "test_dequantizelinear": "dequantize",
    "test_qlinearconv": "conv", "test_qlinearmatmul_2D_uint8_float32": "gemm",
    "test_qlinearmatmul_2D_int8_float32": "gemm", "test_convinteger_without_padding": "conv i32",
    "test_convinteger_with_padding": "conv i32", "test_matmulinteger": "gemm i32",
    "test_dynamicquantizelinear": "dynamic quantize",
    "test_dynamicquantizelinear_max_adjusted": "dynamic quantize",
    "test_dynamicquantizelinear_min_adjusted": "dynamic quantize",
}
# as shipped (parameters are inputs): integer ops still run natively
NATIVE_AS_SHIPPED = {
    "test_convinteger_without_padding": "conv i32 (W packed per run)",
    "test_convinteger_with_padding": "conv i32 (W packed per run)",
    "test_matmulinteger": "gemm i32 (B packed per run)",
    "test_dynamicquantizelinear": "dynamic quantize",
    "test_dynamicquantizelinear_max_adjusted": "dynamic quantize",
    "test_dynamicquantizelinear_min_adjusted": "dynamic quantize",
}


def _node_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if "expanded" not in c.name and
            {n.op_type for n in c.model.graph.node} & set(OPS)]


CASES = _node_cases()


def _arr(x) -> np.ndarray:
    """A case's data as numpy (some cases store TensorProtos)."""
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def _freeze(model: onnx.ModelProto, feeds: dict) -> tuple:
    """Every input but the first becomes an initializer (parameters as models carry them)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    first = m.graph.input[0].name
    for vi in list(m.graph.input)[1:]:
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(feeds[vi.name]), vi.name))
        m.graph.input.remove(vi)
    return m, {first: feeds[first]}


def _kernel_labels(model, feeds) -> list:
    return [label for _, label in model._plan({k: v.shape for k, v in feeds.items()}).kernels]


def test_selection_covers_every_op():
    assert {n.op_type for c in CASES for n in c.model.graph.node} >= set(OPS)
    assert len(CASES) >= 40


@pytest.mark.parametrize("frozen", [False, True], ids=["as_shipped", "frozen"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node_case(case, frozen):
    if any(t in case.name for t in UNSUPPORTED_TYPES):
        with pytest.raises(ModelError, match="not supported"):
            load(case.model)
        return
    inputs, outputs = case.data_sets[0]
    feeds = {vi.name: _arr(x) for vi, x in zip(case.model.graph.input, inputs)}
    model_proto = case.model
    if frozen:
        model_proto, feeds = _freeze(case.model, feeds)
    model = load(model_proto)
    got = model.run(feeds, as_dict=True)
    for vi, want in zip(model_proto.graph.output, outputs):
        want = _arr(want)
        assert got[vi.name].dtype == want.dtype, vi.name
        np.testing.assert_array_equal(got[vi.name], want, err_msg=vi.name)
    labels = _kernel_labels(model, feeds)
    expect = (NATIVE if frozen else NATIVE_AS_SHIPPED).get(case.name)
    if expect is not None:
        assert expect in labels, labels


def test_node_cases_on_every_isa(isa):
    """The kernel paths of the frozen cases agree on every ISA (bit-identical by design)."""
    for case in CASES:
        if case.name not in NATIVE:
            continue
        inputs, outputs = case.data_sets[0]
        feeds = {vi.name: _arr(x) for vi, x in zip(case.model.graph.input, inputs)}
        m, feeds = _freeze(case.model, feeds)
        got = load(m).run(feeds, as_dict=True)
        for vi, want in zip(m.graph.output, outputs):
            np.testing.assert_array_equal(got[vi.name], _arr(want), err_msg=case.name)


# ---- onnxruntime QOperator models ----------------------------------------------------------------
class _Reader(oq.CalibrationDataReader):
    def __init__(self, proto, n=3):
        self.batches = iter([models.random_input(proto, batch=2, seed=s) for s in range(n)])

    def get_next(self):
        return next(self.batches, None)


def _ort_qoperator(tmp_path, name, proto, activation=None, weight=None):
    """onnxruntime's QOperator model of `proto` (BatchNorm folded first: ORT's recommended
    pre-processing), saved with every quantized tensor as an extra graph output."""
    float_path, q_path = tmp_path / f"{name}.onnx", tmp_path / f"{name}_qop.onnx"
    onnx.save(to_onnx(_prepare(read_model(proto))), float_path)
    logging.disable(logging.WARNING)
    try:
        oq.quantize_static(str(float_path), str(q_path), _Reader(proto),
                           quant_format=oq.QuantFormat.QOperator, per_channel=True,
                           activation_type=activation or oq.QuantType.QUInt8,
                           weight_type=weight or oq.QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    q = onnx.load(q_path)
    names = {o.name for o in q.graph.output}
    for n in q.graph.node:
        if n.op_type.startswith(("QLinear", "QGemm")) and n.output[0] not in names:
            q.graph.output.append(helper.make_empty_tensor_value_info(n.output[0]))
            names.add(n.output[0])
    return q


def _compare_with_ort(q: onnx.ModelProto, feeds: dict):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    model = load(q)
    got = model.run(feeds, as_dict=True)
    quantized = 0
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape and g.dtype == w.dtype, name
        if w.dtype in (np.uint8, np.int8):
            quantized += 1
            close = np.abs(g.astype(np.int32) - w.astype(np.int32)) <= 1
        else:
            close = np.abs(g - w) <= 1e-3 * max(1.0, float(np.abs(w).max()))
        assert close.mean() >= 0.999, (name, float(close.mean()))
    return model, quantized


QOP_MODELS = {
    "resnet18": lambda: models.resnet18(size=32, width=8),
    "mobilenetv2": lambda: models.mobilenetv2(size=32),
    "yolo_block": lambda: models.yolo_block(size=32, width=8),
    "ocr_block": lambda: models.ocr_block(),
}


@pytest.mark.parametrize("name", list(QOP_MODELS))
def test_onnxruntime_qoperator_model(tmp_path, name):
    proto = QOP_MODELS[name]()
    q = _ort_qoperator(tmp_path, name, proto)
    feeds = models.random_input(proto, batch=2, seed=11)
    model, quantized = _compare_with_ort(q, feeds)
    assert quantized >= 5
    counts = model.node_counts({k: v.shape for k, v in feeds.items()})
    compute = [n.name for n in model.graph.nodes if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert compute and set(compute) <= set(counts["int8"]), set(compute) - set(counts["int8"])


@pytest.mark.parametrize("types", ["s8s8", "u8u8"])
def test_onnxruntime_qoperator_other_types(tmp_path, types):
    """int8 activations (held as uint8 + 128 inside: the int8 graph outputs are flipped back)
    with int8 weights; uint8 weights (shifted to int8 with their zero points)."""
    T = oq.QuantType
    act, weight = {"s8s8": (T.QInt8, T.QInt8), "u8u8": (T.QUInt8, T.QUInt8)}[types]
    proto = models.resnet18(size=16, width=8)
    q = _ort_qoperator(tmp_path, "resnet_" + types, proto, act, weight)
    feeds = models.random_input(proto, batch=1, seed=5)
    model, quantized = _compare_with_ort(q, feeds)
    assert quantized >= 5
    labels = [label for _, label in model._plan({"input": feeds["input"].shape}).kernels]
    assert ("int8 <-> uint8" in labels) == (types == "s8s8")
    compute = [n.name for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert set(compute) <= set(model.node_counts({"input": feeds["input"].shape})["int8"])


# ---- hand-built com.microsoft graphs -------------------------------------------------------------
def _ms_model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "qop", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _t(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _params(prefix, scale, zp, dtype=np.uint8):
    return [_t(prefix + "_s", np.float32(scale)), _t(prefix + "_z", dtype(zp))]


def _run_both(m, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    model = load(m)
    got = model.run(feeds)
    return model, (got if isinstance(got, list) else [got]), want


def test_contrib_unary_and_pool_ops():
    """QLinearLeakyRelu, QLinearSigmoid, QLinearAveragePool, QLinearGlobalAveragePool
    (channels_last too) and QLinearConcat, int8 and uint8."""
    rng = np.random.default_rng(0)
    for dt, et in ((np.uint8, TensorProto.UINT8), (np.int8, TensorProto.INT8)):
        zx, zy = (128, 100) if dt == np.uint8 else (0, -20)
        inits = _params("x", 0.05, zx, dt) + _params("y", 0.04, zy, dt) + \
            _params("c", 0.06, zy, dt)
        ms = "com.microsoft"
        nodes = [
            helper.make_node("QLinearLeakyRelu", ["x", "x_s", "x_z", "y_s", "y_z"], ["lr"],
                             domain=ms, alpha=0.2),
            helper.make_node("QLinearSigmoid", ["x", "x_s", "x_z", "y_s", "y_z"], ["sg"],
                             domain=ms),
            helper.make_node("QLinearAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"], ["ap"],
                             domain=ms, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("QLinearGlobalAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"],
                             ["gp"], domain=ms),
            helper.make_node("QLinearGlobalAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"],
                             ["gl"], domain=ms, channels_last=1),
            helper.make_node("QLinearConcat", ["c_s", "c_z", "lr", "y_s", "y_z",
                                               "sg", "y_s", "y_z", "x", "x_s", "x_z"], ["cat"],
                             domain=ms, axis=1),
        ]
        outs = [helper.make_tensor_value_info(n, et, None) for n in
                ("lr", "sg", "ap", "gp", "gl", "cat")]
        m = _ms_model(nodes, [helper.make_tensor_value_info("x", et, [2, 4, 6, 6])], outs, inits)
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max + 1, (2, 4, 6, 6)).astype(dt)
        model, got, want = _run_both(m, {"x": x})
        for name, g, w in zip(("lr", "sg", "ap", "gp", "gl", "cat"), got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, name
            assert np.abs(g.astype(int) - w.astype(int)).max() <= 1, (dt, name)
        assert not model.node_counts({"x": x.shape})["float"]


def test_contrib_binary_qgemm_and_channels_last_conv():
    """QLinearAdd / QLinearMul with a constant operand, QGemm with alpha, with and without a
    quantized output (float without y_scale), QLinearConv channels_last."""
    rng = np.random.default_rng(1)
    ms = "com.microsoft"
    wg = rng.integers(-127, 128, (6, 8)).astype(np.int8)            # (N, K), transB
    bg = rng.integers(-500, 500, 6).astype(np.int32)
    wc = rng.integers(-127, 128, (5, 4, 3, 3)).astype(np.int8)
    inits = _params("x", 0.05, 120) + _params("y", 0.1, 110) + _params("k", 0.02, 7) + [
        _t("kc", rng.integers(0, 256, (1, 8)).astype(np.uint8)),
        _t("wg", wg), _t("wg_s", rng.uniform(0.005, 0.02, 6).astype(np.float32)),
        _t("wg_z", np.zeros(6, np.int8)), _t("bg", bg),
        _t("wc", wc), _t("wc_s", rng.uniform(0.005, 0.02, 5).astype(np.float32)),
        _t("wc_z", np.zeros(5, np.int8))]
    nodes = [
        helper.make_node("QLinearAdd", ["x", "x_s", "x_z", "kc", "k_s", "k_z", "y_s", "y_z"],
                         ["add"], domain=ms),
        helper.make_node("QLinearMul", ["x", "x_s", "x_z", "add", "y_s", "y_z", "y_s", "y_z"],
                         ["mul"], domain=ms),
        helper.make_node("QGemm", ["x", "x_s", "x_z", "wg", "wg_s", "wg_z", "bg", "y_s", "y_z"],
                         ["gq"], domain=ms, transB=1, alpha=0.5),
        helper.make_node("QGemm", ["x", "x_s", "x_z", "wg", "wg_s", "wg_z", "bg"], ["gf"],
                         domain=ms, transB=1),
        helper.make_node("Reshape", ["add", "shape"], ["img"]),     # uint8 data movement
        helper.make_node("QLinearConv", ["img", "y_s", "y_z", "wc", "wc_s", "wc_z", "k_s",
                                         "k_z"], ["cl"], domain=ms, channels_last=1,
                         pads=[1, 1, 1, 1]),
    ]
    inits.append(_t("shape", np.array([1, 2, 1, 4], np.int64)))
    outs = [helper.make_tensor_value_info("add", TensorProto.UINT8, None),
            helper.make_tensor_value_info("mul", TensorProto.UINT8, None),
            helper.make_tensor_value_info("gq", TensorProto.UINT8, None),
            helper.make_tensor_value_info("gf", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("cl", TensorProto.UINT8, None)]
    m = _ms_model(nodes, [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8])],
                  outs, inits)
    x = rng.integers(0, 256, (1, 8)).astype(np.uint8)
    model, got, want = _run_both(m, {"x": x})
    labels = [lab for _, lab in model._plan({"x": x.shape}).kernels]
    assert "gemm f32 epilogue" in labels, labels   # QGemm's float output: one fused GEMM
    assert not model.node_counts({"x": x.shape})["float"]
    for name, g, w in zip(("add", "mul", "gq", "gf", "cl"), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        if name == "gf":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        else:
            assert np.abs(g.astype(int) - w.astype(int)).max() <= 1, name


def test_movement_ops_on_quantized_tensors_keep_their_parameters():
    """onnxruntime runs MaxPool / Reshape / Transpose / Pad directly on uint8: they become
    DQ -> op -> Q with the input's parameters, i.e. uint8 data movement again."""
    ms = "com.microsoft"
    inits = _params("x", 0.05, 128) + _params("y", 0.05, 10) + [
        _t("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), _t("pv", np.uint8(10)),
        _t("shape", np.array([1, -1], np.int64))]
    nodes = [helper.make_node("QLinearSigmoid", ["x", "x_s", "x_z", "y_s", "y_z"], ["s"],
                              domain=ms),
             helper.make_node("MaxPool", ["s"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Pad", ["mp", "pads", "pv"], ["pd"]),
             helper.make_node("Transpose", ["pd"], ["tp"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["tp", "shape"], ["out"])]
    m = _ms_model(nodes, [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("out", TensorProto.UINT8, None)], inits)
    x = np.random.default_rng(2).integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    model, got, want = _run_both(m, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])
    assert not model.node_counts({"x": x.shape})["float"]


def test_malformed_qoperator_nodes_raise_model_errors():
    ms = "com.microsoft"
    inits = _params("x", 0.05, 128) + _params("y", 0.05, 10)
    bad = helper.make_node("QLinearConcat", ["y_s", "y_z", "x", "x_s"], ["c"], domain=ms, axis=1)
    m = _ms_model([bad], [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2])],
                  [helper.make_tensor_value_info("c", TensorProto.UINT8, None)], inits)
    with pytest.raises(ModelError, match="QLinearConcat.*triples"):
        load(m)
    unknown = helper.make_node("QLinearFoo", ["x"], ["c"], domain=ms)
    m = _ms_model([unknown], [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2])],
                  [helper.make_tensor_value_info("c", TensorProto.UINT8, None)], [])
    with pytest.raises(qengine.UnsupportedOpError, match="QLinearFoo"):
        load(m)
