"""Per-channel affine nodes before quantization (qengine/passes/fuse.py): BatchNormalization,
and Mul / Add by a per-channel constant, fold into the Conv before them; a BatchNormalization
with no such Conv (after a Concat: DenseNet) becomes a depthwise 1x1 Conv. Either way it runs
on the int8 kernels instead of in float between a DequantizeLinear and a QuantizeLinear (the
ONNX model zoo's DenseNet-121, qengine bench light_densenet121.onnx: 67 ms -> 15 ms)."""
import numpy as np
from onnx import helper

import qengine
from util import assert_codes_close, model, run_float, sqnr_db

C, H, W = 8, 10, 12


def _bn_inits(name, rng, c):
    return [(f"{name}_s", rng.uniform(0.2, 3.0, c).astype(np.float32)),
            (f"{name}_b", rng.normal(0, 0.5, c).astype(np.float32)),
            (f"{name}_m", rng.normal(0, 0.5, c).astype(np.float32)),
            (f"{name}_v", rng.uniform(0.5, 2.0, c).astype(np.float32))]


def _bn(name, x, y):
    return helper.make_node("BatchNormalization", [x] + [f"{name}_{k}" for k in "sbmv"], [y],
                            name=name, epsilon=1e-5)


def _dense_block():
    """x -> Conv -> Concat(x, conv) -> BN -> Mul(scale) -> Add(shift) -> Relu -> Conv -> y:
    DenseNet's pre-activation layer as Caffe2 exported it (the BN's scale and shift again as
    a Mul and an Add)."""
    rng = np.random.default_rng(0)
    inits = [("w1", rng.normal(0, 0.3, (C, C, 3, 3)).astype(np.float32)),
             ("w2", rng.normal(0, 0.2, (C, 2 * C, 3, 3)).astype(np.float32)),
             ("scale", rng.uniform(0.5, 2, (2 * C, 1, 1)).astype(np.float32)),
             ("shift", rng.normal(0, 0.3, (2 * C, 1, 1)).astype(np.float32))]
    inits += _bn_inits("bn", rng, 2 * C)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Concat", ["x", "c1"], ["cat"], axis=1, name="concat"),
             _bn("bn", "cat", "n"),
             helper.make_node("Mul", ["n", "scale"], ["m"], name="scale"),
             helper.make_node("Add", ["m", "shift"], ["a"], name="shift"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    return model(nodes, [("x", ["N", C, H, W])], [("y", ["N", C, H, W])], inits)


def _quantize(m, seed=1):
    rng = np.random.default_rng(seed)
    calib = [{"x": rng.normal(0, 1, (2, C, H, W)).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, (3, C, H, W)).astype(np.float32)}
    return qengine.quantize(m, calib, progress=False, target_sqnr=None), feeds


def test_a_batchnorm_after_a_concat_runs_int8_as_a_depthwise_conv():
    q, feeds = _quantize(_dense_block())
    assert q.node_counts()["float"] == []
    ops = {n.name: n for n in q.graph.nodes}
    assert ops["bn"].op_type == "Conv" and ops["bn"].attrs["group"] == 2 * C
    # the scale and shift after it joined it
    assert not any(n.op_type in ("Mul", "Add", "BatchNormalization") for n in q.graph.nodes)
    assert_codes_close(q, feeds)
    assert sqnr_db(run_float(_dense_block(), feeds)["y"], q.run(feeds)) > 30


def test_a_scale_and_shift_after_a_conv_fold_into_it():
    """Caffe2's AffineChannel: Conv -> BN -> Mul -> Add -> Relu, all one Conv."""
    rng = np.random.default_rng(2)
    inits = [("w", rng.normal(0, 0.3, (C, C, 3, 3)).astype(np.float32)),
             ("scale", rng.uniform(0.5, 2, (C, 1, 1)).astype(np.float32)),
             ("shift", rng.normal(0, 0.3, (1, C, 1, 1)).astype(np.float32))]
    inits += _bn_inits("bn", rng, C)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             _bn("bn", "c", "n"),
             helper.make_node("Mul", ["scale", "n"], ["m"], name="scale"),
             helper.make_node("Add", ["m", "shift"], ["a"], name="shift"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    m = model(nodes, [("x", ["N", C, H, W])], [("y", ["N", C, H, W])], inits)
    q, feeds = _quantize(m)
    assert [n.op_type for n in q.graph.nodes if n.op_type not in
            ("QuantizeLinear", "DequantizeLinear")] == ["Conv", "Relu"]
    assert_codes_close(q, feeds)
    assert sqnr_db(run_float(m, feeds)["y"], q.run(feeds)) > 35


def test_what_is_not_a_per_channel_affine_of_a_conv_output_stays():
    """A constant that varies along a spatial axis, an Add of two activations, and a Mul of a
    conv output that another node also reads are no per-channel affine map of the conv."""
    rng = np.random.default_rng(3)
    inits = [("w", rng.normal(0, 0.3, (C, C, 3, 3)).astype(np.float32)),
             ("w2", rng.normal(0, 0.3, (C, C, 1, 1)).astype(np.float32)),
             ("rows", rng.uniform(0.5, 2, (1, 1, H, 1)).astype(np.float32)),
             ("k", rng.uniform(0.5, 2, (C, 1, 1)).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Mul", ["c", "rows"], ["m"], name="by_rows"),
             helper.make_node("Conv", ["m", "w2"], ["d"], name="conv2"),
             helper.make_node("Mul", ["d", "k"], ["e"], name="shared_scale"),
             helper.make_node("Add", ["d", "e"], ["y"], name="join")]
    m = model(nodes, [("x", ["N", C, H, W])], [("y", ["N", C, H, W])], inits)
    q, feeds = _quantize(m)
    names = {n.name: n.op_type for n in q.graph.nodes}
    assert (names["by_rows"], names["shared_scale"], names["join"]) == ("Mul", "Mul", "Add")
    assert sqnr_db(run_float(m, feeds)["y"], q.run(feeds)) > 25


def _concat_bn_net(spatial):
    """The dense layer of _dense_block (no Caffe2 scale) over 1-D or 3-D maps."""
    rng = np.random.default_rng(4)
    rank, k = 2 + len(spatial), [3] * len(spatial)
    pads = [1] * (2 * len(spatial))
    inits = [("w1", rng.normal(0, 0.3, [C, C] + k).astype(np.float32)),
             ("w2", rng.normal(0, 0.2, [C, 2 * C] + k).astype(np.float32))]
    inits += _bn_inits("bn", rng, 2 * C)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=pads, name="conv1"),
             helper.make_node("Concat", ["x", "c1"], ["cat"], axis=1, name="concat"),
             _bn("bn", "cat", "n"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=pads, name="conv2")]
    assert rank in (3, 5)
    return model(nodes, [("x", ["N", C] + spatial)], [("y", ["N", C] + spatial)], inits)


def test_a_batchnorm_over_1d_maps_runs_int8_and_over_3d_maps_stays():
    # 3-D convolutions run in float here: a depthwise one would be slower than the BN
    rng = np.random.default_rng(5)
    for spatial, expect, db in (([20], "Conv", 30), ([3, 4, 5], "BatchNormalization", 15)):
        m = _concat_bn_net(spatial)
        calib = [{"x": rng.normal(0, 1, [2, C] + spatial).astype(np.float32)} for _ in range(2)]
        feeds = {"x": rng.normal(0, 1, [2, C] + spatial).astype(np.float32)}
        q = qengine.quantize(m, calib, progress=False, target_sqnr=None)
        assert {n.name: n.op_type for n in q.graph.nodes}["bn"] == expect
        if expect == "Conv":
            assert "bn" in q.node_counts()["int8"]
        assert sqnr_db(run_float(m, feeds)["y"], q.run(feeds)) > db
