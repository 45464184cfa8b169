"""Layouts that differ only in where they put size-1 axes hold the same bytes (plan.py: a
relayout between them is a view, a graph output stored so needs no copy; glue.reshape_view_perm
places size-1 axes canonically). Checked on the steps the compiled program runs and on its
results, which must not depend on the batch."""
import numpy as np
import pytest
from onnx import helper

import qengine
from util import assert_codes_close, model, quantized_codes


def _relayouts(q, feeds) -> list:
    return [s[1] for s in q.run_profiled(feeds)[1] if s[0] == "Relayout"]


def _detection_head():
    """Two heads, each x -> 1x1 Conv -> Reshape [N, 2, 7, H, W] -> Transpose to
    [N, 2, H, W, 7] -> Sigmoid -> Reshape [N, 2 * H * W, 7], concatenated: a YOLO-style
    output. At batch 1 the NHWC conv outputs had been relabelled with the batch axis last, and
    the float output was copied into the caller's array by one more relayout than at any other
    batch."""
    rng = np.random.default_rng(0)
    nodes, inits = [], [("s5", np.array([0, 2, 7, 6, 5], np.int64)),
                        ("s3", np.array([0, -1, 7], np.int64))]
    for h in range(2):
        inits.append((f"w{h}", rng.normal(0, 0.3, (14, 8, 1, 1)).astype(np.float32)))
        nodes += [
            helper.make_node("Conv", ["x", f"w{h}"], [f"c{h}"], name=f"conv{h}"),
            helper.make_node("Reshape", [f"c{h}", "s5"], [f"r{h}"], name=f"boxes{h}"),
            helper.make_node("Transpose", [f"r{h}"], [f"t{h}"], perm=[0, 1, 3, 4, 2],
                             name=f"to_last{h}"),
            helper.make_node("Sigmoid", [f"t{h}"], [f"p{h}"], name=f"sigmoid{h}"),
            helper.make_node("Reshape", [f"p{h}", "s3"], [f"f{h}"], name=f"flatten{h}"),
        ]
    nodes.append(helper.make_node("Concat", ["f0", "f1"], ["y"], axis=1, name="concat"))
    return model(nodes, [("x", ["N", 8, 6, 5])], [("y", ["N", 120, 7])], inits)


def _one_channel_net():
    """x [N, 1, H, W] -> 3x3 Conv -> Relu -> 3x3 Conv to one channel -> y [N, 1, H, W]: NCHW
    and NHWC of one channel are the same bytes, at the input and at the output."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (1, 4, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["h"], name="relu"),
        helper.make_node("Conv", ["h", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2"),
    ]
    return model(nodes, [("x", ["N", 1, 9, 7])], [("y", ["N", 1, 9, 7])],
                 [("w1", w1), ("w2", w2)])


def _quantized(m, shape, threads):
    rng = np.random.default_rng(2)
    calib = [{"x": rng.normal(0, 1, (2,) + shape).astype(np.float32)} for _ in range(2)]
    return qengine.quantize(m, calib, progress=False, target_sqnr=None, num_threads=threads)


def test_batch_of_one_detection_head_copies_no_more_than_other_batches(threads):
    q = _quantized(_detection_head(), (8, 6, 5), threads)
    x = np.random.default_rng(3).normal(0, 1, (3, 8, 6, 5)).astype(np.float32)
    many, one = {"x": x}, {"x": x[:1].copy()}
    # the input's NCHW -> NHWC and each head's transposed boxes before its flattening
    # Reshape: real moves at every batch; nothing more at batch 1
    assert len(_relayouts(q, one)) == len(_relayouts(q, many)) == 3, _relayouts(q, one)
    y_many, y_one = q.run(many, as_dict=True)["y"], q.run(one, as_dict=True)["y"]
    assert y_one.shape == (1, 120, 7)
    np.testing.assert_array_equal(y_one[0], y_many[0])


@pytest.mark.parametrize("batch", [1, 2])
def test_one_channel_input_and_output_are_read_and_written_in_place(threads, batch):
    q = _quantized(_one_channel_net(), (1, 9, 7), threads)
    x = np.random.default_rng(4).normal(0, 1, (3, 1, 9, 7)).astype(np.float32)
    feeds = {"x": x[:batch].copy()}
    assert _relayouts(q, feeds) == []
    y = q.run(feeds, as_dict=True)["y"]
    y_all = q.run({"x": x}, as_dict=True)["y"]
    assert y.shape == (batch, 1, 9, 7)
    np.testing.assert_array_equal(y, y_all[:batch])
    # and the same bits as the float reference of the QDQ graph gives for these codes
    assert_codes_close(q, feeds, exact=True)


def _feature_map_net():
    """x [N, 3, H, W] -> 3x3 Conv to 16 channels -> Relu -> y [N, 16, H, W]: a float output
    of several channels, stored NHWC by the convolution and wanted NCHW."""
    w = np.random.default_rng(5).normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return model(nodes, [("x", ["N", 3, 9, 70])], [("y", ["N", 16, 9, 70])], [("w", w)])


@pytest.mark.parametrize("batch", [1, 3])
def test_a_float_output_is_put_in_order_as_codes_then_dequantized(threads, batch):
    # dequantize-then-transpose had gathered the floats 4 bytes at a time: 18% of a stem
    # model with a 64-channel 56 x 56 output at batch 8
    q = _quantized(_feature_map_net(), (3, 9, 70), threads)
    feeds = {"x": np.random.default_rng(6).normal(0, 1, (batch, 3, 9, 70)).astype(np.float32)}
    steps = [op for op, *_ in q.run_profiled(feeds)[1]]
    assert steps[-2:] == ["Relayout", "DequantizeLinear"], steps
    assert steps.count("Relayout") == 2, steps   # the input's and the output codes'
    y = q.run(feeds, as_dict=True)["y"]
    assert y.shape == (batch, 16, 9, 70)
    # the floats are the output codes' values, element for element
    dq = next(n for n in q.graph.nodes if n.op_type == "DequantizeLinear" and n.outputs == ["y"])
    scale, zp = (q.graph.initializers[t] for t in dq.inputs[1:])
    codes = quantized_codes(q, feeds)[0][dq.inputs[0]]
    np.testing.assert_array_equal(y, (codes.astype(np.int32) - zp).astype(np.float32) * scale)
    assert_codes_close(q, feeds)


def _channel_shuffle_net():
    """ShuffleNet's channel shuffle between two convs: x -> 1x1 Conv to 12 channels -> Reshape
    [N, 3, 4, H, W] -> Transpose (0, 2, 1, 3, 4) -> Reshape [N, 12, H, W] -> 1x1 Conv -> y."""
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1"),
             helper.make_node("Reshape", ["c", "s5"], ["r"], name="split_groups"),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4], name="shuffle"),
             helper.make_node("Reshape", ["t", "s4"], ["u"], name="merge_groups"),
             helper.make_node("Conv", ["u", "w2"], ["y"], name="conv2")]
    inits = [("w1", rng.normal(0, 0.3, (12, 8, 1, 1)).astype(np.float32)),
             ("w2", rng.normal(0, 0.3, (8, 12, 1, 1)).astype(np.float32)),
             ("s5", np.array([0, 3, 4, 6, 5], np.int64)),
             ("s4", np.array([0, 12, 6, 5], np.int64))]
    return model(nodes, [("x", ["N", 8, 6, 5])], [("y", ["N", 8, 6, 5])], inits)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_channel_shuffle_is_one_copy(threads, batch):
    # the merging Reshape's input had been copied into logical order, then the result back
    # into NHWC for the next conv: two copies per shuffle, a third of ShuffleNet's time
    q = _quantized(_channel_shuffle_net(), (8, 6, 5), threads)
    feeds = {"x": np.random.default_rng(8).normal(0, 1, (batch, 8, 6, 5)).astype(np.float32)}
    # the input's NCHW -> NHWC, the shuffle's per-pixel transpose, the float output's NCHW
    assert len(_relayouts(q, feeds)) == 3, _relayouts(q, feeds)
    assert_codes_close(q, feeds, exact=True)


def test_reshape_layout_brings_merged_axes_together():
    from qengine.runtime.glue import reshape_layout
    five, four = (2, 28, 4, 7, 6), (2, 112, 7, 6)
    # NHWC storage after the shuffle's Transpose: [N, H, W, g, C/g] holds logical (0, 3, 4, 2, 1)
    assert reshape_layout(five, (0, 3, 4, 2, 1), four) == (0, 3, 4, 1, 2)
    assert reshape_layout(five, (0, 3, 4, 1, 2), four) == (0, 3, 4, 1, 2)     # a view already
    assert reshape_layout(five, (0, 1, 2, 3, 4), four) == (0, 1, 2, 3, 4)
    # sizes that do not factor into runs: logical order
    assert reshape_layout((6, 4), (1, 0), (4, 6)) == (0, 1)
    # attention's heads merged back, (N, 80, 4, 32) -> (N, 80, 128) for a MatMul: logical
    # order, not the channels-last-like (0, 2, 1) output
    assert reshape_layout((2, 80, 4, 32), (0, 2, 1, 3), (2, 80, 128)) == (0, 1, 2, 3)
