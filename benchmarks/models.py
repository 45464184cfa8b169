"""Full-size benchmark models, as ONNX (onnx.helper) and as plain torch modules with the same
weights, for `qengine bench NAME` and benchmarks/run_all.py.

    resnet18      ResNet-18, 224x224, 1000 classes (tests/models.py's builder at full width)
    mobilenetv2   MobileNetV2 1.0, 224x224, 1000 classes (tests/models.py's builder)
    yolo          a YOLOv5/v8-style detector, 320x320, 80 classes: Conv+BN+SiLU, C2f blocks,
                  SPPF, FPN/PAN neck (nearest Resize x2 + Concat), three-scale head with
                  Reshape/Transpose/Sigmoid, boxes concatenated (N, 6300, 85)
    ocr           a PP-OCR/SVTR-style text recognizer on a 32x320 line: MobileNetV3-style
                  backbone (HardSwish, squeeze-excite, (2,1) strides), then two transformer
                  blocks (MatMul attention with 4 heads, LayerNorm, GELU MLP) over 80 steps,
                  softmax over 97 characters
    eltwise       an element-wise-heavy network, 112x112: a stride-2 stem, then 4 blocks of a
                  1x1 convolution and ten element-wise nodes written op by op (SiLU, a
                  per-channel affine, the residual Add, GELU with Erf); float (N, 32, 56, 56)
                  out. No torch module (its constants are not layers).

Weights are random (seeded) with He scaling, which is all a speed benchmark needs. The torch
modules (benchmarks/torch_models.py; all but eltwise) copy the ONNX weights, so `--compare torch` runs the very
same network in eager float; tests/tools/test_bench_models.py checks they agree.

Every ONNX model has one float32 input "input" of shape (N, 3, H, W) with a symbolic batch.
"""
from __future__ import annotations

import importlib.util
import math
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _test_models():
    """tests/models.py (its builders and Builder), imported under its own name so it cannot
    clash with this module (both are 'models.py')."""
    mod = sys.modules.get("qengine_test_models")
    if mod is None:
        spec = importlib.util.spec_from_file_location("qengine_test_models",
                                                      _ROOT / "tests" / "models.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["qengine_test_models"] = mod
        spec.loader.exec_module(mod)
    return mod


tm = _test_models()

__all__ = ["BENCHMARKS", "BenchmarkModel", "resnet18", "mobilenetv2", "yolo_detector",
           "ocr_recognizer", "eltwise_net", "torch_module", "OCR_BLOCKS", "count_gop"]


def resnet18(size=224, width=64, num_classes=1000, seed=0):
    return tm.resnet18(size=size, width=width, num_classes=num_classes, seed=seed)


def mobilenetv2(size=224, width_mult=1.0, num_classes=1000, seed=0):
    return tm.mobilenetv2(size=size, width_mult=width_mult, num_classes=num_classes, seed=seed)


# ---- YOLO-style detector ------------------------------------------------------------------------
class _Yolo:
    """The detector's layers on a tests/models.Builder (one method per block, in the order the
    torch module registers them)."""

    def __init__(self, b):
        self.b = b

    def cbs(self, x, cin, cout, k, s=1):
        """Conv + BatchNorm + SiLU (exported SiLU: Mul(x, Sigmoid(x)))."""
        b = self.b
        return b.silu(b.bn(b.conv(x, cin, cout, k, s, bias=False), cout))

    def c2f(self, x, cin, cout, n, shortcut):
        """YOLOv8's C2f: 1x1 conv to 2c, split, n bottlenecks chained on the second half (each
        output kept), concat all, 1x1 conv."""
        b, c = self.b, cout // 2
        y = self.cbs(x, cin, 2 * c, 1)
        parts = list(b.op("Split", [y, b.const(np.array([c, c], np.int64))], n_out=2, axis=1))
        cur = parts[-1]
        for _ in range(n):
            t = self.cbs(self.cbs(cur, c, c, 3), c, c, 3)
            cur = b.op("Add", [cur, t]) if shortcut else t
            parts.append(cur)
        return self.cbs(b.op("Concat", parts, axis=1), (2 + n) * c, cout, 1)

    def sppf(self, x, cin, cout):
        """Spatial pyramid pooling, fast: three chained 5x5 max pools, concatenated."""
        b, c = self.b, cin // 2
        y = self.cbs(x, cin, c, 1)
        pools = [y]
        for _ in range(3):
            pools.append(b.op("MaxPool", [pools[-1]], kernel_shape=[5, 5], strides=[1, 1],
                              pads=[2, 2, 2, 2]))
        return self.cbs(b.op("Concat", pools, axis=1), 4 * c, cout, 1)

    def up(self, x):
        b = self.b
        return b.op("Resize", [x, "", b.const(np.array([1, 1, 2, 2], np.float32))],
                    mode="nearest")

    def head(self, x, cin, hw, na, no):
        """(N, na*no, H, W) -> (N, na, H, W, no), sigmoid -> (N, na*H*W, no)."""
        b = self.b
        h = b.conv(x, cin, na * no, 1)
        h = b.op("Reshape", [h, b.const(np.array([-1, na, no, hw, hw], np.int64))])
        h = b.op("Sigmoid", [b.op("Transpose", [h], perm=[0, 1, 3, 4, 2])])
        return b.op("Reshape", [h, b.const(np.array([-1, na * hw * hw, no], np.int64))])


def yolo_detector(size=320, width=16, num_classes=80, num_anchors=3, seed=0):
    """A YOLOv8n-scale backbone and neck (width 16: channels 16..256) with a YOLOv5-style
    anchor head on strides 8, 16, 32."""
    b = tm.Builder(seed, 17)
    y, w = _Yolo(b), width
    x = y.cbs("input", 3, w, 3, 2)
    x = y.c2f(y.cbs(x, w, 2 * w, 3, 2), 2 * w, 2 * w, 1, True)
    p3 = y.c2f(y.cbs(x, 2 * w, 4 * w, 3, 2), 4 * w, 4 * w, 2, True)
    p4 = y.c2f(y.cbs(p3, 4 * w, 8 * w, 3, 2), 8 * w, 8 * w, 2, True)
    p5 = y.c2f(y.cbs(p4, 8 * w, 16 * w, 3, 2), 16 * w, 16 * w, 1, True)
    p5 = y.sppf(p5, 16 * w, 16 * w)
    h4 = y.c2f(b.op("Concat", [y.up(p5), p4], axis=1), 24 * w, 8 * w, 1, False)
    o3 = y.c2f(b.op("Concat", [y.up(h4), p3], axis=1), 12 * w, 4 * w, 1, False)
    o4 = y.c2f(b.op("Concat", [y.cbs(o3, 4 * w, 4 * w, 3, 2), h4], axis=1), 12 * w, 8 * w,
               1, False)
    o5 = y.c2f(b.op("Concat", [y.cbs(o4, 8 * w, 8 * w, 3, 2), p5], axis=1), 24 * w, 16 * w,
               1, False)
    no = 5 + num_classes
    heads = [y.head(o, c, size // s, num_anchors, no)
             for o, c, s in [(o3, 4 * w, 8), (o4, 8 * w, 16), (o5, 16 * w, 32)]]
    out = b.op("Concat", heads, axis=1)
    boxes = num_anchors * sum((size // s) ** 2 for s in (8, 16, 32))
    return b.model(["N", 3, size, size], [out], "yolo_detector",
                   out_shapes=[["N", boxes, no]])


# ---- OCR-style recognizer -----------------------------------------------------------------------
# (kernel, expanded channels, output channels, squeeze-excite, activation, stride (h, w))
OCR_BLOCKS = [(3, 32, 24, False, "relu", (2, 1)), (3, 72, 24, False, "relu", (1, 1)),
              (5, 96, 40, True, "hs", (2, 1)), (5, 240, 40, True, "hs", (1, 1)),
              (5, 120, 48, True, "hs", (1, 1)), (5, 144, 48, True, "hs", (1, 1)),
              (5, 288, 96, True, "hs", (2, 1)), (5, 576, 96, True, "hs", (1, 1))]


class _Ocr:
    def __init__(self, b):
        self.b = b

    def conv(self, x, cin, cout, k, stride=(1, 1), group=1, bias=False):
        """A Conv with (h, w) strides (Builder.conv is square-only)."""
        b = self.b
        w = b.rng.standard_normal((cout, cin // group, k, k)) * math.sqrt(2.0 / (cin // group
                                                                              * k * k))
        ins = [x, b.weight(w.astype(np.float32))]
        if bias:
            ins.append(b.weight((b.rng.standard_normal(cout) * 0.1).astype(np.float32), "b"))
        return b.op("Conv", ins, kernel_shape=[k, k], strides=list(stride),
                    pads=[k // 2] * 4, group=group)

    def act(self, x, kind):
        return self.b.op("Relu" if kind == "relu" else "HardSwish", [x])

    def block(self, x, cin, k, exp, cout, se, act, stride):
        """MobileNetV3 inverted residual: expand, depthwise, [squeeze-excite], project."""
        b = self.b
        y = self.act(b.bn(self.conv(x, cin, exp, 1), exp), act)
        y = self.act(b.bn(self.conv(y, exp, exp, k, stride, group=exp), exp), act)
        if se:
            s = b.op("GlobalAveragePool", [y])
            s = b.op("Relu", [self.conv(s, exp, exp // 4, 1, bias=True)])
            s = b.op("HardSigmoid", [self.conv(s, exp // 4, exp, 1, bias=True)],
                     alpha=1 / 6, beta=0.5)
            y = b.op("Mul", [y, s])
        y = b.bn(self.conv(y, exp, cout, 1), cout)
        return b.op("Add", [x, y]) if stride == (1, 1) and cin == cout else y

    def linear(self, x, cin, cout):
        b = self.b
        wm = b.rng.standard_normal((cin, cout)) * math.sqrt(1.0 / cin)
        y = b.op("MatMul", [x, b.weight(wm.astype(np.float32))])
        return b.op("Add", [y, b.weight((b.rng.standard_normal(cout) * 0.1)
                                        .astype(np.float32), "b")])

    def layernorm(self, x, d):
        b = self.b
        return b.op("LayerNormalization",
                    [x, b.weight(b.rng.uniform(0.5, 1.5, d).astype(np.float32)),
                     b.weight((b.rng.standard_normal(d) * 0.1).astype(np.float32))],
                    axis=-1, epsilon=1e-5)

    def gelu(self, x):
        """GELU as torch exports it below opset 20: x * 0.5 * (1 + erf(x / sqrt(2)))."""
        b = self.b
        e = b.op("Erf", [b.op("Div", [x, b.const(np.array(math.sqrt(2), np.float32))])])
        e = b.op("Add", [e, b.const(np.array(1.0, np.float32))])
        return b.op("Mul", [b.op("Mul", [x, e]), b.const(np.array(0.5, np.float32))])

    def encoder(self, x, t, d, heads):
        """Pre-norm transformer block: multi-head self-attention, then a GELU MLP."""
        b, hd = self.b, d // heads
        y = self.layernorm(x, d)

        def split_heads(z, perm):        # (N, T, D) -> (N, h, T, hd) or (N, h, hd, T)
            z = b.op("Reshape", [z, b.const(np.array([-1, t, heads, hd], np.int64))])
            return b.op("Transpose", [z], perm=perm)
        q = split_heads(self.linear(y, d, d), [0, 2, 1, 3])
        k = split_heads(self.linear(y, d, d), [0, 2, 3, 1])
        v = split_heads(self.linear(y, d, d), [0, 2, 1, 3])
        att = b.op("Mul", [b.op("MatMul", [q, k]), b.const(np.array(1 / math.sqrt(hd),
                                                                     np.float32))])
        o = b.op("MatMul", [b.op("Softmax", [att], axis=-1), v])
        o = b.op("Reshape", [b.op("Transpose", [o], perm=[0, 2, 1, 3]),
                             b.const(np.array([-1, t, d], np.int64))])
        x = b.op("Add", [x, self.linear(o, d, d)])
        y = self.linear(self.gelu(self.linear(self.layernorm(x, d), d, 2 * d)), 2 * d, d)
        return b.op("Add", [x, y])


def ocr_recognizer(height=32, line_width=320, stem=16, last=384, dim=128, heads=4, depth=2,
                   num_classes=97, seed=0):
    """Backbone (stride 2, then (2, 1) strides: H/32 -> 1 after a final 2x2 max pool, W/4
    steps), a linear neck to `dim`, `depth` transformer blocks, per-step softmax."""
    b = tm.Builder(seed, 17)
    o = _Ocr(b)
    x = b.op("HardSwish", [b.bn(o.conv("input", 3, stem, 3, (2, 2)), stem)])
    cin = stem
    for k, exp, cout, se, act, stride in OCR_BLOCKS:
        x = o.block(x, cin, k, exp, cout, se, act, stride)
        cin = cout
    x = b.op("HardSwish", [b.bn(o.conv(x, cin, last, 1), last)])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])       # (N, last, 1, W/4)
    t = line_width // 4
    x = b.op("Transpose", [b.op("Reshape", [x, b.const(np.array([-1, last, t], np.int64))])],
             perm=[0, 2, 1])                                            # (N, T, last)
    x = o.linear(x, last, dim)
    for _ in range(depth):
        x = o.encoder(x, t, dim, heads)
    x = o.linear(o.layernorm(x, dim), dim, num_classes)
    y = b.op("Softmax", [x], axis=-1)
    return b.model(["N", 3, height, line_width], [y], "ocr_recognizer",
                   out_shapes=[["N", t, num_classes]])


# ---- element-wise-heavy network -----------------------------------------------------------------
def eltwise_net(size=112, width=32, blocks=4, seed=0):
    """A network whose nodes are mostly element-wise, as exporters write activations and
    normalizations op by op: a 3x3 stride-2 stem, then `blocks` blocks of a 1x1 convolution
    followed by SiLU (Sigmoid, Mul), a per-channel affine (Mul, Add: an unfolded normalization
    or a layer scale), the residual Add and GELU with Erf (Div, Erf, Add, Mul, Mul) -- ten
    element-wise nodes per convolution. The output is the last block's float feature map."""
    b = tm.Builder(seed, 17)
    x = b.silu(b.conv("input", 3, width, 3, stride=2))
    r = b.rng
    for _ in range(blocks):
        y = b.silu(b.conv(x, width, width, 1))
        y = b.op("Mul", [y, b.const(r.uniform(0.5, 1.5, (1, width, 1, 1)).astype(np.float32))])
        y = b.op("Add", [y, b.const((r.standard_normal((1, width, 1, 1)) * 0.1)
                                    .astype(np.float32))])
        y = b.op("Add", [y, x])
        e = b.op("Erf", [b.op("Div", [y, b.const(np.array(math.sqrt(2), np.float32))])])
        e = b.op("Add", [e, b.const(np.array(1.0, np.float32))])
        x = b.op("Mul", [b.op("Mul", [y, e]), b.const(np.array(0.5, np.float32))])
    side = size // 2
    return b.model(["N", 3, size, size], [x], "eltwise_net", out_shapes=[["N", width, side, side]])


# ---- work -------------------------------------------------------------------------------------
def count_gop(model, batch: int = 1) -> float:
    """The int8 work of a model in GOP: 2 x multiply-accumulates of every Conv, ConvTranspose,
    Gemm and MatMul, from ONNX's own shape inference (independent of qengine)."""
    import onnx
    m = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else batch
                          for d in v.type.tensor_type.shape.dim]
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    macs = 0
    for n in m.graph.node:
        out = int(np.prod(shapes[n.output[0]]))
        if n.op_type == "Conv":
            macs += out * int(np.prod(inits[n.input[1]][1:]))
        elif n.op_type == "ConvTranspose":       # every input pixel meets every weight once
            w = inits[n.input[1]]
            macs += int(np.prod(shapes[n.input[0]])) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes[n.input[0]] if n.input[0] in shapes else inits[n.input[0]]
            k = a[-1] if not (n.op_type == "Gemm" and any(
                at.name == "transA" and at.i for at in n.attribute)) else a[0]
            macs += out * k
    return 2 * macs / 1e9


# ---- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkModel:
    name: str
    description: str
    onnx: Callable                      # () -> onnx.ModelProto (float)
    torch: Optional[Callable] = None    # () -> torch.nn.Module with the same weights


def torch_module(kind: str, **kw):
    """The torch module of benchmark `kind` with the weights of the ONNX model the same
    builder arguments give (needs torch; imported lazily)."""
    from torch_models import load_onnx_weights, make_module
    build = {"resnet18": resnet18, "mobilenetv2": mobilenetv2, "yolo": yolo_detector,
             "ocr": ocr_recognizer}[kind]
    extra = {"blocks": OCR_BLOCKS} if kind == "ocr" else {}
    return load_onnx_weights(make_module(kind, **kw, **extra), build(**kw))


def _torch(kind: str):
    return lambda: torch_module(kind)


if str(pathlib.Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

BENCHMARKS = {m.name: m for m in [
    BenchmarkModel("resnet18", "ResNet-18, 224x224, 1000 classes", resnet18,
                   _torch("resnet18")),
    BenchmarkModel("mobilenetv2", "MobileNetV2 1.0, 224x224, 1000 classes", mobilenetv2,
                   _torch("mobilenetv2")),
    BenchmarkModel("yolo", "YOLO-style detector (C2f, SPPF, PAN, 3-scale head), 320x320",
                   yolo_detector, _torch("yolo")),
    BenchmarkModel("ocr", "PP-OCR/SVTR-style recognizer (MobileNetV3 + 2 transformer "
                   "blocks), 32x320", ocr_recognizer, _torch("ocr")),
    BenchmarkModel("eltwise", "element-wise-heavy net: 4 blocks of a 1x1 conv and 10 "
                   "element-wise nodes (SiLU, per-channel affine, residual, GELU with Erf), "
                   "112x112", eltwise_net),
]}
