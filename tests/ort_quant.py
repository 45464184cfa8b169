"""onnxruntime's own static quantization of a test model, for tests that compare with it."""
from __future__ import annotations

import pathlib

import onnx


def ort_quantize_qdq(model: onnx.ModelProto, calibration, directory, name: str = "model"):
    """onnxruntime's quantize_static of `model` in QDQ form -- per-channel int8 weights, uint8
    activations, MinMax calibration on `calibration` (arrays fed to the input "input") --
    saved in `directory`; returns (float path, quantized path)."""
    from onnxruntime import quantization as oq

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calibration])

        def get_next(self):
            return next(self.it, None)

    directory = pathlib.Path(directory)
    src, dst = directory / f"{name}.onnx", directory / f"{name}.qdq.onnx"
    onnx.save(model, str(src))
    oq.quantize_static(str(src), str(dst), Reader(), quant_format=oq.QuantFormat.QDQ,
                       per_channel=True, activation_type=oq.QuantType.QUInt8,
                       weight_type=oq.QuantType.QInt8,
                       calibrate_method=oq.CalibrationMethod.MinMax)
    return src, dst
