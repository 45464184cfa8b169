"""Thread safety: many Python threads running one model (shared packed weights, one plan
cache, pooled run contexts) give exactly the outputs of sequential runs; models with different
thread caps run side by side without leaking their cap; the pool may be resized while models
run. Each check compares bit for bit against outputs computed sequentially first."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import qengine
from qengine import _kernels as K

from models import ocr_block, random_input, resnet18

N_THREADS = 8
N_RUNS = 1000


def _quantized(builder, **kw):
    m = builder(**kw)
    calib = [random_input(m, batch=2, seed=s) for s in range(2)]
    return qengine.quantize(m.SerializeToString(), calib, progress=False, target_sqnr=None)


@pytest.fixture(scope="module")
def resnet():
    return _quantized(resnet18, size=16, width=4, num_classes=5)


@pytest.fixture(scope="module")
def mixed():
    """ocr_block: int8 kernels and float (numpy) steps interleaved."""
    return _quantized(ocr_block, size=(8, 16), width=8, dim=16)


def _inputs(n, batches=(1, 2, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batches[i % len(batches)], 3, 16, 16)).astype(np.float32)
            for i in range(n)]


def _hammer(fn, jobs, threads=N_THREADS):
    """Run fn(job) for every job over `threads` Python threads started together."""
    barrier = threading.Barrier(threads)

    def worker(k):
        barrier.wait()
        return [(i, fn(jobs[i])) for i in range(k, len(jobs), threads)]

    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(worker, range(threads)))
    return dict(pair for part in parts for pair in part)


def test_eight_threads_one_model_match_sequential(resnet):
    """1000 runs from 8 threads on one model, fresh and with plans for three batch sizes
    compiled concurrently on first use, equal the sequential outputs bit for bit."""
    xs = _inputs(24)
    expected = [resnet.run(x) for x in xs]
    model = qengine.Model(resnet.graph)           # fresh: no plan compiled yet
    jobs = [i % len(xs) for i in range(N_RUNS)]
    got = _hammer(lambda i: model.run(xs[i]), jobs)
    assert len(got) == N_RUNS
    for k, i in enumerate(jobs):
        np.testing.assert_array_equal(got[k], expected[i], err_msg=f"run {k}")
    assert len(model._executor._plans) == 3       # one plan per batch size, not per thread


def test_eight_threads_with_float_steps(mixed):
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1 + i % 2, 3, 8, 16)).astype(np.float32) for i in range(8)]
    expected = [mixed.run(x) for x in xs]
    jobs = [i % len(xs) for i in range(200)]
    got = _hammer(lambda i: mixed.run(xs[i]), jobs)
    for k, i in enumerate(jobs):
        np.testing.assert_array_equal(got[k], expected[i])


def test_raw_outputs_and_sessions_from_threads(resnet, tmp_path):
    """The lazily built raw executor and InferenceSession objects, first used from 8
    threads at once."""
    xs = _inputs(8, batches=(1,))
    path = tmp_path / "m.onnx"
    resnet.save(path)
    expected_raw = [resnet.run(x, raw=True) for x in xs]
    expected = [resnet.run(x) for x in xs]
    model = qengine.load(path)
    sess = qengine.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    jobs = [i % len(xs) for i in range(160)]
    raw = _hammer(lambda i: model.run(xs[i], raw=True), jobs)
    via_sess = _hammer(lambda i: sess.run(None, {name: xs[i]})[0], jobs)
    for k, i in enumerate(jobs):
        np.testing.assert_array_equal(raw[k], expected_raw[i])
        np.testing.assert_array_equal(via_sess[k], expected[i])


def test_two_models_with_different_thread_caps_at_once(resnet):
    """A 1-thread model and a 2-thread model of the same graph, each run from 4 threads at
    the same time: both give the sequential outputs, and the caps (thread-local in the
    kernels) do not leak into the calling threads."""
    before = K.get_num_threads()
    K.set_num_threads(2)
    try:
        one = qengine.Model(resnet.graph, num_threads=1)
        two = qengine.Model(resnet.graph, num_threads=2)
        xs = _inputs(12)
        expected = [resnet.run(x) for x in xs]
        jobs = [(k % 2, k % len(xs)) for k in range(400)]
        seen_caps = []

        def run(job):
            which, i = job
            out = (one if which == 0 else two).run(xs[i])
            seen_caps.append(K.effective_threads())    # after the run: no cap left behind
            return out

        got = _hammer(run, jobs)
        for k, (_, i) in enumerate(jobs):
            np.testing.assert_array_equal(got[k], expected[i])
        assert set(seen_caps) == {2}
    finally:
        K.set_num_threads(before)


def test_pool_resized_while_models_run(resnet):
    """set_num_threads() from one thread while four others run: the pool is rebuilt between
    jobs (qe_set_num_threads waits for a running job); every output stays exact."""
    xs = _inputs(6)
    expected = [resnet.run(x) for x in xs]
    before = K.get_num_threads()
    stop = threading.Event()

    def resizer():
        n = 0
        while not stop.is_set():
            K.set_num_threads(1 + n % 3)
            n += 1
        return n

    try:
        with ThreadPoolExecutor(1) as side:
            fut = side.submit(resizer)
            jobs = [i % len(xs) for i in range(240)]
            got = _hammer(lambda i: resnet.run(xs[i]), jobs, threads=4)
            stop.set()
            assert fut.result() > 0
        for k, i in enumerate(jobs):
            np.testing.assert_array_equal(got[k], expected[i])
    finally:
        stop.set()
        K.set_num_threads(before)


def test_rejected_inputs_from_threads_leave_the_model_intact(resnet):
    """Bad calls interleaved with good ones from 8 threads: each bad call raises its
    InputError, each good one gives the sequential output."""
    xs = _inputs(4, batches=(1,))
    expected = [resnet.run(x) for x in xs]
    bad = [np.ones((1, 4, 16, 16), np.float32), np.ones((1, 3, 16), np.float32),
           np.ones((1, 3, 16, 16), np.complex64), "x", None]

    def run(k):
        if k % 3 == 0:
            with pytest.raises(qengine.InputError):
                resnet.run(bad[k % len(bad)])
            return None
        return resnet.run(xs[k % len(xs)])

    got = _hammer(run, list(range(240)))
    for k in range(240):
        if k % 3:
            np.testing.assert_array_equal(got[k], expected[k % len(xs)])
