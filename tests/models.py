"""Deterministic ONNX model builders shaped like the networks users bring, for tests and
benchmarks across qengine (onnx.helper only; no torch).

Every builder returns an ``onnx.ModelProto`` with one float32 input ``"input"`` of shape
(batch, 3, H, W) where batch is a symbol ("N") by default, weights drawn from
``numpy.random.default_rng(seed)`` with He-style scaling (activations stay O(1)), and
small spatial sizes by default so tests stay fast; pass ``size=224`` (and the full widths)
for benchmark-sized networks:

    resnet18(size=224, width=64, num_classes=1000)
    mobilenetv2(size=224, width_mult=1.0, num_classes=1000)

Builders:
    resnet18               ResNet-18: conv/BN/ReLU, max pool, 8 basic blocks, GAP, Gemm
    mobilenetv2            inverted residuals, depthwise convs, Clip(0, 6), the PyTorch
                           ``x.view(x.size(0), -1)`` Shape->Gather->Unsqueeze->Concat->Reshape
    yolo_block             Conv+SiLU, Split/Concat (C3), SPPF max pools, Resize x2 + Concat,
                           a detection head (Reshape/Transpose/Sigmoid, Softmax over anchors)
    ocr_block              HardSwish, squeeze-excite (GAP, HardSigmoid), ConvTranspose
                           upsampling, a MatMul self-attention block with LayerNormalization
    opset11_constant_weights  an opset-11 export: weights in Constant nodes, Clip min/max
                           inputs, axes attributes, Pad/Resize-11, Identity, Dropout, shape chain
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["resnet18", "mobilenetv2", "yolo_block", "ocr_block", "opset11_constant_weights",
           "ALL_BUILDERS", "Builder", "random_input", "make_model", "vi"]


def vi(name, shape, elem=TensorProto.FLOAT):
    """A tensor ValueInfo (shape None: unknown)."""
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    """A hand-made model from nodes, ValueInfos and initializer TensorProtos."""
    g = helper.make_graph(nodes, "model", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def random_input(model: onnx.ModelProto, batch: int = 1, seed: int = 0) -> dict:
    """Feeds for ``model``: standard normal float32, symbolic dims set to ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else batch
                 for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


class Builder:
    """Accumulates nodes and weights; each layer method returns its output name."""

    def __init__(self, seed: int = 0, opset: int = 17, weights_as_constants: bool = False):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self.const_nodes = weights_as_constants
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def weight(self, arr: np.ndarray, base: str = "w") -> str:
        name = self.name(base)
        arr = np.asarray(arr)
        if self.const_nodes:
            self.nodes.append(helper.make_node("Constant", [], [name],
                                               value=numpy_helper.from_array(arr, name)))
        else:
            self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    # -- layers ------------------------------------------------------------------------------
    def conv(self, x, cin, cout, k, stride=1, pad=None, group=1, bias=True, dilation=1):
        pad = (k // 2) * dilation if pad is None else pad
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * math.sqrt(2.0 / fan_in)
        ins = [x, self.weight(w.astype(np.float32))]
        if bias:
            ins.append(self.weight((self.rng.standard_normal(cout) * 0.1).astype(np.float32),
                                   "b"))
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4, group=group, dilations=[dilation, dilation])

    def bn(self, x, c):
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.standard_normal(c) * 0.1,
                  r.standard_normal(c) * 0.1, r.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization",
                       [x] + [self.weight(p.astype(np.float32), "bn") for p in params],
                       epsilon=1e-5)

    def relu6(self, x):
        return self.op("Clip", [x, self.weight(np.array(0.0, np.float32), "min"),
                                self.weight(np.array(6.0, np.float32), "max")])

    def silu(self, x):
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def gemm(self, x, cin, cout):
        w = self.rng.standard_normal((cout, cin)) * math.sqrt(1.0 / cin)
        return self.op("Gemm", [x, self.weight(w.astype(np.float32)),
                                self.weight((self.rng.standard_normal(cout) * 0.1)
                                            .astype(np.float32), "b")], transB=1)

    def flatten_like_pytorch(self, x):
        """``x.view(x.size(0), -1)`` as the PyTorch exporter writes it."""
        shape = self.op("Shape", [x])
        n = self.op("Gather", [shape, self.weight(np.array(0, np.int64), "idx")], axis=0)
        n = self.unsqueeze(n, [0])
        target = self.op("Concat", [n, self.weight(np.array([-1], np.int64), "m1")], axis=0)
        return self.op("Reshape", [x, target])

    def unsqueeze(self, x, axes):
        if self.opset < 13:
            return self.op("Unsqueeze", [x], axes=axes)
        return self.op("Unsqueeze", [x, self.weight(np.array(axes, np.int64), "axes")])

    def const(self, arr) -> str:
        return self.weight(np.asarray(arr), "c")

    def model(self, x_shape, outputs, name: str, out_shapes=None) -> onnx.ModelProto:
        """The model; output shapes come from ``out_shapes`` or ONNX's shape inference."""
        out_shapes = out_shapes or [None] * len(outputs)
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, s)
             for o, s in zip(outputs, out_shapes)],
            self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="qengine-tests")
        m.ir_version = min(m.ir_version, 8)     # readable by older onnxruntime too
        # declare the output shapes (symbolic batch included) as exporters do
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
        for out, inf in zip(m.graph.output, inferred.graph.output):
            if not out.type.tensor_type.HasField("shape"):
                out.CopyFrom(inf)
        return m


def _hw(size):
    return (size, size) if isinstance(size, int) else tuple(size)


# -- ResNet-18 ----------------------------------------------------------------------------------
def resnet18(size=32, batch="N", width=16, num_classes=10, opset=17, seed=0) -> onnx.ModelProto:
    b = Builder(seed, opset)
    x = b.op("Relu", [b.bn(b.conv("input", 3, width, 7, stride=2, bias=False), width)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, mult in enumerate([1, 2, 4, 8]):
        cout = width * mult
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = b.op("Relu", [b.bn(b.conv(x, cin, cout, 3, stride, bias=False), cout)])
            y = b.bn(b.conv(y, cout, cout, 3, bias=False), cout)
            short = x if stride == 1 and cin == cout else \
                b.bn(b.conv(x, cin, cout, 1, stride, bias=False), cout)
            x = b.op("Relu", [b.op("Add", [y, short])])
            cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    y = b.gemm(x, cin, num_classes)
    return b.model([batch, 3, *_hw(size)], [y], "resnet18")


# -- MobileNetV2 --------------------------------------------------------------------------------
def _divisible(v, d=8):
    return max(d, int(v + d / 2) // d * d)


def mobilenetv2(size=32, batch="N", width_mult=0.25, num_classes=10, opset=17, seed=0):
    b = Builder(seed, opset)
    cin = _divisible(32 * width_mult)
    x = b.relu6(b.bn(b.conv("input", 3, cin, 3, stride=2, bias=False), cin))
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        cout = _divisible(c * width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = b.relu6(b.bn(b.conv(y, cin, hidden, 1, bias=False), hidden))
            y = b.relu6(b.bn(b.conv(y, hidden, hidden, 3, stride, group=hidden, bias=False),
                             hidden))
            y = b.bn(b.conv(y, hidden, cout, 1, bias=False), cout)
            x = b.op("Add", [x, y]) if stride == 1 and cin == cout else y
            cin = cout
    last = _divisible(1280 * width_mult)     # torchvision keeps 1280 when width_mult < 1
    x = b.relu6(b.bn(b.conv(x, cin, last, 1, bias=False), last))
    x = b.flatten_like_pytorch(b.op("GlobalAveragePool", [x]))
    y = b.gemm(x, last, num_classes)
    return b.model([batch, 3, *_hw(size)], [y], "mobilenetv2")


# -- YOLO-style --------------------------------------------------------------------------------
def yolo_block(size=32, batch="N", width=16, num_anchors=3, num_classes=4, opset=17, seed=0):
    b = Builder(seed, opset)
    w = width

    def cbs(x, cin, cout, k, s=1):       # Conv + BN + SiLU
        return b.silu(b.bn(b.conv(x, cin, cout, k, s, bias=False), cout))

    p1 = cbs("input", 3, w, 3, 2)                 # /2
    p2 = cbs(p1, w, 2 * w, 3, 2)                  # /4
    # C3: split channels, a bottleneck on one half, concat, fuse
    a, c = b.op("Split", [p2, b.const(np.array([w, w], np.int64))], n_out=2, axis=1)
    a = b.op("Add", [a, cbs(cbs(a, w, w, 1), w, w, 3)])
    p2 = cbs(b.op("Concat", [a, c], axis=1), 2 * w, 2 * w, 1)
    p3 = cbs(p2, 2 * w, 4 * w, 3, 2)              # /8
    # SPPF: three chained 5x5 max pools, concatenated
    s0 = cbs(p3, 4 * w, 2 * w, 1)
    pools = [s0]
    for _ in range(3):
        pools.append(b.op("MaxPool", [pools[-1]], kernel_shape=[5, 5], pads=[2, 2, 2, 2]))
    p3 = cbs(b.op("Concat", pools, axis=1), 8 * w, 4 * w, 1)
    # FPN: upsample x2 (nearest) and merge with the /4 feature
    up = b.op("Resize", [cbs(p3, 4 * w, 2 * w, 1), "", b.const(np.array([1, 1, 2, 2],
                                                                         np.float32))],
              mode="nearest")
    f = cbs(b.op("Concat", [up, p2], axis=1), 4 * w, 2 * w, 3)
    # head: (N, na*(5+nc), H, W) -> (N, na, H, W, 5+nc) -> sigmoid -> (N, na*H*W, 5+nc)
    no = 5 + num_classes
    h = b.conv(f, 2 * w, num_anchors * no, 1)
    hw = _hw(size)
    H, W = hw[0] // 4, hw[1] // 4
    shape = b.op("Shape", [h])
    n = b.unsqueeze(b.op("Gather", [shape, b.const(np.array(0, np.int64))], axis=0), [0])
    t1 = b.op("Concat", [n, b.const(np.array([num_anchors, no, H, W], np.int64))], axis=0)
    h = b.op("Transpose", [b.op("Reshape", [h, t1])], perm=[0, 1, 3, 4, 2])
    t2 = b.op("Concat", [n, b.const(np.array([-1, no], np.int64))], axis=0)
    boxes = b.op("Reshape", [b.op("Sigmoid", [h]), t2])
    scores = b.op("Softmax", [b.op("Reshape", [h, t2])], axis=1)     # over all anchors
    return b.model([batch, 3, *hw], [boxes, scores], "yolo_block")


# -- OCR-style ---------------------------------------------------------------------------------
def ocr_block(size=(16, 32), batch="N", width=16, dim=32, num_classes=12, opset=17, seed=0):
    b = Builder(seed, opset)
    w = width

    def hs(x):
        return b.op("HardSwish", [x])

    x = hs(b.bn(b.conv("input", 3, w, 3, 2, bias=False), w))                 # /2
    x = hs(b.bn(b.conv(x, w, w, 3, 1, group=w, bias=False), w))             # depthwise
    se = b.op("GlobalAveragePool", [x])
    se = b.op("Relu", [b.conv(se, w, w // 4, 1)])
    se = b.op("HardSigmoid", [b.conv(se, w // 4, w, 1)], alpha=1 / 6, beta=0.5)
    x = b.op("Mul", [x, se])
    x = hs(b.bn(b.conv(x, w, 2 * w, 3, 2, bias=False), 2 * w))              # /4
    wt = b.rng.standard_normal((2 * w, w, 2, 2)) * math.sqrt(1.0 / (2 * w))
    x = b.op("ConvTranspose", [x, b.weight(wt.astype(np.float32)),
                               b.weight(np.zeros(w, np.float32), "b")],
             kernel_shape=[2, 2], strides=[2, 2])                          # /2 again
    x = b.op("Relu", [x])
    x = b.conv(x, w, dim, 3, 2)                                            # (N, dim, H/4, W/4)
    x = b.op("ReduceMean", [x], axes=[2], keepdims=0) if opset < 18 else \
        b.op("ReduceMean", [x, b.const(np.array([2], np.int64))], keepdims=0)
    seq = b.op("Transpose", [x], perm=[0, 2, 1])                           # (N, T, dim)

    def proj(t, cin, cout):
        wm = b.rng.standard_normal((cin, cout)) * math.sqrt(1.0 / cin)
        y = b.op("MatMul", [t, b.weight(wm.astype(np.float32))])
        return b.op("Add", [y, b.weight((b.rng.standard_normal(cout) * 0.1).astype(np.float32),
                                        "b")])

    q, k, v = (proj(seq, dim, dim) for _ in range(3))
    att = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 2, 1])])
    att = b.op("Softmax", [b.op("Mul", [att, b.const(np.array(1 / math.sqrt(dim),
                                                              np.float32))])], axis=-1)
    y = b.op("Add", [seq, proj(b.op("MatMul", [att, v]), dim, dim)])
    y = b.op("LayerNormalization", [y, b.weight(b.rng.uniform(0.5, 1.5, dim).astype(np.float32)),
                                    b.weight((b.rng.standard_normal(dim) * 0.1)
                                             .astype(np.float32))], axis=-1, epsilon=1e-5)
    logits = b.op("LogSoftmax", [proj(y, dim, num_classes)], axis=-1)
    return b.model([batch, 3, *_hw(size)], [logits], "ocr_block")


# -- an opset-11 export with Constant-node weights ---------------------------------------------
def opset11_constant_weights(size=16, batch="N", width=8, num_classes=5, seed=0):
    b = Builder(seed, 11, weights_as_constants=True)
    w = width
    x = b.op("Identity", ["input"])
    x = b.op("Pad", [x, b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="reflect")
    x = b.relu6(b.bn(b.conv(x, 3, w, 3, pad=0), w))
    x = b.op("Dropout", [x], ratio=0.1)
    a, c = b.op("Split", [x], n_out=2, axis=1, split=[w // 2, w // 2])
    a = b.op("Relu", [b.conv(a, w // 2, w // 2, 3)])
    x = b.op("Concat", [a, c], axis=1)
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    # PyTorch 1.x nearest upsampling at opset 11: Resize with roi, scales, asymmetric/floor
    x = b.op("Resize", [x, b.const(np.array([], np.float32)),
                        b.const(np.array([1, 1, 2, 2], np.float32))],
             mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    x = b.op("Resize", [x, b.const(np.array([], np.float32)),
                        b.const(np.array([1, 1, 0.5, 0.5], np.float32))],
             mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
    m = b.op("ReduceMean", [x], axes=[2, 3], keepdims=1)
    x = b.op("Sub", [x, m])
    s = b.op("Unsqueeze", [b.op("Squeeze", [m], axes=[2, 3])], axes=[2, 3])
    x = b.op("Add", [x, s])
    x = b.op("Identity", [b.flatten_like_pytorch(x)])
    hw = _hw(size)
    feat = w * (-(-hw[0] // 2)) * (-(-hw[1] // 2))
    x = b.op("Dropout", [b.gemm(x, feat, num_classes)], ratio=0.5)
    y = b.op("LogSoftmax", [x], axis=1)
    return b.model([batch, 3, *hw], [y], "opset11_constant_weights",
                   out_shapes=[[batch, num_classes]])


ALL_BUILDERS = {
    "resnet18": resnet18,
    "mobilenetv2": mobilenetv2,
    "yolo_block": yolo_block,
    "ocr_block": ocr_block,
    "opset11_constant_weights": opset11_constant_weights,
}
