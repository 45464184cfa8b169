"""Model.run(array)'s compiled fast path (Executor.run_compiled) against the general path."""
import numpy as np
import pytest

import models
import qengine
from qengine.errors import ExecutionError, InputError


@pytest.fixture(scope="module")
def yolo():
    """A one-input model with two outputs (boxes, scores) and a symbolic batch."""
    m = models.yolo_block(size=32)
    calib = [models.random_input(m, 2, seed=s)["input"] for s in range(2)]
    return qengine.quantize(m, calib, progress=False, target_sqnr=None)


def test_fast_path_matches_the_general_path(yolo):
    ex = yolo._executor
    x = models.random_input(yolo.to_onnx(), 2, seed=7)["input"]
    assert ex.run_compiled(x) is None                  # no plan for this shape yet
    general = ex.run({"input": x})                     # compiles
    fast = ex.run_compiled(x)
    assert [o.shape for o in fast] == [general[n].shape for n in ex.output_names]
    for name, out in zip(ex.output_names, fast):
        np.testing.assert_array_equal(out, general[name])
    boxes, scores = yolo.run(x)                        # Model.run takes the fast path
    np.testing.assert_array_equal(boxes, general[ex.output_names[0]])
    np.testing.assert_array_equal(scores, general[ex.output_names[1]])
    again = yolo.run(x)
    assert not np.shares_memory(again[0], boxes)       # every call returns new arrays


def test_inputs_the_fast_path_does_not_take(yolo):
    """Arrays that need converting (float64, a sample without its batch dim, a view that is not
    C-contiguous) go the general way and give the same result."""
    ex = yolo._executor
    x = models.random_input(yolo.to_onnx(), 1, seed=8)["input"]
    want = yolo.run(x)
    assert ex.run_compiled(x.astype(np.float64)) is None
    for variant in (x.astype(np.float64), x[0]):
        for a, b in zip(yolo.run(variant), want):
            np.testing.assert_array_equal(a, b)
    strided = np.asfortranarray(x)
    for a, b in zip(yolo.run(strided), want):          # fast path, copied to C order in C
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="dtype"):
        yolo.run(x.astype(np.int32).astype(np.complex64))


def test_thread_cap_is_lifted_after_a_call(yolo):
    """A model's num_threads caps its kernels during its call and is lifted afterwards, also
    on the fast path (the cap is per calling thread; see qengine.set_num_threads)."""
    from qengine import _kernels as K
    capped = qengine.load(yolo.to_onnx().SerializeToString(), num_threads=1)
    x = models.random_input(yolo.to_onnx(), 1, seed=9)["input"]
    huge = qengine.load(yolo.to_onnx().SerializeToString(), num_threads=10**12)  # no cap
    before = K.effective_threads()
    for _ in range(2):                                 # compile, then the fast path
        for model in (capped, huge):
            for a, b in zip(model.run(x), yolo.run(x)):
                np.testing.assert_array_equal(a, b)
            assert K.effective_threads() == before


def test_out_of_memory_on_the_fast_path_is_an_execution_error():
    from onnx import helper
    m = models.make_model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 1],
                                            pads=[0, 0, 0, 2 ** 40])],
                          [models.vi("x", [1, 1, 2, 2])], [models.vi("y", None)])
    model = qengine.load(m.SerializeToString())
    for _ in range(2):                                 # the second call finds the plan
        with pytest.raises(ExecutionError, match="out of memory") as e:
            model.run(np.ones((1, 1, 2, 2), np.float32))
        assert isinstance(e.value.__cause__, MemoryError)
