"""A batch's first layers run image by image (runtime/per_image.py, Program's per_image):
bit for bit the batched result, on exactly the items that treat samples independently."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import models
import qengine
from qengine import _kernels as K
from qengine.runtime import per_image
from qengine.runtime.plan import build_plan


def _quantized(model, batch=2):
    calib = [models.random_input(model, batch, seed=s)["input"] for s in range(2)]
    return qengine.quantize(model, calib, progress=False, target_sqnr=None)


def _plans(qm, shape, modes=("off", "all")):
    cache = {}
    return {m: build_plan(qm.graph, {"input": shape}, cache, per_image_mode=m) for m in modes}


def _run(plan, x):
    return K.CompiledPlan(plan).call((x,))


def _assert_same(plans, x):
    outs = {m: _run(p, x) for m, p in plans.items()}
    ref = outs.pop("off")
    for m, got in outs.items():
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b, err_msg=f"per-image mode {m}")


@pytest.fixture(scope="module")
def zoo():
    return {name: _quantized(build(size=32)) for name, build in
            [("resnet18", models.resnet18), ("mobilenetv2", models.mobilenetv2),
             ("yolo", models.yolo_block), ("ocr", models.ocr_block)]}


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "yolo", "ocr"])
@pytest.mark.parametrize("batch", [2, 3])
def test_per_image_prefix_is_bit_identical(zoo, name, batch, isa, threads):
    qm = zoo[name]
    x = models.random_input(qm.to_onnx(), batch, seed=3)["input"]
    plans = _plans(qm, x.shape)
    k, images = plans["all"].program.per_image[:2]
    assert k > 0 and images == batch
    assert plans["off"].program.per_image is None
    _assert_same(plans, x)


def test_batch_of_one_runs_batched(zoo):
    x = models.random_input(zoo["resnet18"].to_onnx(), 1)["input"]
    assert _plans(zoo["resnet18"], x.shape)["all"].program.per_image is None


def test_auto_prefix_of_resnet18_ends_where_weights_outweigh_an_image(monkeypatch):
    """A batch of 8 at 224 x 224: the stem, stage 1 and stage 2 run per image (their batch
    activations outgrow a 1 MiB L2); stage 3's first convolution (295 KB of weights against
    150 KB of one image's activations) starts the batch."""
    monkeypatch.setattr(per_image, "l2_cache_bytes", lambda: 1 << 20)
    qm = _quantized(models.resnet18(size=224, width=64, num_classes=10), batch=1)
    plan = build_plan(qm.graph, {"input": (8, 3, 224, 224)}, {}, per_image_mode="auto")
    k = plan.program.per_image[0]
    steps = plan.program.steps
    convs = [s.name for s in steps[:k] if s.op.startswith("Conv")]
    batched = [s.name for s in steps[k:] if s.op.startswith("Conv")]
    assert len(convs) == 1 + 4 + 5 and len(batched) == 10, (convs, batched)
    assert steps[k].op == "Conv"
    # profiles report the work of every image of a per-image step
    x = models.random_input(qm.to_onnx(), 8)["input"]
    _, prof = qm.run_profiled(x)
    _, prof1 = qm.run_profiled(x[:1])
    assert sum(p[3] for p in prof) == pytest.approx(8 * sum(p[3] for p in prof1))


def _chain(kind: str, n_c: int):
    """input -> conv -> <kind> -> conv: `kind` is an op that must end the per-image prefix
    (it mixes samples, or holds a constant per sample) when the batch is n_c."""
    b = models.Builder(seed=1)
    x = b.op("Relu", [b.conv("input", 3, n_c, 3)])
    if kind == "transpose":            # swaps the batch and the channels (equal sizes)
        x = b.op("Transpose", [x], perm=[1, 0, 2, 3])
    elif kind == "per_sample_constant":
        x = b.op("Add", [x, b.const(np.linspace(-1, 1, n_c * n_c * 64).astype(np.float32)
                                    .reshape(n_c, n_c, 8, 8))])
    elif kind == "softmax_over_batch":
        x = b.op("Softmax", [x], axis=0)
    elif kind == "concat_batch":
        x = b.op("Concat", [x, x], axis=0)
    y = b.conv(x, n_c, 4, 3)
    return b.model([n_c if kind != "concat_batch" else "N", 3, 8, 8], [y], kind)


@pytest.mark.parametrize("kind", ["transpose", "per_sample_constant", "softmax_over_batch",
                                  "concat_batch"])
def test_items_that_mix_samples_end_the_prefix(kind):
    n = 4
    m = _chain(kind, n)
    qm = _quantized(m, batch=n)
    x = models.random_input(m, n, seed=5)["input"]
    plans = _plans(qm, x.shape)
    prog = plans["all"].program
    k = prog.per_image[0] if prog.per_image else 0
    mixed = {"transpose": "Transpose", "per_sample_constant": "Add",
             "softmax_over_batch": "Softmax", "concat_batch": "Concat"}[kind]
    names = [s.name for s in prog.steps]
    # the step of the mixing node (a transpose's is the relayout of its output)
    first_mixing = next(i for i, nm in enumerate(names) if mixed.lower() in nm.lower())
    assert k <= first_mixing, (names, k)
    _assert_same(plans, x)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(2, 4), width=st.sampled_from([4, 8, 16]),
       size=st.integers(6, 20), pool=st.booleans(), residual=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**16))
def test_random_conv_nets_per_image_match_batched(batch, width, size, pool, residual, split,
                                                  seed):
    """Random chains of the per-sample ops (conv, max pool, residual add, split/concat on
    channels): per image == batched, with live-out tensors of the prefix in the arena."""
    b = models.Builder(seed=seed)
    x = b.op("Relu", [b.conv("input", 3, width, 3, stride=2 if size > 12 else 1)])
    if pool:
        x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if residual:
        y = b.op("Relu", [b.conv(x, width, width, 3)])
        x = b.op("Relu", [b.op("Add", [b.conv(y, width, width, 3), x])])
    if split:
        s1, s2 = b.op("Split", [x, b.const(np.array([width // 2] * 2, np.int64))], n_out=2,
                      axis=1)
        x = b.op("Concat", [b.op("Sigmoid", [s2]), s1], axis=1)
    x = b.op("Flatten", [b.op("GlobalAveragePool", [b.conv(x, width, 2 * width, 1)])])
    m = b.model(["N", 3, size, size], [b.gemm(x, 2 * width, 5)], "random")
    qm = _quantized(m, batch=2)
    x = models.random_input(m, batch, seed=seed)["input"]
    plans = _plans(qm, x.shape)
    assert plans["all"].program.per_image is not None
    _assert_same(plans, x)


def test_program_runs_its_prefix_once_per_image(threads):
    """Two steps built for 8 bytes run on each 8-byte image of 16-byte slots, the tensor between
    them in the running thread's image arena; the step after the prefix runs once, on the whole
    of its slots."""
    table = (255 - np.arange(256)).astype(np.uint8)
    steps = [K.lut_step("per image 1", 8, (0, 0), (1, 0), table, "T"),
             K.lut_step("per image 2", 8, (1, 0), (2, 0), (np.arange(256) // 2).astype(np.uint8),
                        "T"),
             K.lut_step("batched", 16, (2, 0), (3, 0), table, "T")]
    # slot 1 lives in the image arena (at byte 64 of 72), slots 0 and 2 move on by 8 per image
    prog = K.Program(steps, [16, 16, 16, 16], (2, 2, [8, 8, 8, 0], [-1, 64, -1, -1], 72))
    assert [prog.images(i) for i in range(3)] == [2, 2, 1]
    ctx = K.RunContext(prog, 0, [])
    x = np.arange(3, 19, dtype=np.uint8)
    arrays = [x] + [np.zeros(16, np.uint8) for _ in range(3)]
    for slot, arr in enumerate(arrays):
        ctx.bind(slot, arr)
    times = np.zeros(3)
    prog.run(ctx, times)
    np.testing.assert_array_equal(arrays[1], 0)             # never written: private
    np.testing.assert_array_equal(arrays[2], table[x] // 2)
    np.testing.assert_array_equal(arrays[3], table[table[x] // 2])
    assert times[0] > 0


def test_program_checks_per_image_arguments():
    step = K.lut_step("t", 8, (0, 0), (1, 0), np.arange(256, dtype=np.uint8), "T")
    none = [-1, -1]
    with pytest.raises(ValueError, match="cannot hold"):
        K.Program([step], [16, 16], (1, 2, [16, 8], none, 0))    # 2 images of 16 bytes in 16
    with pytest.raises(ValueError, match="outside"):
        K.Program([step], [16, 16], (1, 2, [4, 4], none, 0))     # the step reads 8 per image
    with pytest.raises(ValueError, match="steps"):
        K.Program([step], [16, 16], (2, 2, [8, 8], none, 0))     # more per-image steps than steps
    with pytest.raises(ValueError, match="image arena"):
        K.Program([step], [16, 16], (1, 2, [8, 8], [-1, 4], 8))  # 8 bytes at 4 in 8
    with pytest.raises(ValueError, match="not a native step"):
        K.Program([K.PyStep("p", "P", lambda views: None)], [16, 16], (1, 2, [8, 8], none, 0))


def test_mode_from_environment(monkeypatch):
    for value, want in [("0", "off"), ("1", "auto"), ("ALL", "all"), ("", "auto")]:
        monkeypatch.setenv("QENGINE_PER_IMAGE", value)
        assert per_image.mode_from_environment() == want
    monkeypatch.setenv("QENGINE_PER_IMAGE", "sometimes")
    with pytest.raises(ValueError, match="QENGINE_PER_IMAGE"):
        per_image.mode_from_environment()


def test_convolution_by_weights_of_the_graph_runs_batched():
    """A quantized Conv whose weights are a graph input (4 output channels, batch 4: the shape
    alone would pass for a batch) must not run per image (today it runs in float; the int8
    units check their weights are constants, per_image._ONE_ACTIVATION, for the day it does
    not)."""
    from onnx import TensorProto, helper, numpy_helper
    n = 4
    inits = [numpy_helper.from_array(np.array(v, dt), name) for name, v, dt in
             [("sx", 0.05, np.float32), ("zx", 128, np.uint8), ("sw", 0.02, np.float32),
              ("zw", 0, np.int8), ("sy", 0.1, np.float32), ("zy", 128, np.uint8)]]
    nodes = [helper.make_node("QuantizeLinear", ["input", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "sy", "zy"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "sy", "zy"], ["y"])]
    m = models.make_model(nodes, [models.vi("input", [n, 3, 8, 8]),
                                  models.vi("w", [4, 3, 3, 3])],
                          [models.vi("y", [n, 4, 8, 8])], inits)
    qm = qengine.load(m.SerializeToString())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    shapes = {"input": x.shape, "w": w.shape}
    plans = {mode: build_plan(qm.graph, shapes, {}, per_image_mode=mode)
             for mode in ("off", "all")}
    prog = plans["all"].program
    k = prog.per_image[0] if prog.per_image else 0
    assert all(not s.op.startswith("Conv") for s in prog.steps[:k]), prog.steps
    outs = {mode: K.CompiledPlan(p).call((x, w)) for mode, p in plans.items()}
    np.testing.assert_array_equal(outs["all"][0], outs["off"][0])


def test_memory_limit_counts_each_threads_image_arena(zoo, monkeypatch):
    """A per-image prefix keeps its tensors in one image arena per thread instead of the
    batch's arena: the memory limit counts those arenas."""
    from qengine.errors import InputError
    from qengine.runtime.executor import Executor
    monkeypatch.setenv("QENGINE_PER_IMAGE", "all")
    qm = zoo["resnet18"]
    x = models.random_input(qm.to_onnx(), 4, seed=1)["input"]
    plan = build_plan(qm.graph, {"input": x.shape}, {})
    batched = build_plan(qm.graph, {"input": x.shape}, {}, per_image_mode="off")
    assert plan.program.image_bytes > 0 and plan.arena_bytes < batched.arena_bytes
    need = plan.activation_bytes(2)
    assert need == plan.arena_bytes + 2 * (plan.program.image_bytes + 128)
    with pytest.raises(InputError, match=f"needs {need:,} bytes"):
        Executor(qm.graph, num_threads=2, memory_limit=need - 1).run({"input": x})
    out = Executor(qm.graph, num_threads=2, memory_limit=need).run({"input": x})
    np.testing.assert_array_equal(list(out.values())[0],
                                  K.CompiledPlan(batched).call((x,))[0])
