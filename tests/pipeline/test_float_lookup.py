"""An element-wise region whose output stays float (output-aware quantization keeps a model's
last GELU or Sigmoid float) runs as one 256-entry float table over the uint8 codes of its
input (lowering._find_float_lut_regions, glue.lut_float) instead of float ops over every
element: the same values as those float ops, which the region's table is built with."""
import numpy as np
import pytest
from onnx import helper

import qengine
import qengine.runtime.lowering as lowering
from util import model


def _conv_then(tail, outputs=(("y", [1, 8, 6, 6]),)):
    """x (1, 8, 6, 6) -> Conv 1x1 + bias -> Add x (a residual) -> tail (nodes reading "a")."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.4, (8, 8, 1, 1)).astype(np.float32)
    b = rng.normal(0, 0.1, 8).astype(np.float32)
    consts = [("w", w), ("b", b), ("sqrt2", np.float32(np.sqrt(2))), ("one", np.float32(1)),
              ("half", np.float32(0.5)), ("two", np.float32(2))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "x"], ["a"], name="res")] + tail
    return model(nodes, [("x", [1, 8, 6, 6])], list(outputs), consts)


GELU = [helper.make_node("Div", ["a", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["e1"], name="erf1"),
        helper.make_node("Mul", ["a", "e1"], ["g"], name="gm"),
        helper.make_node("Mul", ["g", "half"], ["y"], name="gelu")]
SIGMOID = [helper.make_node("Sigmoid", ["a"], ["y"], name="sig")]
# the Sigmoid's output is also a graph output: the region stops there, the Mul stays float
SHARED = [helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
          helper.make_node("Mul", ["s", "two"], ["y"], name="twice")]
CASES = {
    "gelu": (_conv_then(GELU), {"div": "Div+Erf+Add+Mul+Mul"}, ()),
    "sigmoid": (_conv_then(SIGMOID), {"sig": "Sigmoid"}, ()),
    "shared": (_conv_then(SHARED, (("y", [1, 8, 6, 6]), ("s", [1, 8, 6, 6]))),
               {"sig": "Sigmoid"}, ("twice",)),
}


def _run(m, calib, feeds, float_regions: bool):
    keep = lowering._find_float_lut_regions
    if not float_regions:
        lowering._find_float_lut_regions = lambda g, a, taken: {}
    try:
        q = qengine.quantize(m, calib, progress=False, target_sqnr=None)
        out = q.run(feeds, as_dict=True)
        steps = {s[1]: s[0] for s in q.run_profiled(feeds)[1]}   # step name -> op
    finally:
        lowering._find_float_lut_regions = keep
    return out, steps


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_float_region_is_one_table_with_the_float_ops_values(isa, threads, case):
    m, lookups, still_float = CASES[case]
    rng = np.random.default_rng(1)
    calib = [{"x": rng.normal(0, 1, (1, 8, 6, 6)).astype(np.float32)} for _ in range(3)]
    feeds = {"x": rng.normal(0, 1.2, (1, 8, 6, 6)).astype(np.float32)}
    table, t_steps = _run(m, calib, feeds, True)
    ops, o_steps = _run(m, calib, feeds, False)
    region = [n.name for n in m.graph.node if n.op_type != "Conv" and n.name != "res" and
              n.name not in still_float]
    for step, op in lookups.items():
        assert t_steps[step] == op                      # one step for the whole region
    assert not (set(region) - set(lookups)) & set(t_steps)   # the rest ran inside it
    for name in region:                                 # each its own float step before
        assert o_steps[name] == next(n.op_type for n in m.graph.node if n.name == name)
    for name in still_float:
        assert name in t_steps
    assert sorted(table) == sorted(ops)
    for name in ops:
        assert table[name].dtype == np.float32
        np.testing.assert_array_equal(table[name].view(np.uint32), ops[name].view(np.uint32),
                                      err_msg=name)


@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
def test_a_float_region_of_a_quantized_input_read_from_a_qdq_file(threads, qtype):
    """A QDQ graph as other tools write it: x -> QuantizeLinear -> DequantizeLinear -> Tanh ->
    Mul 3 -> y, int8 codes (stored by the kernels as uint8 + 128) and uint8 alike: one table,
    the values of the two float ops on the dequantized codes."""
    zp = np.array(3 if qtype == np.uint8 else -7, qtype)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
             helper.make_node("Tanh", ["xd"], ["t"], name="tanh"),
             helper.make_node("Mul", ["t", "three"], ["y"], name="mul")]
    m = model(nodes, [("x", [2, 300])], [("y", [2, 300])],
              [("s", np.float32(0.031)), ("zp", zp), ("three", np.float32(3))])
    x = np.random.default_rng(4).normal(0, 2, (2, 300)).astype(np.float32)
    q = qengine.load(m.SerializeToString())
    steps = {s[1]: s[0] for s in q.run_profiled({"x": x})[1]}
    assert steps["tanh"] == "Tanh+Mul" and "mul" not in steps
    codes = np.clip(np.rint(x / np.float32(0.031)) + zp, np.iinfo(qtype).min,
                    np.iinfo(qtype).max)
    xd = ((codes - zp) * np.float32(0.031)).astype(np.float32)
    want = (np.tanh(xd) * np.float32(3)).astype(np.float32)
    np.testing.assert_array_equal(q.run({"x": x}), want)
