"""The quantize/load/run API: every documented input form, save -> load -> run, raw outputs,
options, and errors at run time."""
import numpy as np
import onnx
import pytest

import models
import qengine
from qengine.errors import InputError, ModelError, QuantizationError
from qengine.runtime.reference import ReferenceExecutor
from util import sqnr_db


@pytest.fixture(scope="module")
def float_model():
    return models.resnet18()


@pytest.fixture(scope="module")
def calib(float_model):
    return [models.random_input(float_model, batch=4, seed=s)["input"] for s in range(3)]


@pytest.fixture(scope="module")
def qmodel(float_model, calib):
    # exactly what the pipeline makes, whatever the automatic target would decide
    return qengine.quantize(float_model, calib, progress=False, target_sqnr=None)


@pytest.fixture
def x(float_model):
    return models.random_input(float_model, batch=2, seed=11)["input"]


def test_model_forms_give_the_same_model(float_model, calib, tmp_path, x):
    path = tmp_path / "m.onnx"
    onnx.save(float_model, str(path))
    graph = qengine.api.read_model(float_model)
    outs = [qengine.quantize(m, calib, progress=False).run(x)
            for m in (str(path), path, float_model.SerializeToString(), float_model, graph)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_calibration_data_forms_agree(float_model, calib, x):
    stacked = np.concatenate(calib)
    forms = [stacked, list(calib), [{"input": c} for c in calib], (c for c in calib),
             {"input": stacked}]
    outs = [qengine.quantize(float_model, f, progress=False).run(x) for f in forms]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_run_input_forms(qmodel, x):
    a = qmodel.run(x)
    np.testing.assert_array_equal(qmodel.run([x]), a)
    np.testing.assert_array_equal(qmodel.run({"input": x}), a)
    np.testing.assert_array_equal(qmodel(x), a)
    np.testing.assert_array_equal(qmodel.run(x, as_dict=True)[qmodel.output_names[0]], a)
    np.testing.assert_array_equal(qmodel.run(x.astype(np.float64)), a)
    np.testing.assert_array_equal(qmodel.run(x[0])[0], qmodel.run(x[:1])[0])  # one sample
    np.testing.assert_array_equal(qmodel.predict(x, batch_size=1), a)


def test_outputs_are_float_and_close_to_the_float_model(float_model, qmodel, x):
    got = qmodel.run(x)
    assert got.dtype == np.float32
    ref = ReferenceExecutor(qengine.api.read_model(float_model)).run({"input": x})
    assert sqnr_db(list(ref.values())[0], got) > 20


def test_raw_outputs_are_the_quantized_codes():
    from onnx import helper
    from util import model
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
              [("x", ["N", 3, 8, 8])], [("y", None)], [("w", w)])
    calib = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    q = qengine.quantize(m, calib, progress=False, target_sqnr=None)   # 29 dB: keep it int8
    x = calib[:2] * 0.5
    raw = q.run(x, raw=True)
    assert raw.dtype == np.uint8
    (scale, zp), = q.raw_output_params().values()
    deq = (raw.astype(np.int32) - zp.astype(np.int32)).astype(np.float32) * scale
    np.testing.assert_array_equal(deq, q.run(x))


def test_outputs_read_only_by_the_caller_are_computed_in_float(qmodel):
    """The last Gemm's logits are never quantized: the GEMM writes float32 directly."""
    last = qmodel.graph.producers_map()[qmodel.output_names[0]]
    assert last.op_type == "Gemm"
    assert qmodel.raw_output_params() == {}


def test_save_load_run_is_bit_identical(qmodel, tmp_path, x):
    path = tmp_path / "q.onnx"
    qmodel.save(path)
    loaded = qengine.load(path)
    np.testing.assert_array_equal(loaded.run(x), qmodel.run(x))
    onnx.checker.check_model(onnx.load(str(path)))
    assert loaded.node_counts() == qmodel.node_counts()


def test_options(float_model, calib, x):
    per_tensor = qengine.quantize(float_model, calib, per_channel=False, progress=False)
    dq = {n.op_type for n in per_tensor.graph.nodes}
    assert "DequantizeLinear" in dq
    inits = per_tensor.graph.initializers
    weight_dqs = [n for n in per_tensor.graph.nodes if n.op_type == "DequantizeLinear" and
                  inits.get(n.inputs[0]) is not None and inits[n.inputs[0]].dtype == np.int8]
    assert weight_dqs and all(inits[n.inputs[1]].ndim == 0 for n in weight_dqs)
    four = qengine.quantize(float_model, calib, weight_bits=4, target_sqnr=None, progress=False)
    w = [four.graph.initializers[n.inputs[0]] for n in four.graph.nodes
         if n.op_type == "DequantizeLinear" and n.inputs[0] in four.graph.initializers and
         four.graph.initializers[n.inputs[0]].dtype == np.int8]
    assert w and all(np.abs(a).max() <= 7 for a in w)
    kept = qengine.quantize(float_model, calib, keep_float=["Conv_3"], progress=False)
    assert "Conv_3" in kept.node_counts()["float"]
    sym = qengine.quantize(float_model, calib, symmetric_activations=True, progress=False)
    zps = [sym.graph.initializers[n.inputs[2]] for n in sym.graph.nodes
           if n.op_type == "QuantizeLinear"]
    assert zps and all(int(z) == 128 for z in zps)
    a6 = qengine.quantize(float_model, calib, activation_bits=6, target_sqnr=None,
                          progress=False)
    codes = a6._plan().lowered.qtensors.values()
    assert codes and all(t.qmax - t.qmin <= 63 for t in codes), "6-bit codes span 0..63"
    assert not a6.node_counts()["float"], "narrow bit widths run on the int8 kernels too"
    assert sqnr_db(a6.run(x), per_tensor.run(x)) > 10
    for method in ("percentile", "entropy", "mse", "mean_std", "moving_average"):
        q = qengine.quantize(float_model, calib, method=method, progress=False)
        assert np.isfinite(q.run(x)).all()


@pytest.mark.parametrize("kw, err", [({"weight_bits": 9}, QuantizationError),
                                     ({"activation_bits": 1}, QuantizationError),
                                     ({"method": "magic"}, QuantizationError),
                                     ({"weight_method": "kl"}, QuantizationError)])
def test_bad_options(float_model, calib, kw, err):
    with pytest.raises(err):
        qengine.quantize(float_model, calib, progress=False, **kw)


def test_bad_calibration_data(float_model):
    with pytest.raises(InputError):
        qengine.quantize(float_model, [], progress=False)
    with pytest.raises(InputError):
        qengine.quantize(float_model, {"other": np.zeros((1, 3, 32, 32), np.float32)},
                         progress=False)
    with pytest.raises(InputError):
        qengine.quantize(float_model, np.zeros((1, 3, 31, 32), np.float32), progress=False)


def test_bad_inputs_at_run_time(qmodel):
    with pytest.raises(InputError, match="unknown input"):
        qmodel.run({"nope": np.zeros((1, 3, 32, 32), np.float32)})
    with pytest.raises(InputError, match="shape"):
        qmodel.run(np.zeros((1, 3, 16, 32), np.float32))
    with pytest.raises(InputError, match="rank|shape"):
        qmodel.run(np.zeros((3, 32, 32, 1, 1), np.float32))
    with pytest.raises(InputError, match="empty"):
        qmodel.run(np.zeros((0, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="dtype|array"):
        qmodel.run(np.array([["a"]]))
    with pytest.raises(InputError):
        qmodel.run([np.zeros((1, 3, 32, 32), np.float32)] * 2)


def test_nan_and_inf_inputs_quantize_as_documented(qmodel):
    """NaN quantizes to the zero point (as 0.0 would), +inf to the top code, -inf to the
    bottom one: outputs stay finite and equal those of the substituted inputs."""
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[0, 0, :4] = np.nan
    x[0, 1, :4] = np.inf
    x[0, 2, :4] = -np.inf
    lo, hi = -1e30, 1e30
    y = x.copy()
    y[0, 0, :4] = 0
    y[0, 1, :4] = hi
    y[0, 2, :4] = lo
    got = qmodel.run(x)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, qmodel.run(y))


def test_unreadable_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        qengine.load(bad)
    with pytest.raises(ModelError):
        qengine.load(tmp_path / "missing.onnx")


def test_summary_lists_nodes_and_kernels(qmodel):
    text = qmodel.summary()
    assert "int8" in text and "conv" in text and "Kernels" in text
    assert qmodel.inputs[0].name == "input" and qmodel.outputs
