"""The bundled demo: the tutorial's CNN trained on scikit-learn's digits (scripts/train_demo_model.py).

The package ships the float model (data/demo_digits.onnx, NHWC input (N, 32, 32, 3)) and the
digits as 8x8 uint8 images (data/demo_digits.npz: calibration and test splits);
`prepare_images` turns them into the model's input.
"""
from __future__ import annotations

import pathlib

import numpy as np

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
MODEL_PATH = DATA_DIR / "demo_digits.onnx"
DATA_PATH = DATA_DIR / "demo_digits.npz"


def prepare_images(images: np.ndarray) -> np.ndarray:
    """8x8 digits (0..16) -> float32 (N, 32, 32, 3) in [0, 1]: 4x nearest upscaling, gray to RGB."""
    images = np.asarray(images, dtype=np.float32) / 16.0
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise ValueError(f"expected digits of shape (N, 8, 8), got {images.shape}")
    up = images.repeat(4, axis=1).repeat(4, axis=2)
    return np.ascontiguousarray(np.repeat(up[..., None], 3, axis=-1))


def load_demo_data() -> dict[str, np.ndarray]:
    """{'calib': (100, 32, 32, 3), 'test': (M, 32, 32, 3), 'labels': (M,)}"""
    with np.load(DATA_PATH, allow_pickle=False) as z:
        return {"calib": prepare_images(z["calib_images"]), "test": prepare_images(z["test_images"]),
                "labels": z["test_labels"].astype(np.int64)}


def keras_demo_model():
    """The demo model as a Keras 3 Sequential (the tutorial's exact architecture) holding the
    trained weights of data/demo_digits.onnx: conv kernels OIHW -> HWIO, the Dense matrix
    transposed (both flatten NHWC, so its rows need no reordering). Imports Keras; set
    KERAS_BACKEND first if TensorFlow is absent."""
    import keras
    import onnx
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(MODEL_PATH)).graph.initializer}
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="demo_digits")
    model.set_weights([w["conv.weight"].transpose(2, 3, 1, 0), w["conv.bias"],
                       w["dense.weight"].T, w["dense.bias"]])
    return model

