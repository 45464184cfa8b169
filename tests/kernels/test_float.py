"""The float kernels of csrc/float (softmax, log-softmax, layer normalization): close to numpy
in float64, and the same bits on every ISA path."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qengine import _kernels as K
from steps import run_step


def _run(step, x, out_shape):
    return run_step(step, x, np.empty(out_shape, np.float32))


def _softmax64(x, log):
    z = x.astype(np.float64) - x.max(-1, keepdims=True)
    if log:
        return z - np.log(np.exp(z).sum(-1, keepdims=True))
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 70), scale=st.sampled_from([0.1, 3.0, 40.0]),
       log=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_matches_float64_and_is_identical_on_every_isa(rows, cols, scale, log, seed):
    x = (np.random.default_rng(seed).standard_normal((rows, cols)) * scale).astype(np.float32)
    outs = []
    before = K.get_isa()
    try:
        for isa in K.available_isas():
            K.set_isa(isa)
            outs.append(_run(K.softmax_step("s", rows, cols, (0, 0), (1, 0), log=log), x,
                             x.shape))
    finally:
        K.set_isa(before)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    np.testing.assert_allclose(outs[0], _softmax64(x, log), rtol=1e-5, atol=1e-6)


def test_softmax_extremes():
    x = np.array([[-np.inf, 0, 1], [1000, -1000, 0], [-100, -100, -100]], np.float32)
    y = _run(K.softmax_step("s", 3, 3, (0, 0), (1, 0)), x, x.shape)
    np.testing.assert_allclose(y, [[0, 1 / (1 + np.e), np.e / (1 + np.e)], [1, 0, 0],
                                   [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 30), cols=st.integers(1, 90), with_beta=st.booleans(),
       seed=st.integers(0, 2**16))
def test_layernorm_matches_float64_and_is_identical_on_every_isa(rows, cols, with_beta, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * 3 + 1).astype(np.float32)
    g = rng.standard_normal(cols).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32) if with_beta else None
    outs = []
    before = K.get_isa()
    try:
        for isa in K.available_isas():
            K.set_isa(isa)
            outs.append(_run(K.layernorm_step("n", rows, cols, (0, 0), (1, 0), g, b, 1e-5), x,
                             x.shape))
    finally:
        K.set_isa(before)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * g
    if b is not None:
        ref = ref + b
    np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows, cols", [(80, 97), (80, 128), (320, 80), (3, 2000), (1, 9000),
                                        (50, 81)])
def test_row_jobs_split_among_threads_give_the_same_bits(isa, rows, cols):
    """Softmax and LayerNormalization of 4K elements or more split their rows among the
    threads (csrc/float/softmax.c float_run): 1, 2 and 3 threads give the same bits, close to
    float64, for tasks of uneven row counts and for a single row."""
    rng = np.random.default_rng(rows * cols)
    x = (rng.standard_normal((rows, cols)) * 3 + 1).astype(np.float32)
    g, b = rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32)
    steps = {"softmax": lambda: K.softmax_step("s", rows, cols, (0, 0), (1, 0)),
             "layernorm": lambda: K.layernorm_step("n", rows, cols, (0, 0), (1, 0), g, b, 1e-5)}
    before = K.get_num_threads()
    outs = {name: [] for name in steps}
    try:
        for n in (1, 2, 3):
            K.set_num_threads(n)
            for name, make in steps.items():
                outs[name].append(_run(make(), x, x.shape))
    finally:
        K.set_num_threads(before)
    for name, o in outs.items():
        for other in o[1:]:
            np.testing.assert_array_equal(other, o[0], err_msg=name)
    np.testing.assert_allclose(outs["softmax"][0], _softmax64(x, False), rtol=1e-5, atol=1e-6)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(outs["layernorm"][0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows, cols", [(8, 80), (13, 97), (17, 7), (9, 128)])
def test_a_row_gives_the_same_bits_alone_and_in_a_block(isa, rows, cols):
    """Softmax and LayerNormalization reduce a block of 8 rows at a time, interleaved
    (csrc/float/float_ops.h qe_reduce_rows); each row, run alone, gives the bits it has in the
    block, in full blocks and in the last, shorter one, with infinities and zeros in the rows."""
    rng = np.random.default_rng(rows * cols)
    x = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
    x[1, 2], x[2, 0], x[3, -1], x[4, 1] = np.inf, -np.inf, -0.0, 0.0
    g, b = rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32)
    for log in (False, True):
        whole = _run(K.softmax_step("s", rows, cols, (0, 0), (1, 0), log=log), x, x.shape)
        for r in range(rows):
            alone = _run(K.softmax_step("s", 1, cols, (0, 0), (1, 0), log=log), x[r:r + 1],
                         (1, cols))
            np.testing.assert_array_equal(alone[0].view(np.int32), whole[r].view(np.int32))
    whole = _run(K.layernorm_step("n", rows, cols, (0, 0), (1, 0), g, b, 1e-5), x, x.shape)
    for r in range(rows):
        alone = _run(K.layernorm_step("n", 1, cols, (0, 0), (1, 0), g, b, 1e-5), x[r:r + 1],
                     (1, cols))
        np.testing.assert_array_equal(alone[0], whole[r])


def test_bad_float_steps_raise():
    with pytest.raises(ValueError):
        K.softmax_step("s", 0, 3, (0, 0), (1, 0))
    with pytest.raises(ValueError):
        K.layernorm_step("n", 2, 3, (0, 0), (1, 0), np.ones(4, np.float32), None, 1e-5)
    with pytest.raises(ValueError):
        K.layernorm_step("n", 2, 3, (0, 0), (1, 0), np.ones(3, np.float32), None, -1.0)
    with pytest.raises(ValueError, match="outside"):
        K.Program([K.softmax_step("s", 4, 4, (0, 0), (1, 0))], [32, 64])


NUMPY_SCALAR = {"mul": lambda x, c: x * c, "add": lambda x, c: x + c, "sub": lambda x, c: x - c,
                "rsub": lambda x, c: c - x, "div": lambda x, c: x / c, "rdiv": lambda x, c: c / x}


@pytest.mark.parametrize("op", sorted(NUMPY_SCALAR))
@pytest.mark.parametrize("n", [1, 7, 64, 1000, 70000])   # 70000: split over the thread pool
def test_scalar_op_is_numpys_float32_operation(isa, threads, op, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
    x[:3] = [0.0, -0.0, np.inf][:min(3, n)]
    c = np.float32(rng.uniform(0.1, 3.0))
    got = _run(K.scalar_f32_step("s", n, (0, 0), (1, 0), op, float(c)), x, x.shape)
    with np.errstate(all="ignore"):
        want = NUMPY_SCALAR[op](x, c).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_scalar_ops_lower_in_a_compiled_float_region():
    """Add/Sub/Mul/Div of an activation and a one-element constant, in either order, run as
    the C step and give numpy's bits; a broadcast constant of more elements stays numpy."""
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper as nh
    import qengine
    nodes = [h.make_node("Mul", ["x", "c0"], ["a"], name="m"),
             h.make_node("Div", ["c1", "a"], ["b"], name="d"),
             h.make_node("Sub", ["b", "c2"], ["c"], name="s"),
             h.make_node("Add", ["c3", "c"], ["e"], name="ad"),
             h.make_node("Mul", ["e", "c4"], ["y"], name="bc")]
    inits = [nh.from_array(np.asarray(v, np.float32), n) for n, v in
             [("c0", 0.37), ("c1", [1.7]), ("c2", -3.1), ("c3", 0.11), ("c4", [1.0, 2.0, 3.0])]]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 5, 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 5, 3])], inits)
    model = qengine.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
                         .SerializeToString())
    labels = str(model.summary())
    assert labels.count("by a constant (C)") == 4 and "float Mul" in labels
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    got = model.run({"x": x})   # one output: the array itself
    f = np.float32
    want = (f(0.11) + (f(1.7) / (x * f(0.37)) - f(-3.1))) * np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(got, want)


def _lrn64(x, size, alpha, bias, beta):
    """The spec's LRN in float64 on (N, C, P): channels [c - (size-1)//2, c + size//2]."""
    x64 = x.astype(np.float64)
    lo, hi = (size - 1) // 2, size // 2
    return np.stack([x64[:, c] / (bias + alpha / size *
                                  (x64[:, max(0, c - lo):c + hi + 1] ** 2).sum(axis=1)) ** beta
                     for c in range(x.shape[1])], axis=1)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 40), p=st.integers(1, 300), size=st.integers(1, 7),
       beta=st.sampled_from([0.75, 0.5, 1.0, 0.6]), seed=st.integers(0, 2**16))
def test_lrn_matches_float64_in_both_layouts_and_is_identical_on_every_isa(n, c, p, size, beta,
                                                                           seed):
    x = (np.random.default_rng(seed).standard_normal((n, c, p)) * 4).astype(np.float32)
    alpha, bias = 0.03, 1.25
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 1))
    outs = []
    before = K.get_isa()
    try:
        for isa in K.available_isas():
            K.set_isa(isa)
            planes = K.lrn_f32(x, size, alpha / size, bias, beta)
            last = K.lrn_f32(nhwc, size, alpha / size, bias, beta, channels_last=True)
            np.testing.assert_array_equal(last.transpose(0, 2, 1), planes)  # same sums, order
            outs.append(planes)
    finally:
        K.set_isa(before)
    for o in outs[1:]:
        np.testing.assert_array_equal(o.view(np.int32), outs[0].view(np.int32))
    np.testing.assert_allclose(outs[0], _lrn64(x, size, alpha, bias, beta), rtol=2e-6, atol=1e-7)


def test_lrn_spans_threads_and_checks_its_arguments():
    x = np.random.default_rng(1).standard_normal((2, 64, 3000)).astype(np.float32)
    before = K.get_num_threads()
    try:
        ys = []
        for t in (1, 2):
            K.set_num_threads(t)
            ys.append(K.lrn_f32(x, 5, 1e-4 / 5, 2.0, 0.75))
    finally:
        K.set_num_threads(before)
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_allclose(ys[0], _lrn64(x, 5, 1e-4, 2.0, 0.75), rtol=2e-6)
    with pytest.raises(TypeError, match="3-D float32"):
        K.lrn_f32(x.astype(np.float64), 5, 1e-4, 1.0, 0.75)
    with pytest.raises(ValueError, match="size"):
        K.lrn_f32(x, 0, 1e-4, 1.0, 0.75)
    assert K.lrn_f32(np.zeros((0, 3, 4), np.float32), 3, 1e-4, 1.0, 0.75).shape == (0, 3, 4)
