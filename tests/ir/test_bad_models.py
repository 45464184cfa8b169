"""Bad models and bad inputs give a clear qengine exception naming the problem: never a
crash, never a bare numpy/protobuf traceback from deep inside."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from qengine.errors import (ExecutionError, InputError, ModelError, QEngineError,
                            UnsupportedOpError)
from qengine.frontends import import_onnx
from qengine.runtime import ReferenceExecutor

from models import make_model, opset11_constant_weights, random_input, resnet18, vi



def _w(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


SMALL = resnet18(size=16, width=4, num_classes=3).SerializeToString()


# -- not a model ------------------------------------------------------------------------------
@pytest.mark.parametrize("blob", [b"", b"\x00" * 10, b"garbage, not a protobuf at all",
                                  b"\xff\xff\xff\xff\xff\xff"])
def test_garbage_bytes(blob):
    with pytest.raises(ModelError):
        import_onnx(blob)


@pytest.mark.parametrize("cut", [1, 7, 100, len(SMALL) // 3, len(SMALL) // 2, len(SMALL) - 3])
def test_truncated_protobuf(cut):
    with pytest.raises(ModelError):
        import_onnx(SMALL[:cut])


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(ModelError, match="no ONNX model file"):
        import_onnx(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="pass a path, bytes or an onnx.ModelProto"):
        import_onnx(12345)


def test_external_data_needs_the_path(tmp_path):
    model = resnet18(size=16, width=4, num_classes=3)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    g = import_onnx(path)            # from the path the data is found
    assert len(g.initializers) > 10
    with pytest.raises(ModelError, match="external file"):
        import_onnx(path.read_bytes())   # bytes alone cannot reach the data


# -- structurally broken graphs -----------------------------------------------------------------
def test_missing_initializer():
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")],
               [vi("x", [1, 3, 8, 8])], [vi("y", None)])
    with pytest.raises(ModelError, match=r"conv1.*'W'"):
        import_onnx(m)


def test_missing_graph_output():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])],
               [vi("z", [2])])
    with pytest.raises(ModelError, match="'z'"):
        import_onnx(m)


def test_cycle():
    m = make_model([helper.make_node("Add", ["x", "b"], ["a"], name="first"),
                helper.make_node("Relu", ["a"], ["b"], name="second"),
                helper.make_node("Relu", ["a"], ["y"], name="out")],
               [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(ModelError, match=r"cycle.*'first'.*'second'|cycle.*'second'.*'first'"):
        import_onnx(m)


def test_tensor_produced_twice():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="a"),
                helper.make_node("Neg", ["x"], ["y"], name="b")],
               [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(ModelError, match="produced by nodes 'a' and 'b'"):
        import_onnx(m)


def test_unknown_op_names_op_domain_and_node():
    m = make_model([helper.make_node("FancyOp", ["x"], ["y"], name="fancy")],
               [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(UnsupportedOpError) as e:
        import_onnx(m)
    assert "'FancyOp'" in str(e.value) and "'ai.onnx'" in str(e.value) and "'fancy'" in str(e.value)
    m = make_model([helper.make_node("Gelu", ["x"], ["y"], name="g", domain="com.microsoft")],
               [vi("x", [2])], [vi("y", [2])])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpError, match="com.microsoft"):
        import_onnx(m)


def test_control_flow_is_unsupported_not_a_crash():
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [],
                             [vi("o", [2])])
    m = make_model([helper.make_node("If", ["c"], ["y"], name="branch", then_branch=body,
                                 else_branch=body)],
               [vi("c", [], TensorProto.BOOL), vi("x", [2])], [vi("y", [2])])
    with pytest.raises(UnsupportedOpError, match="'If'.*'branch'"):
        import_onnx(m)


@pytest.mark.parametrize("attrs, match", [
    ({"auto_pad": "SOMETIMES"}, "auto_pad"),
    ({"group": 0}, "group"),
    ({"strides": [1, 0]}, "strides"),
    ({"kernel_shape": [3]}, "kernel_shape"),
])
def test_bad_attribute_names_node_and_attribute(attrs, match):
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="convA", **attrs)],
               [vi("x", [1, 2, 8, 8])], [vi("y", None)],
               [_w("W", np.ones((4, 2, 3, 3)))])
    with pytest.raises(ModelError, match=rf"convA.*{match}"):
        import_onnx(m)


# -- shape mismatches ---------------------------------------------------------------------------
@pytest.mark.parametrize("node, inits, match", [
    (helper.make_node("Add", ["x", "B"], ["y"], name="add1"), [_w("B", np.ones((5, 8, 8)))],
     r"add1.*broadcast"),
    (helper.make_node("Conv", ["x", "W"], ["y"], name="conv1"),
     [_w("W", np.ones((4, 5, 3, 3)))], r"conv1.*3 channels"),
    (helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"), [_w("W", np.ones((9, 4)))],
     r"mm.*inner dimensions"),
    (helper.make_node("Reshape", ["x", "S"], ["y"], name="rs"),
     [numpy_helper.from_array(np.array([1, 100], np.int64), "S")], r"rs.*reshape"),
    (helper.make_node("Concat", ["x", "B"], ["y"], name="cat", axis=1),
     [_w("B", np.ones((1, 3, 7, 8)))], r"cat"),
    (helper.make_node("Gemm", ["x", "W"], ["y"], name="fc"), [_w("W", np.ones((4, 4)))],
     r"fc.*2-D"),
])
def test_shape_mismatch(node, inits, match):
    m = make_model([node], [vi("x", [1, 3, 8, 8])], [vi("y", None)], inits)
    with pytest.raises(ModelError, match=match):
        import_onnx(m)


def test_declared_shape_contradicts_the_op():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2, 3])],
               [vi("y", [2, 4])])
    with pytest.raises(ModelError, match=r"'r'.*'y'"):
        import_onnx(m)


def test_unsupported_element_type():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
               [vi("x", [2], TensorProto.BFLOAT16)], [vi("y", [2], TensorProto.BFLOAT16)])
    with pytest.raises(ModelError, match="BFLOAT16"):
        import_onnx(m)


def test_malformed_initializer_data():
    t = _w("B", np.ones(4))
    t.raw_data = t.raw_data[:6]      # 6 bytes cannot hold 4 floats
    m = make_model([helper.make_node("Add", ["x", "B"], ["y"], name="a")], [vi("x", [4])],
               [vi("y", [4])], [t])
    with pytest.raises(ModelError, match="'B'"):
        import_onnx(m)


def test_constant_input_that_cannot_evaluate():
    # a Reshape of constants to an impossible shape is caught while folding, by node name
    m = make_model([helper.make_node("Reshape", ["A", "S"], ["r"], name="bad_reshape"),
                helper.make_node("Add", ["x", "r"], ["y"], name="a")],
               [vi("x", [6])], [vi("y", None)],
               [_w("A", np.ones(6)), numpy_helper.from_array(np.array([4], np.int64), "S")])
    with pytest.raises(ModelError, match="bad_reshape"):
        import_onnx(m)


# -- bad run-time inputs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executor():
    return ReferenceExecutor(import_onnx(SMALL))


@pytest.mark.parametrize("feeds, match", [
    ({}, r"missing input\(s\) \['input'\]"),
    ({"input": np.zeros((1, 3, 16, 16), np.float32), "extra": np.zeros(1)},
     r"unknown input\(s\) \['extra'\]"),
    ({"input": np.zeros((1, 3, 16, 16), np.float64)}, r"'input' has dtype float64"),
    ({"input": np.zeros((3, 16, 16), np.float32)}, r"'input'.*rank 3"),
    ({"input": np.zeros((1, 4, 16, 16), np.float32)}, r"'input'.*dim 1 must be 3"),
    ({"input": "a string"}, r"'input'"),
])
def test_bad_feeds(executor, feeds, match):
    with pytest.raises(InputError, match=match):
        executor.run(feeds)


def test_feeds_must_be_a_mapping(executor):
    with pytest.raises(InputError, match="dict"):
        executor.run([np.zeros((1, 3, 16, 16), np.float32)])


def test_unknown_output_name(executor):
    with pytest.raises(InputError, match="no_such_tensor"):
        executor.run({"input": np.zeros((1, 3, 16, 16), np.float32)}, outputs=["no_such_tensor"])


def test_symbols_must_agree_across_inputs():
    m = make_model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
               [vi("a", ["N", 4]), vi("b", ["N", 4])], [vi("y", ["N", 4])])
    ex = ReferenceExecutor(import_onnx(m))
    with pytest.raises(InputError, match="'N' is 2 but 'N' is 3 elsewhere|'N'"):
        ex.run({"a": np.zeros((3, 4), np.float32), "b": np.zeros((2, 4), np.float32)})


def test_failure_inside_a_node_names_it():
    # the Reshape target comes from an input: only the run can find it wrong
    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="dyn_reshape")],
               [vi("x", [2, 3]), vi("s", [2], TensorProto.INT64)], [vi("y", None)])
    ex = ReferenceExecutor(import_onnx(m))
    with pytest.raises(QEngineError, match="dyn_reshape"):
        ex.run({"x": np.zeros((2, 3), np.float32), "s": np.array([4, 4], np.int64)})
    m = make_model([helper.make_node("Gather", ["x", "i"], ["y"], name="gather_oob")],
               [vi("x", [2, 3]), vi("i", [1], TensorProto.INT64)], [vi("y", None)])
    ex = ReferenceExecutor(import_onnx(m))
    with pytest.raises(QEngineError, match="gather_oob.*out of range"):
        ex.run({"x": np.zeros((2, 3), np.float32), "i": np.array([7], np.int64)})


def test_execution_error_for_numpy_failures():
    # MatMul with a symbolic inner dim: shapes are checked only when it runs
    m = make_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm_dyn")],
               [vi("a", [2, "K"]), vi("b", ["J", 3])], [vi("y", None)])
    ex = ReferenceExecutor(import_onnx(m))
    with pytest.raises(ExecutionError, match=r"mm_dyn.*float32\[2, 4\], float32\[5, 3\]"):
        ex.run({"a": np.zeros((2, 4), np.float32), "b": np.zeros((5, 3), np.float32)})


# -- fuzz: corrupted bytes never escape as anything but a qengine error -------------------------
FUZZ_BASE = opset11_constant_weights(size=8, width=4, num_classes=3).SerializeToString()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_models_fail_cleanly(data):
    blob = bytearray(FUZZ_BASE)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        graph = import_onnx(bytes(blob))
    except QEngineError:
        return
    feeds = random_input(onnx.load_from_string(FUZZ_BASE), 1)
    try:
        ex = ReferenceExecutor(graph)
        if set(ex.input_names) == set(feeds):
            ex.run(feeds)
    except QEngineError:
        pass
