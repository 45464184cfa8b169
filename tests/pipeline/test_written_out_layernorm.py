"""A layer normalization written out op by op (ReduceMean, Sub, Pow 2, ReduceMean, Add eps,
Sqrt, Div: exporters before opset 17) runs as one LayerNormalization kernel
(ops/norm.py `_written_out_layernorm`), and the quantizer keeps it float instead of quantizing
its mean and deviations to 8 bits."""
import numpy as np
import pytest
from onnx import helper

import qengine
from qengine.runtime.reference import ReferenceExecutor
from util import model, sqnr_db

T, D = 20, 48


def _block(pow_exp=2.0, eps=1e-5, d_out=False, axes=(-1,)):
    """x (2, T, D) -> MatMul -> + x -> written-out LayerNorm -> * gamma + beta -> MatMul -> y."""
    rng = np.random.default_rng(0)
    consts = [("w1", rng.normal(0, D ** -0.5, (D, D)).astype(np.float32)),
              ("w2", rng.normal(0, D ** -0.5, (D, D)).astype(np.float32)),
              ("p", np.float32(pow_exp)), ("eps", np.asarray(eps, np.float32)),
              ("g", rng.uniform(0.5, 1.5, D).astype(np.float32)),
              ("b", rng.normal(0, 0.1, D).astype(np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm1"),
             helper.make_node("Add", ["m", "x"], ["h"], name="res"),
             helper.make_node("ReduceMean", ["h"], ["mu"], name="mean", axes=list(axes)),
             helper.make_node("Sub", ["h", "mu"], ["d"], name="sub"),
             helper.make_node("Pow", ["d", "p"], ["d2"], name="pow"),
             helper.make_node("ReduceMean", ["d2"], ["var"], name="var", axes=list(axes)),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="veps"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"),
             helper.make_node("Div", ["d", "sd"], ["n"], name="norm"),
             helper.make_node("Mul", ["n", "g"], ["ng"], name="gamma"),
             helper.make_node("Add", ["ng", "b"], ["nb"], name="beta"),
             helper.make_node("MatMul", ["nb", "w2"], ["y"], name="mm2")]
    outputs = [("y", [2, T, D])] + ([("d", [2, T, D])] if d_out else [])
    return model(nodes, [("x", [2, T, D])], outputs, consts, opset=13)


def _steps(q, feeds):
    return {s[1]: s[0] for s in q.run_profiled(feeds)[1]}


def _feeds(seed=1):
    return {"x": np.random.default_rng(seed).normal(0, 1, (2, T, D)).astype(np.float32)}


def test_a_float_model_runs_it_as_one_kernel(threads):
    m = _block()
    q = qengine.load(m.SerializeToString())
    steps = _steps(q, _feeds())
    assert steps["mean"] == "LayerNormalization"
    assert not {"sub", "pow", "var", "veps", "sqrt", "norm"} & set(steps)
    want = ReferenceExecutor(qengine.api.read_model(m.SerializeToString())).run(_feeds())["y"]
    np.testing.assert_allclose(q.run(_feeds()), want, rtol=1e-5, atol=1e-5)


def test_the_quantizer_keeps_it_float_and_it_runs_as_one_kernel(isa):
    m = _block()
    calib = [_feeds(s) for s in range(2, 6)]
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None)
    counts = q.node_counts()
    assert {"mean", "sub", "pow", "var", "veps", "sqrt", "norm"} <= set(counts["float"])
    assert {"mm1", "res", "gamma", "beta", "mm2"} <= set(counts["int8"])
    steps = _steps(q, _feeds())
    assert steps["mean"] == "LayerNormalization" and "sub" not in steps
    want = ReferenceExecutor(qengine.api.read_model(m.SerializeToString())).run(_feeds())["y"]
    assert sqnr_db(want, q.run(_feeds())) > 30


@pytest.mark.parametrize("change", [dict(pow_exp=3.0), dict(eps=[1e-5] * D), dict(d_out=True),
                                    dict(axes=(1,))])
def test_anything_else_stays_op_by_op(change):
    """Another exponent, a non-scalar eps, a deviation read elsewhere (here a graph output),
    axes that are not the trailing ones: not a layer normalization, the ops run one by one."""
    m = _block(**change)
    q = qengine.load(m.SerializeToString())
    steps = _steps(q, _feeds())
    assert steps["mean"] == "ReduceMean" and "sub" in steps
    want = ReferenceExecutor(qengine.api.read_model(m.SerializeToString())).run(_feeds())
    for name, got in q.run(_feeds(), as_dict=True).items():
        np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-5)
