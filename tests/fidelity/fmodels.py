"""Small float models that reproduce the ways textbook int8 quantization breaks real models
(issue 9): an outlier channel, a Concat of a wide-range and a narrow-range branch, a
Sigmoid/Softmax head, a Div/HardSigmoid-heavy block. Built with tests/models.py's Builder."""
from __future__ import annotations

import math

import numpy as np

from models import Builder


def _scaled_conv(b: Builder, x, cin, cout, k, out_scale=None, in_scale=None, bias=True):
    """A conv whose output channels are multiplied by out_scale[c] and whose input channels'
    weights by in_scale[c] (badly scaled channels, as training leaves them)."""
    w = b.rng.standard_normal((cout, cin, k, k)) * math.sqrt(2.0 / (cin * k * k))
    if out_scale is not None:
        w = w * np.asarray(out_scale).reshape(-1, 1, 1, 1)
    if in_scale is not None:
        w = w * np.asarray(in_scale).reshape(1, -1, 1, 1)
    ins = [x, b.weight(w.astype(np.float32))]
    if bias:
        bias_v = b.rng.standard_normal(cout) * 0.1
        if out_scale is not None:
            bias_v = bias_v * np.asarray(out_scale)
        ins.append(b.weight(bias_v.astype(np.float32), "b"))
    return b.op("Conv", ins, kernel_shape=[k, k], pads=[k // 2] * 4)


def outlier_channel(size=12, batch="N", width=16, seed=0):
    """conv -> relu -> conv: one channel of the middle activation is ~60x larger than the
    others (and the next conv weighs it down by as much). Per-tensor uint8 activations give
    the small channels 2-3 bits."""
    b = Builder(seed)
    up = np.ones(width)
    up[3] = 60.0
    x = b.op("Relu", [_scaled_conv(b, "input", 3, width, 3, out_scale=up)])
    y = _scaled_conv(b, x, width, 8, 3, in_scale=1.0 / up)
    return b.model([batch, 3, size, size], [y], "outlier_channel")


def badly_scaled_channels(size=12, batch="N", width=16, seed=0):
    """Conv->ReLU->depthwise conv->ReLU->Conv whose per-channel weight ranges span 300x:
    per-tensor weight scales wreck it; cross-layer equalization undoes the imbalance."""
    b = Builder(seed)
    r = np.random.default_rng(seed + 1)
    s1 = np.exp(r.uniform(np.log(0.05), np.log(15.0), width))
    s2 = np.exp(r.uniform(np.log(0.05), np.log(15.0), width))
    x = b.op("Relu", [_scaled_conv(b, "input", 3, width, 3, out_scale=s1)])
    wd = b.rng.standard_normal((width, 1, 3, 3)) * math.sqrt(2.0 / 9) / s1.reshape(-1, 1, 1, 1) \
        * s2.reshape(-1, 1, 1, 1)
    x = b.op("Relu", [b.op("Conv", [x, b.weight(wd.astype(np.float32)),
                                    b.weight((b.rng.standard_normal(width) * 0.1 * s2)
                                             .astype(np.float32), "b")],
                           kernel_shape=[3, 3], pads=[1] * 4, group=width)])
    y = _scaled_conv(b, x, width, 8, 1, in_scale=1.0 / s2)
    return b.model([batch, 3, size, size], [y], "badly_scaled_channels")


def concat_head(size=16, batch="N", width=16, num_classes=6, seed=0):
    """A YOLO-style head: box coordinates in pixels (0..320) and class probabilities (0..1)
    concatenated into one (N, anchors, 4 + classes) output, plus the best class score per
    anchor (the post-processing input)."""
    b = Builder(seed)
    f = b.op("Relu", [b.conv("input", 3, width, 3)])
    f = b.op("Relu", [b.conv(f, width, width, 3)])
    box = b.op("Sigmoid", [b.conv(f, width, 4, 1)])
    box = b.op("Mul", [box, b.const(np.array(320.0, np.float32))])
    cls = b.op("Sigmoid", [b.conv(f, width, num_classes, 1)])
    cat = b.op("Concat", [box, cls], axis=1)                         # (N, 4+C, H, W)
    no = 4 + num_classes
    det = b.op("Transpose", [b.op("Reshape", [cat, b.const(np.array([0, no, -1], np.int64))])],
               perm=[0, 2, 1])                                       # (N, HW, 4+C)
    scores = b.op("Slice", [det, b.const(np.array([4], np.int64)),
                            b.const(np.array([no], np.int64)), b.const(np.array([2], np.int64))])
    conf = b.op("ReduceMax", [scores], axes=[2], keepdims=0)
    return b.model([batch, 3, size, size], [det, conf], "concat_head")


def sigmoid_softmax_head(size=16, batch="N", width=16, num_classes=8, seed=0):
    """A detector head whose one conv predicts box offsets in pixels (+-100) and class logits
    (+-5) side by side, as YOLOv5-style heads do; the logits are split off into a Sigmoid
    (multi-label scores) and a Softmax (class distribution). Under one per-tensor scale the
    logits get ~0.4-wide steps."""
    b = Builder(seed)
    f = b.op("Relu", [b.conv("input", 3, width, 3)])
    f = b.op("Relu", [b.conv(f, width, width, 3)])
    out_scale = np.concatenate([np.full(4, 25.0), np.full(num_classes, 1.5)])
    h = _scaled_conv(b, f, width, 4 + num_classes, 1, out_scale=out_scale)
    box, logits = b.op("Split", [h, b.const(np.array([4, num_classes], np.int64))], n_out=2,
                       axis=1)
    scores = b.op("Sigmoid", [logits])
    probs = b.op("Softmax", [logits], axis=1)
    return b.model([batch, 3, size, size], [box, scores, probs], "sigmoid_softmax_head")


def div_hardsigmoid_block(size=16, batch="N", width=16, seed=0):
    """A MobileNetV3/OCR-style block: conv, a normalization written out with Div
    ((x - mean) / sqrt(var + eps), as older exporters write LayerNorm/InstanceNorm), an SE gate
    with HardSigmoid, HardSwish written as x * HardSigmoid(x), and a Div by a constant."""
    b = Builder(seed)
    w = width
    x = _scaled_conv(b, "input", 3, w, 3, out_scale=np.where(np.arange(w) == 5, 0.01, 1.0))
    mean = b.op("ReduceMean", [x], axes=[2, 3], keepdims=1)
    d = b.op("Sub", [x, mean])
    var = b.op("ReduceMean", [b.op("Mul", [d, d])], axes=[2, 3], keepdims=1)
    std = b.op("Sqrt", [b.op("Add", [var, b.const(np.array(1e-5, np.float32))])])
    x = b.op("Div", [d, std])
    x = b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])      # HardSwish
    se = b.op("GlobalAveragePool", [x])
    se = b.op("Relu", [b.conv(se, w, w // 4, 1)])
    se = b.op("HardSigmoid", [b.conv(se, w // 4, w, 1)], alpha=0.2, beta=0.5)
    x = b.op("Mul", [x, se])
    x = b.conv(x, w, w, 3)
    y = b.op("Div", [x, b.const(np.array(6.0, np.float32))])
    return b.model([batch, 3, size, size], [y], "div_hardsigmoid_block")


FAILURE_MODES = {
    "outlier_channel": outlier_channel,
    "concat_head": concat_head,
    "sigmoid_softmax_head": sigmoid_softmax_head,
    "div_hardsigmoid_block": div_hardsigmoid_block,
}
