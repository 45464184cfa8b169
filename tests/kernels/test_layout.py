"""Layout kernels (csrc/layout): permute copies, strided views, per-axis gathers, vs numpy."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qengine import _kernels as K
from steps import run_step


_run = run_step


@st.composite
def shapes_and_perms(draw):
    n = draw(st.integers(1, 6))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=n, max_size=n)))
    perm = tuple(draw(st.permutations(range(n))))
    return shape, perm


@settings(max_examples=80, deadline=None)
@given(sp=shapes_and_perms(), dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.int64]),
       seed=st.integers(0, 1000), threads=st.sampled_from([1, 2]))
def test_permute_copy_matches_numpy(sp, dtype, seed, threads):
    shape, perm = sp
    x = np.random.default_rng(seed).integers(0, 100, shape).astype(dtype)
    y = np.empty([shape[p] for p in perm], dtype)
    before = K.get_num_threads()
    K.set_num_threads(threads)
    try:
        _run(K.permute_step("p", shape, perm, x.itemsize, (0, 0), (1, 0)), x, y)
    finally:
        K.set_num_threads(before)
    np.testing.assert_array_equal(y, x.transpose(perm))


def test_large_relayout_splits_over_threads():
    x = np.random.default_rng(0).integers(0, 255, (2, 3, 180, 190)).astype(np.uint8)
    y = np.empty((2, 180, 190, 3), np.uint8)
    _run(K.permute_step("p", x.shape, (0, 2, 3, 1), 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 64, 127])
@pytest.mark.parametrize("batch, hw", [(1, (1, 1)), (1, (7, 9)), (2, (8, 8)), (3, (65, 67)),
                                       (1, (320, 320))])
def test_planes_to_pixels_on_every_isa(isa, threads, channels, batch, hw):
    """NCHW -> NHWC of bytes takes the per-ISA interleave up to 16 channels and the per-ISA
    block transpose from 17 on: every remainder of their vector loops (blocks of 16 and 64)
    and of the task split, each path equal to numpy."""
    x = np.random.default_rng(channels).integers(0, 256, (batch, channels, *hw)).astype(np.uint8)
    y = np.empty((batch, *hw, channels), np.uint8)
    _run(K.permute_step("p", x.shape, (0, 2, 3, 1), 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.int64])
@pytest.mark.parametrize("shape, perm", [((1, 160, 160, 16), (0, 3, 1, 2)),   # NHWC -> NCHW
                                         ((2, 129, 3), (0, 2, 1)),           # one tile + 1
                                         ((3, 5, 300, 7), (1, 3, 0, 2)),
                                         ((700, 130), (1, 0))])
def test_tiled_transposes(threads, dtype, shape, perm):
    """The innermost dst dim gathered from far apart (>= 2 tiles of 64) and the dim before it
    from near: tile by tile, every remainder, split over threads."""
    x = np.random.default_rng(0).integers(0, 100, shape).astype(dtype)
    y = np.empty([shape[p] for p in perm], dtype)
    _run(K.permute_step("p", shape, perm, x.itemsize, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, x.transpose(perm))


@pytest.mark.parametrize("channels", [1, 15, 16, 17, 31, 32, 33, 48, 64, 80, 96, 112, 127, 255])
@pytest.mark.parametrize("batch, hw", [(1, (1, 130)), (2, (8, 16)), (1, (3, 67)), (1, (56, 57))])
def test_pixels_to_planes_on_every_isa(isa, threads, channels, batch, hw):
    """NHWC -> NCHW of bytes takes the per-ISA 16 x 16 block transpose (transpose.h): blocks of
    64, 32 and 16 channels, the channels and pixels past them, tiles split over threads; each
    path equal to numpy."""
    x = np.random.default_rng(channels).integers(0, 256, (batch, *hw, channels)).astype(np.uint8)
    y = np.empty((batch, channels, *hw), np.uint8)
    _run(K.permute_step("p", x.shape, (0, 3, 1, 2), 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("channels", [1, 7, 8, 9, 16, 21, 64])
@pytest.mark.parametrize("batch, hw", [(1, (1, 9)), (2, (8, 16)), (1, (3, 67)), (1, (28, 29))])
def test_float_pixels_to_planes_on_every_isa(isa, threads, channels, batch, hw):
    """NHWC -> NCHW of 4-byte elements (a convolution's float output at a graph output) takes
    the per-ISA 8 x 8 block transpose: whole blocks, the channels and pixels past them, tiles
    split over threads; the bits of every float moved as they are (NaN payloads, -0.0)."""
    rng = np.random.default_rng(channels)
    bits = rng.integers(0, 2 ** 32, (batch, *hw, channels), dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    y = np.empty((batch, channels, *hw), np.float32)
    _run(K.permute_step("p", x.shape, (0, 3, 1, 2), 4, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y.view(np.uint32), bits.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("pixel_step", [40, 7])
def test_pixels_to_planes_from_strided_pixels(isa, pixel_step):
    """Pixels further apart than their channels (a slice of channels) or closer (windows that
    overlap, read-only): the pixel stride, not the channel count, locates each pixel."""
    x = np.random.default_rng(pixel_step).integers(0, 256, 300 * pixel_step + 64).astype(np.uint8)
    v = np.lib.stride_tricks.as_strided(x, (300, 33), (pixel_step, 1)).T
    y = np.empty(v.shape, np.uint8)
    _run(K.strided_copy_step("s", v.shape, v.strides, 0, 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, v)


def test_planes_to_pixels_from_a_wider_buffer(isa):
    """Planes further apart than the pixels (a slice of a longer row): the plane stride, not
    the pixel count, locates each channel."""
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 1000)).astype(np.uint8)
    v = x[:, :, :777].transpose(0, 2, 1)
    y = np.empty(v.shape, np.uint8)
    _run(K.strided_copy_step("s", v.shape, v.strides, 0, 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, v)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("pixels, channels, lo, hi", [(6400, 32, 0, 16), (6400, 32, 16, 32),
                                                      (4099, 40, 3, 24), (50, 256, 128, 256),
                                                      (9000, 5, 1, 4)])
def test_channel_slices_of_many_pixels(threads, dtype, pixels, channels, lo, hi):
    """A Split or Slice of channels: rows of a contiguous run, a fixed stride apart (the
    permute's row loop without an odometer), split over tasks that start mid-tensor; runs of
    3..64 bytes copied as fixed-size pieces."""
    x = np.random.default_rng(pixels).integers(0, 255, (pixels, channels)).astype(dtype)
    v = x[:, lo:hi]
    offset = v.__array_interface__["data"][0] - x.__array_interface__["data"][0]
    y = np.full(v.shape, 7, dtype)
    _run(K.strided_copy_step("s", v.shape, v.strides, offset, x.itemsize, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, v)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_strided_copy_of_slices_with_negative_steps(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, shape).astype(np.uint8)
    sl = tuple(slice(None, None, int(rng.choice([1, 2, -1, -2]))) for _ in shape)
    v = x[sl]
    offset = v.__array_interface__["data"][0] - x.__array_interface__["data"][0]
    y = np.empty(v.shape, np.uint8)
    _run(K.strided_copy_step("s", v.shape, v.strides, offset, 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, v)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 8), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_gather_axes_matches_numpy_indexing(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, shape).astype(np.uint8)
    maps = [rng.integers(0, n, rng.integers(1, 2 * n + 1)) for n in shape]
    y = np.empty([len(m) for m in maps], np.uint8)
    _run(K.gather_axes_step("g", tuple(shape), maps, 1, (0, 0), (1, 0)), x, y)
    np.testing.assert_array_equal(y, x[np.ix_(*maps)])


def test_bad_layout_steps_raise():
    with pytest.raises(ValueError):
        K.permute_step("p", (2, 3), (0, 0), 1, (0, 0), (1, 0))
    with pytest.raises(ValueError):
        K.gather_axes_step("g", (2, 3), [np.array([0, 2]), np.array([0])], 1, (0, 0), (1, 0))
    with pytest.raises(ValueError, match="outside"):
        K.Program([K.strided_copy_step("s", (4,), (2,), 0, 1, (0, 0), (1, 0))], [4, 4])
