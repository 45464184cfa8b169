"""Import keras.applications architectures (random weights, nothing downloaded) and compare
qengine's float graph with model.predict: relative error, node and Transpose counts, import
time. A wider check than the test suite has time for.

    KERAS_BACKEND=torch python scripts/check_keras_applications.py [Name ...]
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import qengine  # noqa: E402
from qengine.runtime.reference import ReferenceExecutor  # noqa: E402

MODELS = {"ResNet50": 64, "MobileNetV2": 96, "MobileNetV3Small": 96, "EfficientNetB0": 64,
          "DenseNet121": 64, "InceptionV3": 96, "Xception": 96, "VGG16": 64,
          "ConvNeXtTiny": 64}


def check(name: str, size: int) -> str:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=10, classifier_activation=None)
    x = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32) * 255
    t = time.perf_counter()
    g = qengine.from_keras(model)
    t = time.perf_counter() - t
    ours = ReferenceExecutor(g).run({g.input_names[0]: x})[g.output_names[0]]
    ref = np.asarray(model.predict(x, verbose=0))
    err = float(np.abs(ours - ref).max() / max(float(np.abs(ref).max()), 1e-30))
    n_t = sum(n.op_type == "Transpose" for n in g.nodes)
    return f"{name:<17} nodes {len(g.nodes):4d}  transposes {n_t:3d}  import {t:5.2f} s  " \
           f"max rel err {err:.1e}"


def main() -> None:
    for name in sys.argv[1:] or MODELS:
        try:
            print(check(name, MODELS.get(name, 96)), flush=True)
        except qengine.QEngineError as e:
            print(f"{name:<17} not imported: {e}", flush=True)


if __name__ == "__main__":
    main()
