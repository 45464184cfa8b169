"""ReferenceExecutor behaviour: prepared once, dynamic batch, every tensor on request, the
observer callback, and output ownership."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qengine.frontends import import_onnx
from qengine.runtime import ReferenceExecutor, run_reference

from models import random_input, resnet18, yolo_block


@pytest.fixture(scope="module")
def net():
    model = resnet18(size=16, width=4, num_classes=3)
    return model, import_onnx(model)


def test_dynamic_batch_matches_per_sample_runs(net):
    model, graph = net
    ex = ReferenceExecutor(graph, check_shapes=True)
    batch = random_input(model, 5, seed=1)["input"]
    whole = ex.run({"input": batch})[graph.output_names[0]]
    assert whole.shape == (5, 3) and whole.dtype == np.float32
    for i in range(5):
        one = ex.run({"input": batch[i:i + 1]})[graph.output_names[0]]
        np.testing.assert_allclose(one, whole[i:i + 1], rtol=1e-5, atol=1e-6)


def test_all_outputs_and_observer_agree(net):
    model, graph = net
    ex = ReferenceExecutor(graph)
    feeds = random_input(model, 2)
    everything = ex.run(feeds, outputs="all")
    expected = ["input"] + [o for n in graph.nodes for o in n.outputs]
    assert list(everything) == expected
    seen = []
    final = ex.run(feeds, on_value=lambda name, arr: seen.append((name, arr.copy())))
    assert [s[0] for s in seen] == expected
    for name, arr in seen:
        np.testing.assert_array_equal(arr, everything[name])
    np.testing.assert_array_equal(final[graph.output_names[0]],
                                  everything[graph.output_names[0]])


def test_named_intermediate_outputs(net):
    model, graph = net
    ex = ReferenceExecutor(graph)
    feeds = random_input(model, 1)
    mid = graph.nodes[len(graph.nodes) // 2].outputs[0]
    out = ex.run(feeds, outputs=[mid, graph.nodes[0].outputs[0]])
    assert list(out) == [mid, graph.nodes[0].outputs[0]]
    np.testing.assert_array_equal(out[mid], ex.run(feeds, outputs="all")[mid])
    assert ex.run(feeds, outputs=mid)[mid].shape == out[mid].shape


def test_feeds_are_not_modified_and_lists_are_accepted():
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    ex = ReferenceExecutor(import_onnx(m))
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    y = ex.run({"x": x})["y"]
    assert x.tolist() == [-1.0, 0.5, 2.0] and y.tolist() == [0.0, 0.5, 2.0]
    assert ex.run({"x": [-3.0, 1.0, 2.0]})["y"].tolist() == [0.0, 1.0, 2.0]


def test_constant_output_is_a_copy():
    # an output that folds to a constant is returned as a fresh array each run
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["a", "a"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "a")]),
        opset_imports=[helper.make_opsetid("", 17)])
    g = import_onnx(m)
    assert "y" in g.initializers
    ex = ReferenceExecutor(g)
    first = ex.run({"x": np.zeros(1, np.float32)})["y"]
    first[:] = 99
    assert run_reference(g, {"x": np.zeros(1, np.float32)})["y"].tolist() == [2.0, 4.0]


def test_two_outputs_and_batch_sizes_yolo():
    model = yolo_block(size=16, width=4)
    ex = ReferenceExecutor(import_onnx(model), check_shapes=True)
    for b in (1, 3):
        boxes, scores = ex.run(random_input(model, b)).values()
        assert boxes.shape == scores.shape == (b, 3 * 4 * 4, 9)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)   # softmax over anchors
        assert ((boxes > 0) & (boxes < 1)).all()
