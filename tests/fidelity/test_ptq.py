"""Advanced post-training quantization: cross-layer equalization, empirical bias correction,
AdaRound, and the per-tensor choice of observer."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fmodels
from digits_cnn import load_digits_images, train_digits_cnn
import models
import qengine
from qengine.errors import QuantizationError
from qengine.quant.equalize import equalize, find_pairs
from qengine.runtime.reference import ReferenceExecutor
from test_failure_modes import sqnr


def _prepared(m):
    return qengine.api._prepare(qengine.api.read_model(m.SerializeToString()))


# ---- cross-layer equalization -----------------------------------------------------------------
def test_equalization_keeps_the_function_and_balances_the_channels():
    m = fmodels.badly_scaled_channels()
    g = _prepared(m)
    ge, pairs = equalize(g)
    assert pairs == 2                       # conv -> relu -> depthwise, depthwise -> relu -> conv
    x = models.random_input(m, batch=4, seed=3)
    a, b = ReferenceExecutor(g).run(x), ReferenceExecutor(ge).run(x)
    for k in a:
        assert sqnr(a[k], b[k]) > 100.0     # the same function up to float rounding

    def spread(graph, node):                # largest / smallest per-output-channel range
        w = graph.initializers[graph.node(node).inputs[1]]
        r = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        return r.max() / r.min()

    first = g.nodes[0].name
    assert spread(g, first) > 50 and spread(ge, first) < 10


def test_equalization_raises_per_tensor_sqnr_on_badly_scaled_channels():
    m = fmodels.badly_scaled_channels()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    test = models.random_input(m, batch=16, seed=99)
    ref = ReferenceExecutor(_prepared(m)).run(test)
    res = {}
    for eq in (False, True):
        q = qengine.quantize(m, calib, per_channel=False, equalize=eq, target_sqnr=None,
                             progress=False)
        got = q.run(test, as_dict=True)
        res[eq] = min(sqnr(ref[k], got[k]) for k in ref)
    assert res[False] < 5.0 and res[True] > 25.0, res
    assert not q.node_counts()["float"] and q.info["equalized_pairs"] == 2


def test_equalization_stops_at_relu6():
    """Clip(0, 6) is not positive homogeneous: no pair across it (DFQ would replace it)."""
    b = models.Builder(0)
    x = b.relu6(b.conv("input", 3, 8, 3))
    y = b.conv(b.op("Relu", [b.conv(x, 8, 8, 3)]), 8, 4, 1)
    g = _prepared(b.model(["N", 3, 8, 8], [y], "relu6"))
    pairs = find_pairs(g)
    assert len(pairs) == 1 and pairs[0].second == g.nodes[-1].name


# ---- bias correction --------------------------------------------------------------------------
def test_bias_correction_removes_the_mean_error_per_channel():
    """A depthwise-heavy MobileNetV2 with per-tensor 6-bit weights: the int8 outputs' mean
    error per channel shrinks and the output SQNR rises."""
    m = models.mobilenetv2()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(4)]
    test = models.random_input(m, batch=32, seed=99)
    ref = ReferenceExecutor(_prepared(m)).run(test)
    out = {}
    for bc in (False, True):
        q = qengine.quantize(m, calib, weight_bits=6, per_channel=False, bias_correction=bc,
                             target_sqnr=None, progress=False)
        out[bc] = q.run(test, as_dict=True)
    (k,) = ref
    bias = {bc: np.abs((out[bc][k] - ref[k]).mean(axis=0)).mean() for bc in out}
    assert bias[True] < 0.6 * bias[False], bias
    assert sqnr(ref[k], out[True][k]) > sqnr(ref[k], out[False][k]) + 1.0
    assert q.info["bias_corrected_layers"] > 40


def test_bias_correction_shift_matches_an_independent_computation():
    """One Conv: the corrected bias is b + mean(conv(x, W) - conv(fq(x), W~)) per channel,
    computed here with torch from the quantized graph's own parameters."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((6, 3, 3, 3)) * 0.4).astype(np.float32)
    bias = (rng.standard_normal(6) * 0.1).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")
    gr = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         ["N", 3, 8, 8])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                           [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)])
    x = (rng.standard_normal((16, 3, 8, 8)) + 0.3).astype(np.float32)
    q = qengine.quantize(m, x, weight_bits=4, per_channel=False, bias_correction=True,
                         target_sqnr=None, progress=False)
    init, nodes = q.graph.initializers, {n.outputs[0]: n for n in q.graph.nodes}
    conv = next(n for n in q.graph.nodes if n.op_type == "Conv")

    def deq(name):
        d = nodes[name]
        zp = init[d.inputs[2]].astype(np.float64)
        return ((init[d.inputs[0]].astype(np.float64) - zp) * init[d.inputs[1]])

    wq = deq(conv.inputs[1])
    xq = nodes[conv.inputs[0]]            # x -> Q -> DQ: the input's parameters
    qn = nodes[xq.inputs[0]]
    s, z = float(init[qn.inputs[1]]), int(init[qn.inputs[2]])
    xf = ((np.clip(np.rint(x / np.float32(s)) + z, 0, 255) - z) * s).astype(np.float64)
    conv2d = lambda a, k: torch.nn.functional.conv2d(torch.from_numpy(a), torch.from_numpy(k),
                                                     padding=1).numpy()   # noqa: E731
    shift = (conv2d(x.astype(np.float64), w.astype(np.float64)) - conv2d(xf, wq)) \
        .mean(axis=(0, 2, 3))
    b_scale = init[nodes[conv.inputs[2]].inputs[1]]
    np.testing.assert_allclose(deq(conv.inputs[2]), bias + shift, atol=float(b_scale.max()))


# ---- AdaRound ----------------------------------------------------------------------------------
def test_adaround_layer_beats_nearest_on_its_own_objective():
    from qengine.quant.adaround import adaround_layer
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1, 8, 24))
    x = rng.standard_normal((1, 512, 24)) @ rng.standard_normal((24, 24))   # correlated inputs
    s = np.full_like(w, np.abs(w).max() / 7)
    codes = adaround_layer(w, s, x, x, -7, 7, iterations=600)
    nearest = np.clip(np.rint(w / s), -7, 7)
    assert np.array_equal(codes, np.rint(codes)) and codes.min() >= -7 and codes.max() <= 7
    assert np.all(np.abs(codes - w / s) < 1.0 + 1e-9)      # only floor or ceil of each weight
    err = lambda q: np.sum((x @ (q * s).transpose(0, 2, 1) - x @ w.transpose(0, 2, 1)) ** 2)  # noqa
    assert err(codes) < 0.7 * err(nearest)


def _digits_cnn(x, y, c1=4, c2=8, seed=0, epochs=12):
    """A slim CNN (conv 4 -> relu -> conv 8 stride 2 -> relu -> dense) trained with torch on
    scikit-learn's digits. Slim on purpose: a wider one loses nothing at 4 bits, so there
    would be no rounding error for AdaRound to win back. One torch thread: tiny layers."""
    return train_digits_cnn(x, y, c1=c1, c2=c2, seed=seed, epochs=epochs, threads=1)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits_images()
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1000], order[1000:]
    return _digits_cnn(x[train], y[train]), x[train[:256]], x[test], y[test]


def test_adaround_with_4_bit_weights_beats_nearest_rounding_on_digits(digits):
    m, calib, x, y = digits
    ref = ReferenceExecutor(_prepared(m)).run({"x": x})["logits"]
    float_acc = np.mean(ref.argmax(1) == y)
    res = {}
    for ada in (False, True):
        q = qengine.quantize(m, calib, weight_bits=4, per_channel=False, adaround=ada,
                             target_sqnr=None, progress=False)
        out = q.run(x)
        res[ada] = (float(np.mean(out.argmax(1) == y)), sqnr(ref, out))
        assert all(np.abs(a).max() <= 7 for a in q.graph.initializers.values()
                   if a.dtype == np.int8)
    assert float_acc > 0.9
    assert res[False][0] < float_acc                       # nearest rounding costs accuracy
    assert res[True][0] > res[False][0], res               # AdaRound wins it back
    assert res[True][1] > res[False][1] + 3.0, res         # and the logits are much closer
    assert q.info["adaround_layers"] == 3


# ---- the observer per tensor -------------------------------------------------------------------
def test_method_per_tensor():
    m = fmodels.outlier_channel()
    calib = [models.random_input(m, batch=8, seed=s)["input"] for s in range(2)]
    g = _prepared(m)
    relu = next(n for n in g.nodes if n.op_type == "Relu").outputs[0]
    mixed = qengine.quantize(m, calib, method={"*": "minmax", relu: ("percentile",
                                                                    {"percentile": 99.0})},
                             target_sqnr=None, progress=False)
    plain = qengine.quantize(m, calib, target_sqnr=None, progress=False)
    by_op = qengine.quantize(m, calib, method={"Relu": "percentile"}, target_sqnr=None,
                             progress=False)

    def scale(q, t):
        qn = next(n for n in q.graph.nodes if n.op_type == "QuantizeLinear" and n.inputs[0] == t)
        return float(q.graph.initializers[qn.inputs[1]])

    assert scale(mixed, relu) < 0.5 * scale(plain, relu)      # the 99th percentile clips
    assert scale(mixed, "input") == scale(plain, "input")     # the others stay minmax
    assert scale(by_op, relu) < scale(plain, relu)
    with pytest.raises(QuantizationError, match="name no tensor"):
        qengine.quantize(m, calib, method={"nope": "minmax"}, progress=False)
    with pytest.raises(QuantizationError):
        qengine.quantize(m, calib, method={"*": "magic"}, progress=False)
