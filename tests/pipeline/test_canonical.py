"""Canonical spellings (qengine/passes/canonical.py): a Sum of two inputs quantizes as the int8
Add it is. Caffe2's ResNet-50 of the ONNX model zoo joins its residual branches with Sum, and
each join had run in float between a DequantizeLinear and a QuantizeLinear (qengine bench
light_resnet50.onnx --compare onnxruntime-int8: 40 ms, 1.6x onnxruntime int8)."""
import numpy as np
import pytest
from onnx import helper

import qengine
from util import assert_codes_close, model, run_float, sqnr_db


def _residual(op_type, n_inputs, opset):
    """x -> 3x3 Conv -> op(conv, x[, x]) -> Relu -> y, NCHW 8 channels."""
    w = np.random.default_rng(0).normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node(op_type, ["c"] + ["x"] * (n_inputs - 1), ["s"], name="join"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    return model(nodes, [("x", ["N", 8, 10, 12])], [("y", ["N", 8, 10, 12])], [("w", w)],
                 opset=opset)


@pytest.mark.parametrize("opset", [9, 13])
def test_a_sum_of_two_runs_as_the_int8_add(threads, opset):
    rng = np.random.default_rng(1)
    calib = [{"x": rng.normal(0, 1, (2, 8, 10, 12)).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, (3, 8, 10, 12)).astype(np.float32)}
    q = qengine.quantize(_residual("Sum", 2, opset), calib, progress=False, target_sqnr=None,
                         num_threads=threads)
    assert q.node_counts()["float"] == []
    assert "join" in q.node_counts()["int8"]
    assert [n.op_type for n in q.graph.nodes if n.name == "join"] == ["Add"]
    assert_codes_close(q, feeds)
    # and the same model spelled with Add quantizes to the same codes
    qa = qengine.quantize(_residual("Add", 2, opset), calib, progress=False, target_sqnr=None,
                          num_threads=threads)
    np.testing.assert_array_equal(q.run(feeds), qa.run(feeds))
    assert sqnr_db(run_float(_residual("Sum", 2, opset), feeds)["y"], q.run(feeds)) > 30


def test_a_sum_of_three_stays_a_sum():
    # as a chain of Adds it would round once more per link
    rng = np.random.default_rng(2)
    calib = [{"x": rng.normal(0, 1, (2, 8, 10, 12)).astype(np.float32)}]
    q = qengine.quantize(_residual("Sum", 3, 13), calib, progress=False, target_sqnr=None)
    assert [n.op_type for n in q.graph.nodes if n.name == "join"] == ["Sum"]
    feeds = {"x": rng.normal(0, 1, (1, 8, 10, 12)).astype(np.float32)}
    assert sqnr_db(run_float(_residual("Sum", 3, 13), feeds)["y"], q.run(feeds)) > 30
