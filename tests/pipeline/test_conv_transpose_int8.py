"""int8 ConvTranspose: per group one GEMM, a col2im scatter of the taps, the bias and the
requantization (ops/conv.py) -- in int32 when taps overlap, in the GEMM's own u8 epilogue when
they cannot (kernel reach within one stride).

Each geometry is quantized by qengine.quantize, then its raw uint8 output must equal
- exactly: a numpy statement of the same integer semantics (acc = sum (x_q - zx)(w_q - zw[m])
  + bias, computed exactly in float64 by the float reference; requantized by tests/npref.py);
- within 1 LSB: the QDQ graph run by the float reference executor.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import npref
from models import make_model, ocr_block, random_input, vi
from qengine.api import quantize
from qengine.ops import make_op
from qengine.quant.params import requant_multiplier
from qengine.runtime.reference import ReferenceExecutor

# (name, channels in, channels out, kernel, attributes, relu, spatial size)
GEOMETRIES = [
    ("k2s2", 8, 6, [2, 2], dict(strides=[2, 2]), False, (5, 7)),
    ("k3s1_pad1", 5, 7, [3, 3], dict(pads=[1, 1, 1, 1]), True, (6, 6)),
    ("k3s2_outpad", 4, 4, [3, 3], dict(strides=[2, 2], pads=[1, 1, 1, 1],
                                       output_padding=[1, 1]), False, (5, 4)),
    ("k4s2_asym_groups2", 6, 8, [4, 3], dict(strides=[2, 3], pads=[1, 2, 0, 1], group=2),
     True, (4, 5)),
    ("depthwise_dilated", 4, 4, [3, 3], dict(strides=[2, 2], dilations=[2, 2], group=4),
     False, (5, 5)),
    ("same_upper", 3, 5, [3, 3], dict(strides=[2, 2], auto_pad="SAME_UPPER"), False, (5, 6)),
    ("same_lower", 3, 5, [4, 4], dict(strides=[2, 2], auto_pad="SAME_LOWER"), False, (4, 3)),
    ("output_shape", 4, 3, [3, 3], dict(strides=[2, 2], output_shape=[10, 12]), False, (5, 6)),
    ("conv1d", 6, 4, [5], dict(strides=[3], pads=[2, 1]), False, (9,)),
    # taps that never overlap: the GEMM requantizes, col2im moves bytes (gaps hold the bias)
    ("k2s3_gaps_outpad", 4, 6, [2, 2], dict(strides=[3, 3], pads=[1, 0, 0, 1],
                                            output_padding=[2, 1]), True, (4, 5)),
    ("k2x1_groups3", 6, 9, [2, 1], dict(strides=[2, 1], group=3), False, (3, 4)),
]


def _model(cin, cout, k, attrs, relu, size, seed=0):
    rng = np.random.default_rng(seed)
    g = attrs.get("group", 1)
    w = (rng.standard_normal((cin, cout // g, *k)) / np.sqrt(cin)).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.2).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["input", "w", "b"], ["ct"], name="ct",
                              kernel_shape=list(k), **attrs)]
    out = "ct"
    if relu:
        nodes.append(helper.make_node("Relu", ["ct"], ["out"], name="relu"))
        out = "out"
    return make_model(nodes, [vi("input", ["N", cin, *size])], [vi(out, None)],
                      [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])


def _integer_reference(q, node, x):
    """The raw output by the integer semantics, from the QDQ graph's own parameters."""
    g = q.graph
    prod = g.producers_map()
    init = g.initializers

    def params(dq):
        s = init[dq.inputs[1]]
        z = init[dq.inputs[2]] if dq.input(2) else np.zeros_like(s, np.int32)
        return init.get(dq.inputs[0]), s, z.astype(np.int64)

    _, sx, zx = params(prod[node.inputs[0]])
    wq, sw, zw = params(prod[node.inputs[1]])
    bq, _, _ = params(prod[node.inputs[2]])
    xq = npref.quantize(x, sx, zx)
    r = wq.ndim - 2
    X = xq.astype(np.float64) - zx
    W = wq.astype(np.float64) - zw.reshape((1, -1) + (1,) * r)
    acc = make_op(node, g.opset).run(X, W)[0]
    acc = np.rint(acc).astype(np.int64) + bq.reshape((-1,) + (1,) * r)
    acc = ((acc + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    # the output quantizer: the Q after the ConvTranspose (or after its Relu)
    last = node.outputs[0]
    readers = g.consumers_map()
    relu = readers[last][0] if readers[last][0].op_type == "Relu" else None
    qnode = readers[relu.outputs[0] if relu else last][0]
    sy, zy = init[qnode.inputs[1]], int(init[qnode.inputs[2]])
    groups = int(node.attrs.get("group", 1))
    mult = requant_multiplier(sx, np.tile(np.broadcast_to(sw, (wq.shape[1],)), groups), sy)
    lo = zy if relu is not None else 0
    nhwc = np.moveaxis(acc, 1, -1)
    return np.moveaxis(npref.requantize(nhwc, mult, zy, lo, 255), -1, 1)


def _quantized(name):
    _, cin, cout, k, attrs, relu, size = next(gm for gm in GEOMETRIES if gm[0] == name)
    proto = _model(cin, cout, k, attrs, relu, size)
    calib = [random_input(proto, batch=2, seed=s)["input"] for s in range(3)]
    # the lowering is under test: no automatic float fallback (tests/fidelity covers it)
    return quantize(proto, calib, target_sqnr=None), random_input(proto, batch=2, seed=7)


@pytest.mark.parametrize("name", [gm[0] for gm in GEOMETRIES])
def test_conv_transpose_int8_geometry(name):
    q, feeds = _quantized(name)
    node = next(n for n in q.graph.nodes if n.op_type == "ConvTranspose")
    counts = q.node_counts({"input": feeds["input"].shape})
    assert node.name in counts["int8"], counts
    raw = q.run(feeds, raw=True)
    np.testing.assert_array_equal(raw, _integer_reference(q, node, feeds["input"]))
    qdq = ReferenceExecutor(q._raw_executor().graph).run(feeds)
    ref = qdq[q._raw_executor().output_names[0]]
    assert ref.dtype == raw.dtype and ref.shape == raw.shape
    assert np.abs(raw.astype(int) - ref.astype(int)).max() <= 1


def test_conv_transpose_int8_every_isa(isa):
    q, feeds = _quantized("k4s2_asym_groups2")
    node = next(n for n in q.graph.nodes if n.op_type == "ConvTranspose")
    np.testing.assert_array_equal(q.run(feeds, raw=True),
                                  _integer_reference(q, node, feeds["input"]))


def test_ocr_block_runs_its_conv_transpose_in_int8():
    proto = ocr_block()
    calib = [random_input(proto, batch=2, seed=s)["input"] for s in range(3)]
    q = quantize(proto, calib)
    feeds = random_input(proto, batch=2, seed=9)
    counts = q.node_counts({"input": feeds["input"].shape})
    convt = [n.name for n in q.graph.nodes if n.op_type == "ConvTranspose"]
    assert convt and set(convt) <= set(counts["int8"])
    labels = dict(q._plan({"input": feeds["input"].shape}).kernels)
    assert labels[convt[0]] == "conv_transpose gemm+col2im"
    got = q.run(feeds)
    want = ReferenceExecutor(q.graph).run(feeds)[q.output_names[0]]
    np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()))
