"""Jobs too small to pay for a second thread stay on the calling thread (qe_threads_for_cycles):
on 2 threads, a chain of 16-pixel convolutions had cost 1.4 us per op against 0.6 on one,
because each split wakes and joins a worker. Larger jobs of the same kernels still use the
pool, and the split never changes a result."""
import numpy as np
import pytest

from qengine import _kernels as K


@pytest.fixture
def two_threads():
    before = K.get_num_threads()
    K.set_num_threads(2)
    yield
    K.set_num_threads(before)


def _dispatched(fn):
    """(result, pool jobs handed to workers while fn ran); fn runs once first (lazy setup)."""
    fn()
    n0 = K.pool_jobs_dispatched()
    out = fn()
    return out, K.pool_jobs_dispatched() - n0


def _conv(rng, cin, cout, k, groups=1):
    w = rng.integers(-128, 128, (cout, k, k, cin // groups), dtype=np.int8)
    return K.ConvPacked(w, pads=k // 2, groups=groups)


def _conv_call(p, x):
    return lambda: K.conv_u8s8(p, x, 3, scale=np.full(p.out_c, 1e-3, np.float32), zero_point=7)


def _kernel_calls(rng, small):
    """(name, call) pairs: each kernel family on a tiny input (small) or a large one."""
    hw, c = (4, 8) if small else (56, 64)
    x = rng.integers(0, 256, (1, hw, hw, c), dtype=np.uint8)
    calls = [("conv 1x1", _conv_call(_conv(rng, c, c, 1), x)),
             ("conv 3x3 im2col", _conv_call(_conv(rng, c, c, 3), x)),
             ("depthwise 3x3", _conv_call(_conv(rng, c, c, 3, groups=c), x)),
             ("maxpool 3x3", lambda: K.maxpool_u8(x, 3, pads=1)),
             ("global average pool", lambda: K.global_avgpool_u8(x, 3, 0.5, 9))]
    if not small:   # a global pool splits by chunks of 256 channels: 2 MB of 512
        xg = rng.integers(0, 256, (1, 64, 64, 512), dtype=np.uint8)
        calls[-1] = ("global average pool", lambda: K.global_avgpool_u8(xg, 3, 0.5, 9))
    return calls


def test_tiny_kernel_calls_stay_on_the_calling_thread(isa, two_threads):
    rng = np.random.default_rng(0)
    for name, call in _kernel_calls(rng, small=True):
        got, jobs = _dispatched(call)
        assert jobs == 0, f"{name} on a tiny input handed {jobs} job(s) to the pool"
        K.set_num_threads(1)
        np.testing.assert_array_equal(call(), got, err_msg=name)
        K.set_num_threads(2)


def test_large_kernel_calls_still_use_the_pool(isa, two_threads):
    rng = np.random.default_rng(1)
    for name, call in _kernel_calls(rng, small=False):
        got, jobs = _dispatched(call)
        assert jobs >= 1, f"{name} on a large input ran on one thread"
        K.set_num_threads(1)
        np.testing.assert_array_equal(call(), got, err_msg=name)
        K.set_num_threads(2)
