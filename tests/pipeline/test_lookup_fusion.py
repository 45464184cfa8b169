"""Lookup regions fused into the convolution that writes their input (lowering._fuse_lookups):
the fused program drops the lookup step and gives the same bits as the unfused one."""
import numpy as np
import pytest
from onnx import helper

from util import fused_and_plain, model, quantized


def _conv_hardswish(branch: bool):
    """x -> Conv 3x3 -> HardSwish -> depthwise Conv -> Sigmoid -> 1x1 Conv -> y; with branch,
    the first conv's output also feeds an Add, so its lookup must stay a step of its own."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (16, 1, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 0.3, (8, 16, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("HardSwish", ["c1"], ["h1"], name="hswish1"),
        helper.make_node("Conv", ["h1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=16,
                         name="dw2"),
        helper.make_node("Sigmoid", ["c2"], ["h2"], name="sigmoid2"),
        helper.make_node("Conv", ["h2", "w3"], ["y"], name="conv3"),
    ]
    outputs = [("y", [2, 8, 10, 12])]
    if branch:
        nodes.append(helper.make_node("Add", ["c1", "h1"], ["z"], name="add"))
        outputs.append(("z", [2, 16, 10, 12]))
    return model(nodes, [("x", [2, 8, 10, 12])], outputs,
                 [("w1", w1), ("w2", w2), ("w3", w3)])


@pytest.mark.parametrize("branch", [False, True])
def test_lookup_runs_inside_its_conv_with_the_same_bits(threads, branch):
    rng = np.random.default_rng(1)
    m = _conv_hardswish(branch)
    calib = [{"x": rng.normal(0, 1, (2, 8, 10, 12)).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, (2, 8, 10, 12)).astype(np.float32)}
    out, fused_steps, plain_steps = fused_and_plain(quantized(m, calib), feeds, "_fuse_lookups")
    assert sorted(out) == (["y", "z"] if branch else ["y"])
    assert "hswish1" in plain_steps and "sigmoid2" in plain_steps
    assert "sigmoid2" not in fused_steps            # its only reader: the dw conv's tasks
    assert ("hswish1" in fused_steps) == branch     # the Add reads the conv's output too
    assert fused_steps["dw2"] == "Conv+Sigmoid"     # what profiles show
    assert fused_steps["conv1"] == ("Conv" if branch else "Conv+HardSwish")
