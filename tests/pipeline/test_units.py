"""Each int8 lowering, one small model at a time: the compiled codes equal the QDQ graph's
float reference (the semantics) up to the documented requantization rounding, and the op
really runs in int8 (not in the float fallback)."""
import numpy as np
import pytest
from onnx import helper

import qengine
from util import assert_codes_close, model

rng = np.random.default_rng(0)


def w(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def conv_model(cin=5, cout=7, k=3, group=1, **attrs):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group, **attrs),
             helper.make_node("Relu", ["c"], ["y"])]
    return model(nodes, [("x", ["N", cin, 9, 11])], [("y", None)],
                 [("w", w(cout, cin // group, k, k)), ("b", w(cout))])


def attention_model(tokens=6, dim=8, heads=2):
    """One multi-head self-attention: Q, K, V projections split into heads by Reshape +
    Transpose (K transposed to [N, heads, head_dim, tokens]), softmax(Q K^T) V, heads merged
    back."""
    hd = dim // heads
    split = np.array([0, tokens, heads, hd], np.int64)
    nodes = [helper.make_node("MatMul", ["x", f"w{t}"], [f"{t}p"]) for t in "qkv"]
    nodes += [helper.make_node("Reshape", [f"{t}p", "split"], [f"{t}s"]) for t in "qkv"]
    nodes += [helper.make_node("Transpose", ["qs"], ["qh"], perm=[0, 2, 1, 3]),
              helper.make_node("Transpose", ["ks"], ["kh"], perm=[0, 2, 3, 1]),
              helper.make_node("Transpose", ["vs"], ["vh"], perm=[0, 2, 1, 3]),
              helper.make_node("MatMul", ["qh", "kh"], ["sc"]),
              helper.make_node("Softmax", ["sc"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vh"], ["o"]),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "merge"], ["y"])]
    return model(nodes, [("x", ["N", tokens, dim])], [("y", None)],
                 [("wq", w(dim, dim)), ("wk", w(dim, dim)), ("wv", w(dim, dim)),
                  ("split", split), ("merge", np.array([0, tokens, dim], np.int64))])


CASES = {
    "attention_heads": (attention_model(), ["MatMul", "Transpose"]),
    "conv3x3": (conv_model(), ["Conv"]),
    "conv_pads_strides": (conv_model(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]), ["Conv"]),
    "conv_same_upper": (conv_model(auto_pad="SAME_UPPER", strides=[2, 2]), ["Conv"]),
    "conv1x1": (conv_model(k=1), ["Conv"]),
    "conv_grouped": (conv_model(cin=6, cout=9, group=3), ["Conv"]),
    "conv_depthwise": (conv_model(cin=8, cout=8, group=8, pads=[1, 1, 1, 1]), ["Conv"]),
    "conv1d": (model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1])],
                     [("x", ["N", 4, 13])], [("y", None)], [("w", w(6, 4, 3))]), ["Conv"]),
    "gemm_transB": (model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                          [("x", ["N", 20])], [("y", None)], [("w", w(7, 20)), ("b", w(7))]),
                    ["Gemm"]),
    "gemm_alpha": (model([helper.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5)],
                         [("x", ["N", 20])], [("y", None)], [("w", w(20, 6))]), ["Gemm"]),
    "matmul_3d": (model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                        [("x", ["N", 5, 12])], [("y", None)], [("w", w(12, 9))]), ["MatMul"]),
    "matmul_two_activations": (model(
        [helper.make_node("MatMul", ["x", "xt"], ["y"]),
         helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1])],
        [("x", ["N", 6, 10])], [("y", None)]), ["MatMul"]),
    "add_full": (model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                        helper.make_node("Conv", ["x", "w2"], ["b"]),
                        helper.make_node("Add", ["a", "b"], ["y"])],
                       [("x", ["N", 4, 8, 8])], [("y", None)],
                       [("w1", w(6, 4, 1, 1)), ("w2", w(6, 4, 1, 1))]), ["Add"]),
    # (a Relu between: an Add right after the Conv would fold into its bias, passes/fuse.py)
    "add_channel_const": (model([helper.make_node("Conv", ["x", "w1"], ["a0"]),
                                 helper.make_node("Relu", ["a0"], ["a"]),
                                 helper.make_node("Add", ["a", "c"], ["y"])],
                                [("x", ["N", 4, 8, 8])], [("y", None)],
                                [("w1", w(6, 4, 1, 1)), ("c", w(1, 6, 1, 1))]), ["Add"]),
    "mul_squeeze_excite": (model([helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                                  helper.make_node("Sigmoid", ["g"], ["s"]),
                                  helper.make_node("Mul", ["x", "s"], ["y"])],
                                 [("x", ["N", 6, 5, 5])], [("y", None)]), ["Mul", "Sigmoid"]),
    "sub": (model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                   helper.make_node("Sub", ["a", "x"], ["y"])],
                  [("x", ["N", 4, 6, 6])], [("y", None)], [("w1", w(4, 4, 1, 1))]), ["Sub"]),
    "avgpool_include_pad": (model([helper.make_node("AveragePool", ["x"], ["y"],
                                                    kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                                    count_include_pad=1)],
                                  [("x", ["N", 5, 7, 7])], [("y", None)]), ["AveragePool"]),
    "avgpool_exclude_pad": (model([helper.make_node("AveragePool", ["x"], ["y"],
                                                    kernel_shape=[2, 3], strides=[2, 2],
                                                    pads=[0, 1, 1, 1])],
                                  [("x", ["N", 5, 7, 8])], [("y", None)]), ["AveragePool"]),
    "maxpool_ceil": (model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                            helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[3, 3],
                                             strides=[2, 2], ceil_mode=1)],
                           [("x", ["N", 3, 8, 8])], [("y", None)], [("w1", w(4, 3, 1, 1))]),
                     ["MaxPool"]),
    "global_avg": (model([helper.make_node("GlobalAveragePool", ["x"], ["y"])],
                         [("x", ["N", 9, 4, 5])], [("y", None)]), ["GlobalAveragePool"]),
    "concat_channels": (model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                               helper.make_node("Sigmoid", ["x"], ["b"]),
                               helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
                              [("x", ["N", 4, 6, 6])], [("y", None)], [("w1", w(3, 4, 1, 1))]),
                        ["Concat"]),
    "silu_region": (model([helper.make_node("Sigmoid", ["x"], ["s"]),
                           helper.make_node("Mul", ["x", "s"], ["y"])],
                          [("x", ["N", 4, 5])], [("y", None)]), ["Sigmoid", "Mul"]),
    "gelu_chain": (model([helper.make_node("Div", ["x", "r2"], ["d"]),
                          helper.make_node("Erf", ["d"], ["e"]),
                          helper.make_node("Add", ["e", "one"], ["p"]),
                          helper.make_node("Mul", ["x", "p"], ["m"]),
                          helper.make_node("Mul", ["m", "half"], ["y"])],
                         [("x", ["N", 16])], [("y", None)],
                         [("r2", np.float32(np.sqrt(2))), ("one", np.float32(1)),
                          ("half", np.float32(0.5))]), ["Erf", "Div"]),
    "hardswish_leaky_tanh": (model([helper.make_node("HardSwish", ["x"], ["a"]),
                                    helper.make_node("LeakyRelu", ["a"], ["b"], alpha=0.2),
                                    helper.make_node("Tanh", ["b"], ["y"])],
                                   [("x", ["N", 3, 7])], [("y", None)]), ["HardSwish"]),
    "transpose_reshape_views": (model(
        [helper.make_node("Conv", ["x", "w1"], ["a"]),
         helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Reshape", ["t", "shape"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)],
        [("x", ["N", 3, 4, 4])], [("y", None)],
        [("w1", w(5, 3, 3, 3)), ("shape", np.array([0, -1], np.int64)), ("w2", w(7, 20))]),
        ["Conv", "Transpose", "Reshape", "Gemm"]),
    "pad_slice_split_resize": (model(
        [helper.make_node("Conv", ["x", "w1"], ["a"]),
         helper.make_node("Pad", ["a", "pads"], ["p"]),
         helper.make_node("Slice", ["p", "st", "en", "ax"], ["s"]),
         helper.make_node("Split", ["s", "sp"], ["s1", "s2"], axis=1),
         helper.make_node("Resize", ["s1", "", "sc"], ["r"], mode="nearest"),
         helper.make_node("MaxPool", ["s2"], ["m"], kernel_shape=[2, 2], strides=[1, 1]),
         helper.make_node("Conv", ["r", "w2"], ["y1"]),
         helper.make_node("Conv", ["m", "w3"], ["y2"])],
        [("x", ["N", 3, 6, 6])], [("y1", None), ("y2", None)],
        [("w1", w(6, 3, 3, 3)), ("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
         ("st", np.array([1], np.int64)), ("en", np.array([5], np.int64)),
         ("ax", np.array([2], np.int64)), ("sp", np.array([2, 4], np.int64)),
         ("sc", np.array([1, 1, 2, 2], np.float32)), ("w2", w(3, 2, 1, 1)),
         ("w3", w(3, 4, 1, 1))]),
        ["Pad", "Slice", "Split", "Resize", "MaxPool"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unit_runs_in_int8_and_matches_the_qdq_semantics(name):
    m, int8_ops = CASES[name]
    x_shape = [d if isinstance(d, int) else 2 for d in
               [(d.dim_value or d.dim_param) for d in m.graph.input[0].type.tensor_type.shape.dim]]
    calib = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(3)]
    # the lowering itself is under test: no automatic float fallback, no output-aware float
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None, output_aware=False)
    counts = q.node_counts({"x": tuple(x_shape)})
    ops = {n.name: n.op_type for n in q.graph.nodes}
    int8_types = {ops[n] for n in counts["int8"]}
    for op in int8_ops:
        assert op in int8_types, f"{op} did not run in int8 ({counts})"
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32) * 1.2}
    assert_codes_close(q, feeds)
    # batch 1 and 3 compile their own plans and agree with batch-wise runs
    x3 = rng.standard_normal([3] + x_shape[1:]).astype(np.float32)
    full = q.run(x3, as_dict=True)
    for i in range(3):
        one = q.run(x3[i:i + 1], as_dict=True)
        for k in full:
            np.testing.assert_array_equal(one[k], full[k][i:i + 1])


def test_attention_reads_heads_and_transposed_keys_in_place():
    """The two activation MatMuls of attention_model take Q, K^T and V in the layout their
    Reshape + Transpose left (strided, K^T read transposed): no relayout copy feeds them."""
    m = attention_model(tokens=7, dim=12, heads=3)
    calib = [rng.standard_normal((1, 7, 12)).astype(np.float32) for _ in range(3)]
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None, output_aware=False)
    plan = q._executor.plan_for({"x": (2, 7, 12)}).plan
    labels = [label for _, label in plan.kernels]
    assert labels.count("matmul u8 x u8") == 2, labels
    assert "relayout" not in labels[:labels.index("matmul u8 x u8") + 2], labels
    assert_codes_close(q, {"x": rng.standard_normal((2, 7, 12)).astype(np.float32)})


@pytest.mark.parametrize("max_steps", [None, 0])
@pytest.mark.parametrize("reduce_axis", [0, 1])
def test_activation_matmul_broadcasts_a_batch_axis(monkeypatch, max_steps, reduce_axis):
    """B = a mean over one batch axis of A, transposed: the product broadcasts B over that
    axis, so the batch is no single strided walk; the kernel runs one step per outer index
    (or, with the step cap at 0, the numpy loop reads the permuted operands)."""
    from qengine.ops import matmul
    if max_steps is not None:
        monkeypatch.setattr(matmul, "_MAX_MATMUL_STEPS", max_steps)
    m = model([helper.make_node("ReduceMean", ["x"], ["r"], axes=[reduce_axis], keepdims=1),
               helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 1, 3, 2]),
               helper.make_node("MatMul", ["x", "rt"], ["y"])],
              [("x", ["N", 2, 5, 6])], [("y", None)])
    calib = [rng.standard_normal((3, 2, 5, 6)).astype(np.float32) for _ in range(3)]
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None, output_aware=False)
    counts = q.node_counts({"x": (3, 2, 5, 6)})
    assert "MatMul" in {n.op_type for n in q.graph.nodes if n.name in counts["int8"]}
    plan = q._executor.plan_for({"x": (3, 2, 5, 6)}).plan
    steps = [s for s in plan.program.steps if s.op == "MatMul"]
    assert len(steps) == (1 if max_steps == 0 else 3)
    assert_codes_close(q, {"x": rng.standard_normal((3, 2, 5, 6)).astype(np.float32)})
