"""A MaxPool fused into the convolution that writes its input (lowering._fuse_maxpools: a stem
run by column strips pools its own output): the fused program drops the pool step and gives the
same bits as the unfused one; a pool whose input has another reader, or whose convolution does
not run by column strips, stays a step of its own."""
import numpy as np
import pytest
from onnx import helper

from util import fused_and_plain, model, quantized

SHAPE = [2, 3, 34, 30]


def _stem(case: str):
    """x -> Conv 7x7 stride 2 (3 -> 16 channels) -> Relu (or HardSwish) -> MaxPool 3x3 stride 2
    -> 1x1 Conv -> y, the ResNet stem's shape at a small size. branch: the Relu's output also
    feeds an Add; pointwise: the first conv is 1x1 (no column strips); ceil: the pool rounds its
    output size up, with a pad on one side only."""
    rng = np.random.default_rng(0)
    k = 1 if case == "pointwise" else 7
    w1 = rng.normal(0, 0.2, (16, 3, k, k)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 16, 1, 1)).astype(np.float32)
    act = "HardSwish" if case == "hardswish" else "Relu"
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if case == "ceil":
        pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 0, 1], ceil_mode=1)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[k // 2] * 4,
                         name="stem"),
        helper.make_node(act, ["c1"], ["a1"], name="act"),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="pool", **pool),
        helper.make_node("Conv", ["p1", "w2"], ["y"], name="conv2"),
    ]
    outputs = [("y", None)]
    if case == "branch":
        nodes.append(helper.make_node("Add", ["a1", "a1"], ["z"], name="add"))
        outputs.append(("z", None))
    return model(nodes, [("x", SHAPE)], outputs, [("w1", w1), ("w2", w2)])


@pytest.mark.parametrize("case", ["plain", "hardswish", "ceil", "branch", "pointwise"])
def test_max_pool_runs_inside_its_stem_with_the_same_bits(threads, case):
    rng = np.random.default_rng(1)
    m = _stem(case)
    calib = [{"x": rng.normal(0, 1, SHAPE).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, SHAPE).astype(np.float32)}
    _, fused_steps, plain_steps = fused_and_plain(quantized(m, calib), feeds, "_fuse_maxpools")
    assert "pool" in plain_steps
    fuses = case in ("plain", "hardswish", "ceil")
    assert ("pool" in fused_steps) != fuses
    act = "+HardSwish" if case == "hardswish" else ""
    assert fused_steps["stem"] == (f"Conv{act}+MaxPool" if fuses else f"Conv{act}")
