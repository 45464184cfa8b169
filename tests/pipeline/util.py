"""Helpers for pipeline tests: small float models, quantize them, compare the compiled run
with the QDQ graph's float reference (its semantics) and with the float model."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import qengine
from qengine.runtime.reference import ReferenceExecutor


def model(nodes, inputs, outputs, inits=(), opset=17):
    """inputs/outputs: (name, shape) pairs (float32); inits: (name, array) pairs."""
    g = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def quantized_codes(qmodel, feeds):
    """Every QuantizeLinear output of the QDQ graph, from the compiled run and from the float
    reference of the QDQ graph: ({name: codes}, {name: codes})."""
    from qengine.runtime.executor import Executor
    g = qmodel.graph.copy()
    qs = [n.outputs[0] for n in g.nodes if n.op_type == "QuantizeLinear"]
    g.outputs = g.outputs + [g.value(t) for t in qs if t not in g.output_names]
    ours = Executor(g).run(feeds)
    ref = ReferenceExecutor(g).run(feeds)
    return {t: ours[t] for t in qs}, {t: ref[t] for t in qs}


def assert_codes_close(qmodel, feeds, max_lsb=1, max_frac=0.01, exact=False):
    """Compiled codes vs the QDQ reference at every quantized tensor: equal, or (rounding of
    requantization, docs/quantization.md) within max_lsb on at most max_frac of elements."""
    ours, ref = quantized_codes(qmodel, feeds)
    assert ours, "the model has no quantized tensor"
    for name in ours:
        d = np.abs(ours[name].astype(np.int32) - ref[name].astype(np.int32))
        if exact:
            assert d.max() == 0, f"{name}: {np.count_nonzero(d)} codes differ (max {d.max()})"
        else:
            assert d.max() <= max_lsb, f"{name}: codes differ by up to {d.max()} LSB"
            assert np.mean(d > 0) <= max_frac, f"{name}: {np.mean(d > 0):.2%} of codes differ"


def sqnr_db(reference, test) -> float:
    reference = np.asarray(reference, np.float64)
    err = np.sum((reference - np.asarray(test, np.float64)) ** 2)
    sig = np.sum(reference ** 2)
    return float("inf") if err == 0 else 10 * np.log10(sig / err)


def run_float(m, feeds):
    g = qengine.api.read_model(m.SerializeToString() if isinstance(m, onnx.ModelProto) else m)
    return ReferenceExecutor(g).run(feeds)


def run_with_pass(make_model, feeds, disabled: str = ""):
    """(outputs, {step name: op}) of the model make_model() returns (a qengine Model),
    compiled with lowering's fusion pass of that name (e.g. "_fuse_lookups") turned into a
    no-op, or with every pass when disabled is "". Compiling is lazy, per input shape: the
    patch holds while the runs compile."""
    import qengine.runtime.lowering as lowering
    keep = getattr(lowering, disabled) if disabled else None
    if disabled:
        setattr(lowering, disabled, lambda items, aliases, analysis: items)
    try:
        q = make_model()
        out = q.run(feeds, as_dict=True)
        names = {s[1]: s[0] for s in q.run_profiled(feeds)[1]}   # step name -> op
    finally:
        if disabled:
            setattr(lowering, disabled, keep)
    return out, names


def compiled_with(m, calib, feeds, disabled: str = ""):
    """run_with_pass of the float model m quantized on calib (fidelity target off)."""
    return run_with_pass(lambda: qengine.quantize(m, calib, progress=False, target_sqnr=None),
                         feeds, disabled)


def fused_and_plain(make_model, feeds, fusion: str):
    """Run with and without lowering's fusion pass `fusion`, check that both give the same
    outputs bit for bit; return the outputs and the two {step name: op} maps (fused, plain)."""
    fused, fused_steps = run_with_pass(make_model, feeds)
    plain, plain_steps = run_with_pass(make_model, feeds, fusion)
    assert sorted(fused) == sorted(plain)
    for name in plain:
        np.testing.assert_array_equal(fused[name], plain[name], err_msg=name)
    return fused, fused_steps, plain_steps


def quantized(m, calib):
    """A make_model for fused_and_plain: m quantized on calib (fidelity target off)."""
    return lambda: qengine.quantize(m, calib, progress=False, target_sqnr=None)
