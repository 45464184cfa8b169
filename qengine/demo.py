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


def _median_latency(fn, x, runs: int = 200, warmup: int = 20) -> float:
    """Median seconds per call of fn(x) (single-image latency)."""
    import time
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_demo(print_fn=print, runs: int = 200) -> dict:
    """Quantize the bundled float model with the bundled calibration images, evaluate float
    and int8 on the bundled test split, and compare size and single-image latency.
    Returns the figures it prints."""
    import time

    from . import api
    from .cpu import cpu_info
    from .runtime.reference import ReferenceExecutor

    data = load_demo_data()
    test, labels = data["test"], data["labels"]
    t0 = time.perf_counter()
    model = api.quantize(str(MODEL_PATH), data["calib"], progress=False)
    t_quant = time.perf_counter() - t0
    float_graph = api.read_model(str(MODEL_PATH))
    reference = ReferenceExecutor(float_graph)
    out = float_graph.output_names[0]
    float_acc = float(np.mean(reference.run({"input": test})[out].argmax(1) == labels))
    int8_acc = float(np.mean(model.run(test).argmax(1) == labels))
    float_bytes = MODEL_PATH.stat().st_size
    int8_bytes = len(model.to_onnx().SerializeToString())
    one = test[:1]
    int8_lat = _median_latency(model.run, one, runs)
    baselines = {}
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = cpu_info()["num_threads"]
        sess = ort.InferenceSession(str(MODEL_PATH), so, providers=["CPUExecutionProvider"])
        baselines["onnxruntime fp32"] = _median_latency(lambda x: sess.run(None, {"input": x}),
                                                        one, runs)
    except ImportError:   # no onnxruntime: compare with qengine's own float path
        baselines["qengine fp32 (numpy reference)"] = _median_latency(
            lambda x: reference.run({"input": x}), one, max(20, runs // 4))
    info = cpu_info()
    figures = {"float_accuracy": float_acc, "int8_accuracy": int8_acc,
               "float_bytes": float_bytes, "int8_bytes": int8_bytes,
               "int8_latency_s": int8_lat, "baseline_latency_s": baselines,
               "quantize_seconds": t_quant, "test_images": int(len(labels)),
               "isa": info["isa"], "threads": info["num_threads"]}
    p = print_fn
    p("qengine demo: the tutorial CNN (Conv2D 32x3x3 + ReLU -> Flatten -> Dense 10, softmax)")
    p(f"  trained on scikit-learn digits at 32x32x3; calibrated on {len(data['calib'])} images,"
      f" evaluated on {len(labels)} held-out images")
    p(f"  kernels: {info['isa']}, {info['num_threads']} thread(s); quantized in {t_quant:.2f} s")
    p("")
    p(f"  accuracy   float32: {float_acc * 100:6.2f} %    int8: {int8_acc * 100:6.2f} %"
      f"    ({(int8_acc - float_acc) * 100:+.2f} points)")
    p(f"  size       float32: {float_bytes / 1024:7.1f} KiB  int8: {int8_bytes / 1024:7.1f} KiB"
      f"  ({float_bytes / int8_bytes:.1f}x smaller)")
    p(f"  latency    int8 (qengine): {int8_lat * 1e6:8.1f} us per image")
    for name, lat in baselines.items():
        p(f"             {name + ':':<32}{lat * 1e6:8.1f} us per image  ->  qengine int8 is "
          f"{lat / int8_lat:.1f}x faster")
    return figures
