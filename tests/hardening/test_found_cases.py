"""Regression tests for what the fuzzer found (fuzz/, docs/hardening.md): each was a crash, a
bare Python/numpy/h5py exception, or a wrong answer, and is now a clear qengine error or a
correct result. Small hand-made models reproduce each one."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import qengine
from qengine.errors import ExecutionError, InputError, ModelError
from qengine.runtime.reference import ReferenceExecutor

ROOT = Path(__file__).resolve().parents[2]


def _model(nodes, inputs, outputs, inits=(), opset=17):
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "m", [vi(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [vi(n, TensorProto.FLOAT, s) for n, s in outputs],
                          [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_model(**attrs):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)],
                  [("x", ["N", 3, 8, 8])], [("y", None)], [("w", w)])


def _isolated(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter: a regression to a crash fails this test instead of
    killing the test session."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# -- crashes ------------------------------------------------------------------------------------
def test_onnx_shape_inference_never_sees_a_model_our_rules_reject():
    """A kernel wider than the input followed by a Slice: ONNX's C++ shape inference aborts the
    process on it (std::clamp assertion, onnx/onnx#7735); qengine's own rules run first and
    raise a ModelError, so ONNX's inference is never called."""
    r = _isolated("""
        import numpy as np, qengine
        from onnx import TensorProto, helper, numpy_helper
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", dilations=[50, 50]),
                 helper.make_node("Slice", ["y", "st", "en", "ax", "sp"], ["z"])]
        inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")] + [
            numpy_helper.from_array(np.array([v], np.int64), n)
            for n, v in [("st", 0), ("en", 1), ("ax", 2), ("sp", -1)]]
        g = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        try:
            qengine.load(m.SerializeToString())
        except qengine.ModelError as e:
            print("ModelError:", e)
        """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ModelError: node 'conv' (Conv): window of extent 101 does not fit" in r.stdout


# -- outputs that were returned uninitialized ---------------------------------------------------
def test_initializer_as_graph_output_is_returned():
    """A graph output that is an initializer: no node writes it, and the compiled model used
    to return the never-written output buffer (garbage from the allocator)."""
    c = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 4])],
               [("y", None), ("c", [2, 3])], [("c", c)])
    model = qengine.load(m.SerializeToString())
    out = model.run(np.ones((2, 4), np.float32), as_dict=True)
    np.testing.assert_array_equal(out["c"], c)
    out["c"][...] = -1                        # the caller's copy, not the weight itself
    np.testing.assert_array_equal(model.run(np.ones((2, 4), np.float32), as_dict=True)["c"], c)


def test_graph_input_passed_through_as_output():
    """An output that is the graph input itself shared the input's buffer slot and came back
    uninitialized."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 5])],
               [("y", None), ("x", ["N", 5])])
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    out = qengine.load(m.SerializeToString()).run(x, as_dict=True)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    assert not np.shares_memory(out["x"], x)


def test_output_renamed_to_input_of_a_quantized_model():
    m = _conv_model()
    q = qengine.quantize(m, [np.random.default_rng(2).standard_normal((2, 3, 8, 8))
                             .astype(np.float32)], progress=False, target_sqnr=None)
    p = q.to_onnx()
    p.graph.output.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]))
    model = qengine.load(p.SerializeToString())
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = model.run(x, as_dict=True)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], q.run(x))


# -- saving ----------------------------------------------------------------------------------------
def test_scalar_initializers_keep_their_shape_through_save():
    """np.ascontiguousarray makes 0-d arrays 1-d: scales and zero points came back as [1]."""
    m = _conv_model()
    q = qengine.quantize(m, [np.ones((1, 3, 8, 8), np.float32)], progress=False, target_sqnr=None)
    again = qengine.load(q.to_onnx().SerializeToString())
    for name, a in q.graph.initializers.items():
        assert again.graph.initializers[name].shape == a.shape, name


def test_empty_list_attribute_saves():
    node = helper.make_node("Squeeze", ["x"], ["y"])
    node.attribute.append(helper.make_attribute("axes", [], attr_type=onnx.AttributeProto.INTS))
    m = _model([node], [("x", [2, 3])], [("y", None)], opset=11)
    model = qengine.load(m.SerializeToString())
    again = qengine.load(model.to_onnx().SerializeToString())
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(again.run(x), model.run(x))


# -- malformed models: clear ModelErrors -----------------------------------------------------------
def test_invalid_utf8_names():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2])], [("y", [2])])
    blob = m.SerializeToString()
    i = blob.index(b"Relu")
    with pytest.raises(ModelError, match="not valid UTF-8"):
        qengine.load(blob[:i] + b"R\xffl\xfe" + blob[i + 4:])


def test_attribute_of_undefined_type():
    m = _model([helper.make_node("Constant", [], ["c"], name="k",
                                 value=numpy_helper.from_array(np.ones(2, np.float32))),
                helper.make_node("Add", ["x", "c"], ["y"])], [("x", [2])], [("y", [2])])
    m.graph.node[0].attribute[0].type = onnx.AttributeProto.UNDEFINED
    with pytest.raises(ModelError, match="'k': attribute 'value' has no value"):
        qengine.load(m.SerializeToString())


def test_trailing_empty_input_is_an_omitted_input():
    m = _model([helper.make_node("Add", ["x", "x", ""], ["y"])], [("x", [3])], [("y", [3])])
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(qengine.load(m.SerializeToString()).run(x), 2 * x)


def _qdq_conv():
    m = _conv_model()
    q = qengine.quantize(m, [np.random.default_rng(4).standard_normal((2, 3, 8, 8))
                             .astype(np.float32)], progress=False, target_sqnr=None)
    return q.to_onnx()


@pytest.mark.parametrize("axis", [4, 31, 2 ** 63 - 1, -2 ** 63])
def test_per_axis_dequantize_axis_out_of_range(axis):
    p = _qdq_conv()
    dq = next(n for n in p.graph.node if n.op_type == "DequantizeLinear" and
              any(a.name == "axis" for a in n.attribute))
    next(a for a in dq.attribute if a.name == "axis").i = axis
    with pytest.raises(ModelError, match=r"DequantizeLinear.*axis"):
        qengine.load(p.SerializeToString())


def test_per_axis_scale_of_the_wrong_length():
    p = _qdq_conv()
    dq = next(n for n in p.graph.node if n.op_type == "DequantizeLinear" and
              any(a.name == "axis" for a in n.attribute))
    for t in p.graph.initializer:
        if t.name in dq.input[1:]:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.concatenate([a, a[:1]]), t.name))
    with pytest.raises(ModelError, match="does not match axis 0"):
        qengine.load(p.SerializeToString())


def test_float_zero_point_is_rejected():
    p = _qdq_conv()
    q = next(n for n in p.graph.node if n.op_type == "QuantizeLinear")
    for t in p.graph.initializer:
        if t.name == q.input[2]:
            t.CopyFrom(numpy_helper.from_array(np.float32(3), t.name))
    with pytest.raises(ModelError, match="zero point must be an integer tensor"):
        qengine.load(p.SerializeToString())


def test_clip_bound_that_is_not_a_scalar():
    m = _model([helper.make_node("Clip", ["x", "lo"], ["y"], name="clip")], [("x", [4])],
               [("y", [4])], [("lo", np.zeros(0, np.float32))])
    with pytest.raises(ModelError, match="'clip' \\(Clip\\): min/max must be scalars"):
        qengine.load(m.SerializeToString())


def test_reshape_by_a_float_tensor():
    m = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
               [("x", [2, 3]), ("s", [2])], [("y", None)])
    with pytest.raises(ModelError, match="'r' \\(Reshape\\): the shape input must be int64"):
        qengine.load(m.SerializeToString())


def test_int8_kernel_limits_are_a_model_error():
    """A dilation beyond the kernels' index limit (2^24) in a quantized conv: the binding's
    ValueError escaped from the compiler; now it is a ModelError naming the node."""
    p = _qdq_conv()
    conv = next(n for n in p.graph.node if n.op_type == "Conv")
    del conv.attribute[:]
    conv.attribute.extend([helper.make_attribute("dilations", [2 ** 25, 2 ** 25]),
                           helper.make_attribute("pads", [2 ** 25] * 4)])
    del p.graph.value_info[:]      # the declared 6x6 output no longer holds (8x8 now)
    p.graph.output[0].type.tensor_type.ClearField("shape")
    model = qengine.load(p.SerializeToString())
    with pytest.raises(ModelError, match="'conv' \\(Conv\\): cannot run on the int8 kernels"):
        model.run(np.ones((1, 3, 8, 8), np.float32))


def test_damaged_keras_weights_are_a_model_error(tmp_path):
    pytest.importorskip("h5py")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    good = tmp_path / "m.keras"
    model.save(good)
    with zipfile.ZipFile(good) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    hit = 0
    for seed in range(12):          # bit flips at several places of the HDF5 weights file
        rng = np.random.default_rng(seed)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name, blob in members:
                if name.endswith(".h5"):
                    b = bytearray(blob)
                    for i in rng.integers(0, len(b), 6):
                        b[i] ^= 0xFF
                    blob = bytes(b)
                z.writestr(name, blob)
        bad = tmp_path / f"bad{seed}.keras"
        bad.write_bytes(out.getvalue())
        try:
            qengine.load(bad).run(np.ones((1, 6, 6, 2), np.float32))
        except qengine.QEngineError:
            hit += 1
    assert hit > 0


# -- run time --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, -1, 2.5, True, "8"])
def test_predict_batch_size_is_an_input_error(bs):
    m = qengine.load(_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 2])],
                            [("y", None)]).SerializeToString())
    with pytest.raises(InputError, match="batch_size"):
        m.predict(np.ones((3, 2), np.float32), batch_size=bs)


def test_output_too_large_to_allocate_is_an_execution_error():
    """An AveragePool whose pads make a 2^40-wide output: numpy's MemoryError escaped."""
    m = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 1],
                                 pads=[0, 0, 0, 2 ** 40])], [("x", [1, 1, 2, 2])], [("y", None)])
    model = qengine.load(m.SerializeToString())
    with pytest.raises(ExecutionError, match="out of memory") as e:
        model.run(np.ones((1, 1, 2, 2), np.float32))
    assert isinstance(e.value.__cause__, MemoryError)


def test_failing_python_step_names_the_node():
    """Whatever escapes a float (numpy) step becomes an ExecutionError naming node and op,
    with the original exception as its cause; qengine's own errors pass through as they are."""
    from qengine import _kernels as K

    def boom(views):
        raise IndexError("index 7 is out of bounds")

    def refuse(views):
        raise ModelError("node 'g' (Gather): index out of range")

    for fn, exc, text in [(boom, ExecutionError, "node 'n1' \\(Gather\\) failed: IndexError"),
                          (refuse, ModelError, "index out of range")]:
        prog = K.Program([K.PyStep("n1", "Gather", fn)], [])
        with pytest.raises(exc, match=text) as e:
            prog.run(K.RunContext(prog, 0, []))
    assert isinstance(e.value, ModelError)


def test_shape_conflict_found_when_compiling_for_an_input_shape():
    """A weight that broadcasts against a symbolic batch only for N = 4: the compile for
    N = 2 names the node."""
    w = np.ones((4, 3, 1, 1), np.float32)
    m = _model([helper.make_node("Sub", ["x", "w"], ["y"], name="sub")],
               [("x", ["N", 3, 2, 2])], [("y", None)], [("w", w)])
    model = qengine.load(m.SerializeToString())
    model.run(np.ones((4, 3, 2, 2), np.float32))
    with pytest.raises(ModelError, match="node 'sub' \\(Sub\\)"):
        model.run(np.ones((2, 3, 2, 2), np.float32))


def test_reference_executor_agrees_on_the_fixed_outputs():
    c = np.float32(7)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 2])],
               [("y", None), ("x", ["N", 2]), ("c", [])], [("c", c)])
    g = qengine.load(m.SerializeToString()).graph
    x = np.array([[-1, 2]], np.float32)
    ref = ReferenceExecutor(g).run({"x": x})
    ours = qengine.load(m.SerializeToString()).run(x, as_dict=True)
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k])


# -- found by UBSan (.ci/sanitize): misaligned loads -----------------------------------------------
def _unaligned(a: np.ndarray) -> np.ndarray:
    buf = np.empty(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_unaligned_input_is_copied_before_the_kernels():
    """A float32 input at an odd address went to the C quantize kernel as is: a misaligned
    load, undefined behaviour that UBSan reports (x86 tolerates it, other CPUs need not)."""
    m = _conv_model()
    q = qengine.quantize(m, [np.random.default_rng(6).standard_normal((2, 3, 8, 8))
                             .astype(np.float32)], progress=False, target_sqnr=None)
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(q.run(_unaligned(x)), q.run(x))
    np.testing.assert_array_equal(q.run(_unaligned(x), raw=True), q.run(x, raw=True))


def test_kernel_bindings_take_unaligned_arrays_safely():
    from qengine import _kernels as K
    x = np.random.default_rng(8).standard_normal(37).astype(np.float32)
    np.testing.assert_array_equal(K.quantize(_unaligned(x), 0.05, 128), K.quantize(x, 0.05, 128))
    codes = K.quantize(x, 0.05, 128)
    ints = (codes.astype(np.int32) - 128)
    np.testing.assert_array_equal(K.dequantize(_unaligned(ints), 0.5), K.dequantize(ints, 0.5))
    with pytest.raises(ValueError, match="aligned"):
        K.dequantize(codes, 0.05, 128, y=_unaligned(np.zeros(37, np.float32)))


def test_int8_mul_by_a_scalar_activation():
    """x * sigmoid(mean(x)) with the mean reduced to rank 0: the int8 Mul asked for the
    scalar to be laid out like x (a 4-axis permutation of a 0-axis tensor) and compiling
    failed with an IndexError (found on an onnxruntime QOperator model)."""
    m = _model([helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
                helper.make_node("Sigmoid", ["m"], ["s"]),
                helper.make_node("Mul", ["x", "s"], ["y"])], [("x", ["N", 3, 4, 5])],
               [("y", None)], opset=13)
    rng = np.random.default_rng(9)
    q = qengine.quantize(m, [rng.standard_normal((2, 3, 4, 5)).astype(np.float32)],
                         progress=False, target_sqnr=None)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ref = ReferenceExecutor(q.graph).run({"x": x})["y"]
    np.testing.assert_allclose(q.run(x), ref, atol=float(np.abs(ref).max()) / 100)
    assert "Mul_2" in q.node_counts({"x": x.shape})["int8"]


def test_matmul_integer_zero_point_of_the_wrong_length():
    b = np.ones((20, 7), np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b", "", "bz"], ["y"],
                                            name="mmi")], "m",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, ["N", 20])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                          [numpy_helper.from_array(b, "b"),
                           numpy_helper.from_array(np.zeros(3, np.int8), "bz")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match="'mmi' \\(MatMulInteger\\): zero point \\(input 3\\) "
                                         "has 3 values: it must be a scalar or one per column"):
        qengine.load(m.SerializeToString())


@pytest.mark.parametrize("pad", [2 ** 62, 2 ** 63 - 1])
def test_tensor_sizes_beyond_int64_are_a_model_error(pad):
    """Pads near 2^63 make an output whose size no int64 holds: numpy's ValueError ('maximum
    allowed dimension exceeded') escaped, and size products could wrap around silently."""
    m = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 1],
                                 pads=[pad, 0, 0, 0])], [("x", [1, 1, 2, 2])], [("y", None)])
    with pytest.raises(ModelError, match="too large to run"):
        qengine.load(m.SerializeToString()).run(np.ones((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("method", ["entropy", "percentile", "mse"])
def test_calibration_on_denormal_activations(method):
    """Activations of magnitude ~1e-45 (a Gemm with alpha = 1e-45): the histogram's bin width
    is denormal, 1 / width overflowed float32, and NaN bin indices crashed np.bincount."""
    w = np.random.default_rng(10).standard_normal((6, 4)).astype(np.float32)
    m = _model([helper.make_node("Gemm", ["x", "w"], ["y"], alpha=1e-45)],
               [("x", ["N", 6])], [("y", None)], [("w", w)])
    x = np.random.default_rng(11).standard_normal((8, 6)).astype(np.float32)
    q = qengine.quantize(m, [x], method=method, progress=False, target_sqnr=None)
    assert np.isfinite(q.run(x)).all()


def test_layer_norm_scale_that_does_not_broadcast():
    m = _model([helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln")],
               [("x", ["N", 20])], [("y", None)], [("s", np.ones((7, 20), np.float32))])
    with pytest.raises(ModelError, match="'ln' \\(LayerNormalization\\): scale \\[7, 20\\] does "
                                         "not broadcast"):
        qengine.load(m.SerializeToString())
