"""LRN between convolutions (AlexNet, GoogLeNet): the float op computes on the channels-last
storage of the int8 kernels and writes its output there in place (Op.keeps_layout), with the
same values as when its output went to logical order."""
import numpy as np
from onnx import helper

import qengine
from qengine.ops import norm
from util import model


def _alexnet_block():
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((32, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((16, 32, 3, 3)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("LRN", ["r1"], ["n1"], size=5, alpha=1e-3, beta=0.75, bias=2.0),
             helper.make_node("Conv", ["n1", "w2"], ["y"], pads=[1, 1, 1, 1])]
    return model(nodes, [("x", ["N", 3, 20, 20])], [("y", ["N", 16, 20, 20])],
                 [("w1", w1), ("w2", w2)])


def _run(m, calib, x):
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None)
    steps = [s[0] for s in q.run_profiled({"x": x})[1]]
    return q.run(x), steps


def test_lrn_output_stays_in_the_kernels_layout(monkeypatch):
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((4, 3, 20, 20)).astype(np.float32)
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float32)
    m = _alexnet_block()
    y, steps = _run(m, calib, x)
    monkeypatch.setattr(norm.LRN, "keeps_layout", False)
    y_logical, steps_logical = _run(m, calib, x)
    np.testing.assert_array_equal(y, y_logical)
    assert "LRN" in steps
    assert steps.count("Relayout") < steps_logical.count("Relayout"), (steps, steps_logical)
