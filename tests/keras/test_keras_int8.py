"""int8 quantization of imported Keras models through the public API
(qengine.quantize(model, data).predict(x)): the tutorial's model on its random data and the
demo's trained digits model keep top-1 agreement with float >= 99%."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras", reason="Keras 3 (the 'test' extra) is not installed",
                            exc_type=ImportError)

import qengine  # noqa: E402
from qengine.demo import keras_demo_model, load_demo_data  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tutorial():
    """The tutorial's model (random weights) and data, float and int8 predictions."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    X = np.random.default_rng(0).random((100, 32, 32, 3)).astype(np.float32)
    ref = model.predict(X, verbose=0)
    q = np.asarray(qengine.quantize(model, X).predict(X))
    assert q.shape == ref.shape
    return ref, q


def test_tutorial_model_int8_agreement(tutorial):
    """The logits feed only the float Softmax, so the last GEMM writes them in float: no
    uint8 rounding of near-tied logits (which cost 2 points when they were quantized)."""
    ref, q = tutorial
    assert float((q.argmax(1) == ref.argmax(1)).mean()) >= 0.99


def test_digits_model_int8_agreement():
    data = load_demo_data()
    model = keras_demo_model()
    ref = model.predict(data["test"], verbose=0)
    q = np.asarray(qengine.quantize(model, data["calib"]).predict(data["test"]))
    assert float((q.argmax(1) == ref.argmax(1)).mean()) >= 0.99
    acc = lambda p: float((p.argmax(1) == data["labels"]).mean())   # noqa: E731
    assert acc(q) >= acc(ref) - 0.01
