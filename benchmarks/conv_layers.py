"""The convolution layers the benchmarks time: ResNet-18 and MobileNetV2 (depthwise) at 224x224
and the OCR recognizer's 5x5 depthwise layers (models.ocr_recognizer, a 32x320 line), batch 1,
with random uint8 activations and int8 per-channel weights, and the same layer as a single-node
onnxruntime QLinearConv model (NCHW) for the baseline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layer:
    name: str
    in_c: int
    out_c: int
    size: int      # input height (and width, unless `width` is given)
    kernel: int
    stride: int    # along the height (and the width, unless `stride_w` is given)
    pad: int
    groups: int = 1
    width: int = 0
    stride_w: int = 0

    @property
    def in_hw(self):
        return self.size, self.width or self.size

    @property
    def strides(self):
        return self.stride, self.stride_w or self.stride

    @property
    def out_hw(self):
        return tuple((n + 2 * self.pad - self.kernel) // st + 1
                     for n, st in zip(self.in_hw, self.strides))

    @property
    def macs(self):
        oh, ow = self.out_hw
        return oh * ow * self.out_c * self.kernel ** 2 * self.in_c // self.groups


RESNET18 = [
    Layer("r18.conv1", 3, 64, 224, 7, 2, 3),
    Layer("r18.l1.conv", 64, 64, 56, 3, 1, 1),
    Layer("r18.l2.0.conv1", 64, 128, 56, 3, 2, 1),
    Layer("r18.l2.0.down", 64, 128, 56, 1, 2, 0),
    Layer("r18.l2.conv", 128, 128, 28, 3, 1, 1),
    Layer("r18.l3.0.conv1", 128, 256, 28, 3, 2, 1),
    Layer("r18.l3.0.down", 128, 256, 28, 1, 2, 0),
    Layer("r18.l3.conv", 256, 256, 14, 3, 1, 1),
    Layer("r18.l4.0.conv1", 256, 512, 14, 3, 2, 1),
    Layer("r18.l4.0.down", 256, 512, 14, 1, 2, 0),
    Layer("r18.l4.conv", 512, 512, 7, 3, 1, 1),
]

MOBILENETV2_DW = [
    Layer(f"mv2.dw{c}.{s}s{st}", c, c, s, 3, st, 1, groups=c)
    for c, s, st in [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1),
                     (192, 28, 2), (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1)]
]

# The OCR backbone's 5x5 depthwise layers: (channels, input height, stride along the height).
OCR_DW = [
    Layer(f"ocr.dw{c}.{h}x160s{st}", c, c, h, 5, st, 2, groups=c, width=160, stride_w=1)
    for c, h, st in [(96, 8, 2), (240, 4, 1), (120, 4, 1), (144, 4, 1), (288, 4, 2), (576, 2, 1)]
]

LAYERS = RESNET18 + MOBILENETV2_DW + OCR_DW

X_ZP, X_SCALE, Y_ZP, Y_SCALE = 113, 0.02, 120, 0.05


def make_data(layer: Layer, seed=0):
    """x NHWC uint8, w OHWI int8, per-channel w scales, int32 bias."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1, *layer.in_hw, layer.in_c), dtype=np.uint8)
    w = rng.integers(-127, 128, (layer.out_c, layer.kernel, layer.kernel, layer.in_c // layer.groups),
                     dtype=np.int8)
    w_scale = rng.uniform(0.001, 0.01, layer.out_c).astype(np.float32)
    bias = rng.integers(-2000, 2000, layer.out_c, dtype=np.int32)
    return x, w, w_scale, bias


def qengine_runner(layer: Layer, x, w, w_scale, bias):
    """A no-argument callable running the layer through qengine (output preallocated)."""
    from qengine import _kernels as K
    p = K.ConvPacked(w, strides=layer.strides, pads=layer.pad, groups=layer.groups)
    mult = (np.float32(X_SCALE) * w_scale / np.float32(Y_SCALE)).astype(np.float32)
    y = np.empty(p.output_shape(x.shape), np.uint8)
    out = K.ConvOutput(layer.out_c, bias=bias, scale=mult, zero_point=Y_ZP)  # validated once

    def run():
        K.conv_u8s8(p, x, X_ZP, output=out, y=y)
        return y
    return run, p


def ort_runner(layer: Layer, x, w, w_scale, bias, threads):
    """A no-argument callable running the layer as an onnxruntime QLinearConv (NCHW)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    wn = np.ascontiguousarray(w.transpose(0, 3, 1, 2))
    inits = [
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(X_ZP, np.uint8), "x_zp"),
        numpy_helper.from_array(wn, "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(layer.out_c, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(Y_SCALE, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(Y_ZP, np.uint8), "y_zp"),
        numpy_helper.from_array(bias, "bias"),
    ]
    node = helper.make_node(
        "QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias"],
        ["y"], kernel_shape=[layer.kernel] * 2, strides=list(layer.strides), pads=[layer.pad] * 4,
        group=layer.groups)
    graph = helper.make_graph(
        [node], layer.name,
        [helper.make_tensor_value_info("x", TensorProto.UINT8, list(xn.shape))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, layer.out_c, *layer.out_hw])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"x": xn}

    def run():
        return sess.run(None, feed)[0]
    return run
