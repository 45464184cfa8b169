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
    is skipped -- and the last names none. The hint is an address that is only prefetched, so
    weights may be freed before the weights that name them. Results do not depend on it (every
    model test runs with hints)."""
    rng = np.random.default_rng(0)
    conv = K.ConvPacked(rng.integers(-5, 5, (8, 1, 1, 4), dtype=np.int8))
    dw = K.ConvPacked(rng.integers(-5, 5, (8, 3, 3, 1), dtype=np.int8), pads=1, groups=8)
    gemm = K.GemmPacked(rng.integers(-5, 5, (8, 6), dtype=np.int8))
    assert conv.method == "gemm_1x1" and dw.method == "dwconv"
    assert conv._prefetch_address == 0 and dw._b_address == 0
    one = dict(scale=np.full(8, 0.01, np.float32), zero_point=3)
    steps = [K.conv_step("c", conv, 1, 5, 5, (0, 0), (1, 0), 7, **one),
             K.conv_step("d", dw, 1, 5, 5, (1, 0), (2, 0), 3, **one),
             K.gemm_step("g", gemm, 25, (2, 0), (3, 0), 3, scale=np.full(6, 0.01, np.float32))]
    prog = K.Program(steps, [100, 200, 200, 150])
    assert conv._prefetch_address == gemm._b_address != 0
    assert gemm._prefetch_address == 0 and dw._prefetch_address == 0
    # a program of the other order re-chains them
    K.Program([K.gemm_step("g", gemm, 25, (0, 0), (1, 0), 3, scale=np.full(6, 0.01, np.float32)),
               K.conv_step("c", conv, 1, 5, 5, (2, 0), (3, 0), 7, **one)], [200, 150, 100, 200])
    assert gemm._prefetch_address == conv._b_address and conv._prefetch_address == 0
    # weights freed before the weights that name them: the stale hint is only prefetched
    K.Program(steps, [100, 200, 200, 150])
    assert conv._prefetch_address != 0
    del steps, prog, gemm
    x = rng.integers(0, 256, (1, 5, 5, 4), dtype=np.uint8)
    w = np.random.default_rng(0).integers(-5, 5, (8, 1, 1, 4), dtype=np.int8)  # conv's
    fresh = K.ConvPacked(w)
    assert fresh._prefetch_address == 0
    np.testing.assert_array_equal(K.conv_u8s8(conv, x, 7, out="u8", **one),
                                  K.conv_u8s8(fresh, x, 7, out="u8", **one))
