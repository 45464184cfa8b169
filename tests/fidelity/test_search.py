"""The automatic fidelity target: held-back samples, what the search returns when the target
is met, missed or reachable by widening, the output-aware rules, and the QDQ surgery the
sensitivity analysis relies on."""
import warnings

import numpy as np
import pytest

import fmodels
import models
import qengine
from qengine.errors import QuantizationError
from qengine.graph import Value
from qengine.quant.holdout import CalibrationSplit
from qengine.quant.sensitivity import bypass, find_units
from qengine.runtime.executor import Executor
from qengine.runtime.reference import ReferenceExecutor


def test_held_back_samples_are_every_seventh_and_bounded():
    inputs = [Value("x", ("N", 2), np.float32)]
    data = [np.arange(16, dtype=np.float32).reshape(8, 2) + 100 * b for b in range(3)]
    split = CalibrationSplit(inputs, data, fraction=0.15, max_holdout=32, keep=4)
    seen = np.concatenate([f["x"] for f in split.calibration()])
    held = np.concatenate([f["x"] for f in split.held])
    # samples 3, 10, 17 of 24 (every 7th, offset 3) are held back, the rest calibrate
    assert held[:, 0].tolist() == [6, 104, 202]
    assert len(seen) == 21 and not set(held[:, 0]) & set(seen[:, 0])
    assert split.n_held == 3 and split.n_calibration == 21
    assert sum(len(f["x"]) for f in split.kept) == 4
    feeds, what = split.evaluation()
    assert what == "held-back samples" and len(feeds) == 1 and len(feeds[0]["x"]) == 3
    tiny = CalibrationSplit(inputs, np.zeros((2, 2), np.float32), keep=32)
    assert sum(len(f["x"]) for f in tiny.calibration()) == 2
    assert tiny.evaluation()[1] == "calibration samples"
    capped = CalibrationSplit(inputs, np.zeros((700, 2), np.float32), max_holdout=5)
    list(capped.calibration())
    assert capped.n_held == 5 and capped.n_calibration == 695


def test_fixed_batch_models_and_tiny_data():
    """A fixed batch dim holds back whole batches; fewer than 4 samples hold back none and
    the target is checked on the calibration samples (and says so)."""
    m = fmodels.sigmoid_softmax_head(batch=1)
    calib = [models.random_input(m, batch=1, seed=s)["input"] for s in range(10)]
    q = qengine.quantize(m, calib, progress=False)
    assert q.info["evaluated_on"] == "1 held-back samples" and q.info["target_met"]
    m = fmodels.concat_head()
    q = qengine.quantize(m, {"input": models.random_input(m, batch=3)["input"]},
                         progress=False)
    assert q.info["evaluated_on"] == "3 calibration samples"


def test_a_model_that_meets_the_target_is_the_plain_model():
    """Nothing kept float: the returned model is the one target_sqnr=None gives (calibrated
    on every sample, held-back ones included), bit for bit."""
    m = fmodels.concat_head()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    x = models.random_input(m, batch=4, seed=7)["input"]
    auto = qengine.quantize(m, calib, progress=False)
    plain = qengine.quantize(m, calib, target_sqnr=None, progress=False)
    assert auto.info["kept_float"] == [] and auto.info["fidelity_trials"] == 1
    for a, b in zip(auto.run(x), plain.run(x)):
        np.testing.assert_array_equal(a, b)
    assert auto.info["evaluated_on"] == "5 held-back samples"


def test_a_target_only_float_meets_keeps_everything_float():
    m = fmodels.outlier_channel()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    with pytest.warns(RuntimeWarning, match="keeps most of the model float"):
        q = qengine.quantize(m, calib, target_sqnr=200.0, progress=False)
    assert q.info["target_met"] and q.node_counts()["int8"] == []
    assert q.info["output_sqnr"] == {"conv_9": float("inf")}


def test_when_no_unit_helps_the_search_warns_and_keeps_the_best(monkeypatch):
    import qengine.quant.mixed as mixed
    monkeypatch.setattr(mixed, "bypass", lambda q, units, g: q)   # no unit floats anything
    m = fmodels.outlier_channel()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    with pytest.warns(RuntimeWarning, match="not reached"):
        q = qengine.quantize(m, calib, progress=False)
    assert not q.info["target_met"] and q.info["kept_float"] == []


def test_narrow_weights_are_widened_before_anything_goes_float():
    """4-bit weights miss the target; 8 bits on the layers that need them meet it at no speed
    cost, so nothing stays float, and the other layers keep 4-bit codes."""
    m = fmodels.concat_head()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = qengine.quantize(m, calib, weight_bits=4, target_sqnr=25.0, progress=False)
    info = q.info
    assert min(info["int8_output_sqnr"].values()) < 25 <= min(info["output_sqnr"].values())
    assert info["kept_float"] == [] and info["widened_to_8_bits"]
    convs = [n.name for n in q.graph.nodes if n.op_type == "Conv"]
    assert len(info["widened_to_8_bits"]) < len(convs)
    init = q.graph.initializers
    producer = {o: n for n in q.graph.nodes for o in n.outputs}
    for n in q.graph.nodes:
        if n.op_type == "Conv":
            w = init[producer[n.inputs[1]].inputs[0]]
            assert np.abs(w).max() <= (127 if n.name in info["widened_to_8_bits"] else 7)


def _concat_model(feed_int8: bool):
    """Concat of a wide-range (x60) and a narrow-range branch, read by a conv or output."""
    b = models.Builder(0)
    a = b.op("Mul", [b.conv("input", 3, 4, 3), b.const(np.array(60.0, np.float32))])
    c = b.conv("input", 3, 4, 3)
    cat = b.op("Concat", [b.op("Relu", [a]), b.op("Sigmoid", [c])], axis=1)
    out = b.conv(cat, 8, 4, 1) if feed_int8 else cat
    return b.model(["N", 3, 8, 8], [out], "cat")


def test_output_aware_keeps_float_only_what_no_int8_op_reads():
    for feed_int8 in (False, True):
        m = _concat_model(feed_int8)
        calib = models.random_input(m, batch=8)["input"]
        q = qengine.quantize(m, calib, target_sqnr=None, progress=False)
        ops = {n.name: n.op_type for n in q.graph.nodes}
        int8 = {ops[n] for n in q.node_counts()["int8"]}
        if feed_int8:         # the conv needs one scale anyway: the join stays int8
            assert "Concat" in int8 and "Sigmoid" in int8
            assert q.info["output_aware_float"] == []
        else:                 # each branch keeps its own scale; the output stays float
            assert "Concat" not in int8 and "Sigmoid" not in int8
            assert {"Conv"} <= int8
        off = qengine.quantize(m, calib, target_sqnr=None, output_aware=False, progress=False)
        ops = {n.name: n.op_type for n in off.graph.nodes}
        assert "Concat" in {ops[n] for n in off.node_counts()["int8"]}


def test_bypassing_every_unit_gives_the_float_model():
    """The surgery the sensitivity analysis runs: every unit float = the float model,
    exactly (the same numpy references run every op)."""
    m = fmodels.div_hardsigmoid_block()
    calib = models.random_input(m, batch=8)["input"]
    g = qengine.api._prepare(qengine.api.read_model(m.SerializeToString()))
    q = qengine.quantize(m, calib, target_sqnr=None, progress=False)
    units = find_units(q.graph, g)
    assert {u.kind for u in units} == {"activation", "weights"}
    x = {"input": models.random_input(m, batch=3, seed=4)["input"]}
    got = Executor(bypass(q.graph, units, g)).run(x)
    ref = ReferenceExecutor(g).run(x)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for n in bypass(q.graph, units, g).nodes)


@pytest.mark.parametrize("kw", [{"target_sqnr": "high"}, {"target_sqnr": float("nan")},
                                {"adaround": "yes"}, {"adaround": {"iters": 5}},
                                {"fidelity_options": {"holdout_fraction": 1.5}},
                                {"fidelity_options": {"bogus": 1}},
                                {"fidelity_options": {"max_trials": 0}}])
def test_bad_fidelity_options(kw):
    m = fmodels.outlier_channel()
    with pytest.raises(QuantizationError):
        qengine.quantize(m, models.random_input(m, batch=2)["input"], progress=False, **kw)
