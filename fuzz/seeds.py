"""Seed corpora of the fuzz targets: small valid models (and their inputs) that mutations start
from. Built once per run into a directory of plain files (.onnx bytes, .keras archives, .npz
inputs) that every worker reads; nothing is pickled.

The float seeds are the project's own test models (tests/models.py builders at small sizes,
the single-op units of tests/pipeline/test_units.py) plus the bundled demo model; the QDQ seeds
are the same models quantized by qengine, plus three quantized by onnxruntime (foreign QDQ
conventions); the QOperator seeds are onnxruntime's QOperator and dynamic forms and qengine's
dynamic quantization. The Keras seeds are built with Keras when it is installed.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _test_paths() -> None:
    for p in (ROOT / "tests", ROOT / "tests" / "pipeline"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def float_models() -> dict:
    """{name: onnx.ModelProto}: every model family the tests build, at fuzzing sizes."""
    _test_paths()
    import onnx

    import models as M
    from test_units import CASES
    out = {
        "resnet18": M.resnet18(size=16, width=4, num_classes=3),
        "mobilenetv2": M.mobilenetv2(size=16, width_mult=0.25, num_classes=3),
        "yolo_block": M.yolo_block(size=16, width=8),
        "ocr_block": M.ocr_block(size=(8, 16), width=8, dim=16),
        "opset11": M.opset11_constant_weights(size=8, width=4),
    }
    for name, (m, _) in sorted(CASES.items()):
        out[f"unit_{name}"] = m
    from qengine.demo import MODEL_PATH
    out["demo_digits"] = onnx.load(str(MODEL_PATH))
    return out


def input_shapes(proto) -> dict:
    """{input name: concrete shape}: symbolic dims become 2 (batch) or 1."""
    inits = {t.name for t in proto.graph.initializer}
    shapes = {}
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (2 if i == 0 else 1)
                for i, d in enumerate(vi.type.tensor_type.shape.dim)]
        shapes[vi.name] = tuple(dims)
    return shapes


def _calibration(proto, n=3, seed=0) -> list:
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(np.float32) for k, s in input_shapes(proto).items()}
            for _ in range(n)]


# (seed model, onnxruntime format, manifest kind)
ORT_SEEDS = [("unit_conv3x3", "qdq", "qdq"), ("unit_add_full", "qdq", "qdq"),
             ("resnet18", "qdq", "qdq"), ("unit_conv3x3", "qoperator", "qop"),
             ("unit_concat_channels", "qoperator", "qop"),
             ("unit_mul_squeeze_excite", "qoperator", "qop"),
             ("unit_avgpool_include_pad", "qoperator", "qop"), ("mobilenetv2", "qoperator", "qop"),
             ("unit_gemm_transB", "dynamic", "qop"), ("unit_matmul_3d", "dynamic", "qop"),
             ("ocr_block", "dynamic", "qop")]
DYNAMIC_SEEDS = ("unit_gemm_transB", "unit_matmul_3d", "ocr_block")


def _ort_quantized(proto, calib, fmt: str) -> bytes:
    """The model quantized by onnxruntime.quantization: fmt 'qdq' or 'qoperator' (static,
    per-channel int8 weights) or 'dynamic' (MatMulInteger / DynamicQuantizeLinear)."""
    import logging
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    logging.getLogger().setLevel(logging.ERROR)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(proto, src)
        if fmt == "dynamic":
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        else:
            quantize_static(src, dst, Reader(), per_channel=True,
                            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return Path(dst).read_bytes()


def _keras_seeds(out: Path) -> list:
    """Small .keras archives (Conv2D/Dense/pooling/BatchNorm) built with Keras, if installed."""
    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras
    except Exception:
        return []
    keras.utils.set_random_seed(0)
    L = keras.layers
    made = {
        "keras_cnn": keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(4, 3, activation="relu"),
                                       L.MaxPooling2D(), L.Flatten(), L.Dense(5),
                                       L.Softmax()]),
        "keras_bn_dw": keras.Sequential([keras.Input((10, 10, 4)),
                                         L.DepthwiseConv2D(3, padding="same"),
                                         L.BatchNormalization(), L.ReLU(6.0),
                                         L.GlobalAveragePooling2D(), L.Dense(3)]),
        "keras_mlp": keras.Sequential([keras.Input((16,)), L.Dense(8, activation="tanh"),
                                       L.Dropout(0.2), L.Dense(4)]),
    }
    names = []
    for name, model in made.items():
        model.save(out / f"{name}.keras")
        names.append(name)
    return names


def build(out: Path, keras_seeds: bool = True) -> dict:
    """Write every seed under `out` and return the manifest {seed kind: [file names]} (also
    written as out/manifest.json)."""
    import qengine
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"onnx": [], "qdq": [], "qop": [], "keras": []}
    protos = float_models()
    for name, proto in protos.items():
        data = proto.SerializeToString()
        (out / f"{name}.onnx").write_bytes(data)
        manifest["onnx"].append(f"{name}.onnx")
        q = qengine.quantize(data, _calibration(proto), progress=False, target_sqnr=None)
        (out / f"{name}.qdq.onnx").write_bytes(q.to_onnx().SerializeToString())
        manifest["qdq"].append(f"{name}.qdq.onnx")
    for name in DYNAMIC_SEEDS:       # qengine's own dynamic quantization
        q = qengine.quantize_dynamic(protos[name].SerializeToString())
        (out / f"{name}.dyn.onnx").write_bytes(q.to_onnx().SerializeToString())
        manifest["qop"].append(f"{name}.dyn.onnx")
    for name, fmt, kind in ORT_SEEDS:
        try:
            blob = _ort_quantized(protos[name], _calibration(protos[name]), fmt)
        except Exception as e:     # onnxruntime missing or failing: these seeds are optional
            print(f"fuzz seeds: no onnxruntime {fmt} seed for {name}: {e}", file=sys.stderr)
            continue
        (out / f"{name}.ort_{fmt}.onnx").write_bytes(blob)
        manifest[kind].append(f"{name}.ort_{fmt}.onnx")
    if keras_seeds:
        manifest["keras"] = [f"{n}.keras" for n in _keras_seeds(out)]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())
