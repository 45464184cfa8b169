"""Nearest Resize on integer codes (the uint8 tensors of an int8 model) copies elements in their
own dtype; it must equal the generic path (through float64, rint, saturate) bit for bit."""
import numpy as np
import pytest

from qengine.graph import Node
from qengine.ops import make_op
from qengine.ops.resize import NEAREST_MODES


def _resize(attrs, x, scales=None, sizes=None):
    node = Node("r", "Resize", ["x", "", "scales" if scales is not None else "",
                                "sizes" if sizes is not None else ""], ["y"], attrs)
    op = make_op(node, {"": 19})
    return op._resize(x, scales, sizes)[0]


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners",
                                   "pytorch_half_pixel", "tf_half_pixel_for_nn"])
@pytest.mark.parametrize("nearest", NEAREST_MODES[:4])
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 0.5, 1.7), (1, 1, 3, 0.6)])
def test_nearest_on_codes_equals_the_float_path(coord, nearest, scales):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 5, 7), dtype=np.uint8)
    attrs = dict(mode="nearest", coordinate_transformation_mode=coord, nearest_mode=nearest)
    got = _resize(attrs, x, np.array(scales, np.float32))
    want = _resize(attrs, x.astype(np.float64), np.array(scales, np.float32))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.clip(np.rint(want), 0, 255).astype(np.uint8))
    s8 = (x.astype(np.int16) - 128).astype(np.int8)
    np.testing.assert_array_equal(_resize(attrs, s8, np.array(scales, np.float32)),
                                  _resize(attrs, s8.astype(np.float32),
                                          np.array(scales, np.float32)).astype(np.int8))
