"""The Keras example of the tutorial qengine was born from, with real quantization.

The tutorial builds a small CNN, "quantizes" it by rounding its float weights to uint8 (which
destroys the model) and predicts on random data. Here the same model and data go through
qengine: calibration on X, int8 weights per channel, uint8 activations, then predict. Then the
same on a trained model: the demo's digits classifier, rebuilt in Keras.

Runs without TensorFlow: Keras 3 on the torch backend (set KERAS_BACKEND to choose another).

    python examples/keras_quickstart.py
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.layers import Conv2D, Dense, Flatten  # noqa: E402
from keras.models import Sequential  # noqa: E402

import qengine  # noqa: E402
from qengine.demo import keras_demo_model, load_demo_data  # noqa: E402
from qengine.runtime.reference import ReferenceExecutor  # noqa: E402


def tutorial_model() -> Sequential:
    """The tutorial's model, as written."""
    model = Sequential()
    model.add(Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)))
    model.add(Flatten())
    model.add(Dense(10, activation='softmax'))
    return model


def float_import_error(model, X) -> float:
    """Largest difference between qengine's float import and model.predict."""
    graph = qengine.from_keras(model)
    ours = ReferenceExecutor(graph).run({graph.input_names[0]: X.astype(np.float32)})
    return float(np.abs(ours[graph.output_names[0]] - model.predict(X, verbose=0)).max())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def main() -> None:
    np.random.seed(0)
    keras.utils.set_random_seed(0)                   # the same random weights every run
    X = np.random.rand(100, 32, 32, 3)              # the tutorial's data
    model = tutorial_model()
    data = load_demo_data()                          # the digits: calibration and test splits
    digits = keras_demo_model()

    # -- float: the import computes what Keras computes --------------------------------------
    print(f"tutorial model: float import vs model.predict, max |diff| = "
          f"{float_import_error(model, X):.2e}")
    print(f"digits model:   float import vs model.predict, max |diff| = "
          f"{float_import_error(digits, data['test']):.2e}")

    # -- int8: the tutorial, with quantization that keeps the model --------------------------
    float_pred = model.predict(X, verbose=0)
    qmodel = qengine.quantize(model, X)              # calibration on X
    int8_pred = qmodel.predict(X)
    print(f"tutorial model: int8 top-1 agreement with model.predict(X): "
          f"{agreement(int8_pred, float_pred):.1%}")

    # -- int8: the trained digits model ------------------------------------------------------
    float_pred = digits.predict(data["test"], verbose=0)
    int8_pred = qengine.quantize(digits, data["calib"]).predict(data["test"])
    acc = lambda p: float((p.argmax(axis=1) == data["labels"]).mean())   # noqa: E731
    print(f"digits model: float accuracy {acc(float_pred):.2%}, int8 accuracy "
          f"{acc(int8_pred):.2%}, top-1 agreement {agreement(int8_pred, float_pred):.1%}")


if __name__ == "__main__":
    main()
