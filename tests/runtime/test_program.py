"""The step program: native steps back to back, Python steps between, slot checks."""
import numpy as np
import pytest

import npref
from qengine import _kernels as K


def _chain(rng, M=5, K1=7, N1=6, N2=3):
    b1 = rng.integers(-127, 128, (K1, N1), dtype=np.int8)
    b2 = rng.integers(-127, 128, (N1, N2), dtype=np.int8)
    p1, p2 = K.GemmPacked(b1), K.GemmPacked(b2)
    # slots: 0 input (M,K1) u8, 1 hidden (M,N1) u8 in the arena, 2 hidden copy (arena), 3 output f32
    steps = [
        K.gemm_step("g1", p1, M, (0, 0), (1, 0), 3, scale=0.01, zero_point=10),
        K.PyStep("copy", "Identity", lambda v: np.copyto(v[2], v[1])),
        K.gemm_step("g2", p2, M, (2, 0), (3, 0), 10, out="f32", scale=np.float32(0.5)),
    ]
    prog = K.Program(steps, [M * K1, M * N1, M * N1, M * N2 * 4])
    return prog, b1, b2


def test_program_runs_native_and_python_steps():
    rng = np.random.default_rng(1)
    prog, b1, b2 = _chain(rng)
    ctx = K.RunContext(prog, 128, [(1, 0, np.uint8, (5, 6)), (2, 64, np.uint8, (5, 6))])
    x = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    y = np.empty((5, 3), np.float32)
    ctx.bind(0, x)
    ctx.bind(3, y)
    times = np.zeros(len(prog))
    prog.run(ctx, times)
    h = npref.requantize(npref.gemm_acc(x, 3, b1), np.float32(0.01), 10)
    want = npref.output_stage(npref.gemm_acc(h, 10, b2), "f32", scale=np.float32(0.5))
    np.testing.assert_array_equal(y, want)
    assert (times >= 0).all()


def test_program_rejects_out_of_bounds_steps():
    rng = np.random.default_rng(2)
    b = K.GemmPacked(rng.integers(-127, 128, (7, 6), dtype=np.int8))
    step = K.gemm_step("g", b, 5, (0, 0), (1, 0), 0, scale=1.0)
    with pytest.raises(ValueError, match="outside"):
        K.Program([step], [5 * 7, 5 * 6 - 1])


def test_bind_rejects_small_arrays():
    rng = np.random.default_rng(3)
    prog, _, _ = _chain(rng)
    ctx = K.RunContext(prog, 128, [(1, 0, np.uint8, (5, 6)), (2, 64, np.uint8, (5, 6))])
    with pytest.raises(ValueError, match="needs"):
        ctx.bind(0, np.zeros((2, 7), np.uint8))


def test_weights_name_the_next_weights_to_prefetch_in_step_order():
    """Program chains the packed weights of its steps (qe_gemm_packed_set_next): each names the
    next GEMM-backed weights in step order -- a depthwise convolution, which has no packed B,
    is skipped -- the last names none, and the hint holds the weights it names. Results do not
    depend on it (every model test runs with hints)."""
    rng = np.random.default_rng(0)
    conv = K.ConvPacked(rng.integers(-5, 5, (8, 1, 1, 4), dtype=np.int8))
    dw = K.ConvPacked(rng.integers(-5, 5, (8, 3, 3, 1), dtype=np.int8), pads=1, groups=8)
    gemm = K.GemmPacked(rng.integers(-5, 5, (8, 6), dtype=np.int8))
    assert conv.method == "gemm_1x1" and dw.method == "dwconv"
    assert conv.prefetch_next is None
    one = dict(scale=np.full(8, 0.01, np.float32), zero_point=3)
    steps = [K.conv_step("c", conv, 1, 5, 5, (0, 0), (1, 0), 7, **one),
             K.conv_step("d", dw, 1, 5, 5, (1, 0), (2, 0), 3, **one),
             K.gemm_step("g", gemm, 25, (2, 0), (3, 0), 3, scale=np.full(6, 0.01, np.float32))]
    prog = K.Program(steps, [100, 200, 200, 150])
    assert conv.prefetch_next is gemm and gemm.prefetch_next is None
    assert dw.prefetch_next is None
    ctx = K.RunContext(prog, 0, [])
    x = rng.integers(0, 256, (1, 5, 5, 4), dtype=np.uint8)
    bufs = [x, np.empty(200, np.uint8), np.empty(200, np.uint8), np.empty(150, np.uint8)]
    for i, a in enumerate(bufs):
        ctx.bind(i, a)
    prog.run(ctx)
    del prog, ctx, steps, gemm
    assert conv.prefetch_next.N == 6   # still held: the C hint never names freed weights
    # a program of the other order re-chains them
    g2 = conv.prefetch_next
    K.Program([K.gemm_step("g", g2, 25, (0, 0), (1, 0), 3, scale=np.full(6, 0.01, np.float32)),
               K.conv_step("c", conv, 1, 5, 5, (2, 0), (3, 0), 7, **one)], [200, 150, 100, 200])
    assert g2.prefetch_next is conv and conv.prefetch_next is None
