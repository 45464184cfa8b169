"""A bias Add after a MatMul with constant weights runs inside the GEMM (lowering._fuse_row_adds):
the fused program drops the Add step and gives the same bits as the unfused one."""
import numpy as np
import pytest
from onnx import helper

from qengine import _kernels as K
from util import compiled_with, fused_and_plain, model, quantized


def _linear_bias(bias_shape, bias_first: bool, branch: bool, lead=(2, 6), k=24, n=40):
    """x (*lead, k) -> MatMul W (k, n) -> Add bias -> Relu -> MatMul (n, 8) -> y; with branch,
    the first MatMul's output also feeds an output of its own, so its Add must stay a step."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32)
    b1 = rng.normal(0, 0.5, bias_shape).astype(np.float32)
    w2 = rng.normal(0, 0.3, (n, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["b1", "m1"] if bias_first else ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["y"], name="mm2"),
    ]
    outputs = [("y", [*lead, 8])]
    if branch:
        outputs.append(("m1", [*lead, n]))
    return model(nodes, [("x", [*lead, k])], outputs, [("w1", w1), ("b1", b1), ("w2", w2)])


@pytest.mark.parametrize("bias_shape, bias_first, branch", [
    ((40,), False, False), ((40,), True, False), ((1, 1, 40), False, False),
    ((40,), False, True)])
def test_bias_add_runs_inside_its_matmul_with_the_same_bits(isa, threads, bias_shape,
                                                            bias_first, branch):
    rng = np.random.default_rng(1)
    m = _linear_bias(bias_shape, bias_first, branch)
    calib = [{"x": rng.normal(0, 1, (2, 6, 24)).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, (2, 6, 24)).astype(np.float32)}
    _, fused_steps, plain_steps = fused_and_plain(quantized(m, calib), feeds, "_fuse_row_adds")
    assert "bias1" in plain_steps
    assert ("bias1" in fused_steps) == branch       # another reader keeps the MatMul output
    assert fused_steps["mm1"] == ("MatMul" if branch else "MatMul+Add")   # what profiles show


def test_a_bias_on_a_gemm_split_by_columns(isa, threads):
    """One row of 2048 inputs and 320 outputs: on 2 threads the GEMM splits its columns, and
    each task adds its own part of the bias."""
    rng = np.random.default_rng(3)
    m = _linear_bias((320,), False, False, lead=(1,), k=2048, n=320)
    calib = [{"x": rng.normal(0, 1, (1, 2048)).astype(np.float32)} for _ in range(2)]
    feeds = {"x": rng.normal(0, 1, (1, 2048)).astype(np.float32)}
    _, fused_steps, _ = fused_and_plain(quantized(m, calib), feeds, "_fuse_row_adds")
    assert fused_steps["mm1"] == "MatMul+Add"


def test_a_bias_that_varies_along_rows_is_not_fused():
    """An Add of a (6, 1) constant broadcasts along the columns: no row vector, no fusion."""
    rng = np.random.default_rng(2)
    m = _linear_bias((6, 1), False, False)
    calib = [{"x": rng.normal(0, 1, (2, 6, 24)).astype(np.float32)} for _ in range(2)]
    _, steps = compiled_with(m, calib, calib[0])
    assert steps["mm1"] == "MatMul" and "bias1" in steps


def test_gemm_step_checks_its_row_add():
    b = K.GemmPacked(np.ones((8, 16), np.int8))
    ok = {"values": np.zeros(16, np.uint8), "a_zp": 5, "b_zp": 3, "y_zp": 4, "a_mult": 0.5,
          "b_mult": 0.25, "qmin": 0, "qmax": 255}
    K.gemm_step("g", b, 4, (0, 0), (1, 0), 0, scale=0.1, row_add=ok)
    for bad in ({"values": np.zeros(15, np.uint8)}, {"values": np.zeros(16, np.int32)},
                {"b_zp": 256}, {"a_zp": -1}, {"a_mult": 0.0}, {"b_mult": float("nan")},
                {"qmin": 9, "qmax": 8}):
        with pytest.raises(ValueError):
            K.gemm_step("g", b, 4, (0, 0), (1, 0), 0, scale=0.1, row_add={**ok, **bad})
    with pytest.raises(ValueError):
        K.gemm_step("g", b, 4, (0, 0), (1, 0), 0, out="f32", scale=0.1, row_add=ok)
    with pytest.raises(ValueError, match="lacks"):
        K.gemm_step("g", b, 4, (0, 0), (1, 0), 0, scale=0.1,
                    row_add={k: v for k, v in ok.items() if k != "y_zp"})


@pytest.mark.parametrize("ds, dz, fuses", [(0.05, 120, True), (0.05, 100, False),
                                           (0.06, 120, False)])
def test_a_foreign_qdq_bias_add(threads, ds, dz, fuses):
    """A QDQ graph written elsewhere: MatMul -> Q (0.05, 120) -> DQ (ds, dz) -> Add(DQ(bias)).
    Where the DQ repeats the Q's parameters the Add runs inside the GEMM with the bits of the
    two steps; where it does not, the Add is not an int8 unit and nothing fuses."""
    import qengine
    from onnx import TensorProto, numpy_helper as nh

    rng = np.random.default_rng(4)
    c = lambda name, v: nh.from_array(np.asarray(v), name)  # noqa: E731
    inits = [c("xs", np.float32(0.02)), c("xz", np.uint8(128)),
             c("w", rng.integers(-127, 128, (24, 40), dtype=np.int8)),
             c("ws", np.full(40, 0.01, np.float32)), c("wz", np.zeros(40, np.int8)),
             c("ms", np.float32(0.05)), c("mz", np.uint8(120)), c("ds", np.float32(ds)),
             c("dz", np.uint8(dz)), c("b", rng.integers(0, 256, 40, dtype=np.uint8)),
             c("bs", np.float32(0.01)), c("bz", np.uint8(128)), c("ys", np.float32(0.08)),
             c("yz", np.uint8(90))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["m"], name="mm"),
             helper.make_node("QuantizeLinear", ["m", "ms", "mz"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "ds", "dz"], ["md"]),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"]),
             helper.make_node("Add", ["md", "bd"], ["a"], name="bias"),
             helper.make_node("QuantizeLinear", ["a", "ys", "yz"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 6, 24])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 40])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    x = rng.normal(0, 1, (2, 6, 24)).astype(np.float32)
    _, steps, plain_steps = fused_and_plain(lambda: qengine.load(m), {"x": x}, "_fuse_row_adds")
    assert steps["mm"] == ("MatMul+Add" if fuses else "MatMul") and plain_steps["mm"] == "MatMul"
