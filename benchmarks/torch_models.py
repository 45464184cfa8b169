"""The benchmark models (benchmarks/models.py) as plain torch modules, for `--compare torch`.

Each module registers its layers in the order the ONNX builder emits them, so
load_onnx_weights() can pair the two layer lists one to one (it checks kinds and shapes) and
copy the ONNX weights: torch then runs the same network in eager float.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["make_module", "load_onnx_weights", "ResNet18", "MobileNetV2", "YoloDetector",
           "OcrRecognizer"]


def _divisible(v, d=8):       # as tests/models.py's MobileNetV2 (torchvision's rounding)
    return max(d, int(v + d / 2) // d * d)


# ---- ResNet-18 ---------------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, width=64, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage, mult in enumerate([1, 2, 4, 8]):
            for block in range(2):
                blocks.append(_BasicBlock(cin, width * mult,
                                          2 if stage > 0 and block == 0 else 1))
                cin = width * mult
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---- MobileNetV2 -------------------------------------------------------------------------------
class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = []
        if t != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult=1.0, num_classes=1000):
        super().__init__()
        cin = _divisible(32 * width_mult)
        layers = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6()]
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            cout = _divisible(c * width_mult)
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _divisible(1280 * width_mult)
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.view(x.size(0), -1))


# ---- YOLO-style detector -----------------------------------------------------------------------
class _CBS(nn.Sequential):
    def __init__(self, cin, cout, k, s=1):
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


class _Bottleneck(nn.Module):
    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1, self.cv2, self.add = _CBS(c, c, 3), _CBS(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class _C2f(nn.Module):
    def __init__(self, cin, cout, n, shortcut):
        super().__init__()
        self.c = cout // 2
        self.cv1 = _CBS(cin, 2 * self.c, 1)
        self.m = nn.ModuleList(_Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = _CBS((2 + n) * self.c, cout, 1)

    def forward(self, x):
        parts = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            parts.append(m(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class _SPPF(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cv1, self.cv2 = _CBS(cin, cin // 2, 1), _CBS(cin // 2 * 4, cout, 1)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(F.max_pool2d(y[-1], 5, 1, 2))
        return self.cv2(torch.cat(y, 1))


class YoloDetector(nn.Module):
    def __init__(self, width=16, num_classes=80, num_anchors=3):
        super().__init__()
        w = width
        self.na, self.no = num_anchors, 5 + num_classes
        self.backbone = nn.ModuleList([
            _CBS(3, w, 3, 2), _CBS(w, 2 * w, 3, 2), _C2f(2 * w, 2 * w, 1, True),
            _CBS(2 * w, 4 * w, 3, 2), _C2f(4 * w, 4 * w, 2, True),
            _CBS(4 * w, 8 * w, 3, 2), _C2f(8 * w, 8 * w, 2, True),
            _CBS(8 * w, 16 * w, 3, 2), _C2f(16 * w, 16 * w, 1, True), _SPPF(16 * w, 16 * w)])
        self.h4 = _C2f(24 * w, 8 * w, 1, False)
        self.o3 = _C2f(12 * w, 4 * w, 1, False)
        self.down3 = _CBS(4 * w, 4 * w, 3, 2)
        self.o4 = _C2f(12 * w, 8 * w, 1, False)
        self.down4 = _CBS(8 * w, 8 * w, 3, 2)
        self.o5 = _C2f(24 * w, 16 * w, 1, False)
        self.heads = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1)
                                   for c in (4 * w, 8 * w, 16 * w))

    def forward(self, x):
        feats = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in (4, 6):
                feats.append(x)
        p3, p4, p5 = feats[0], feats[1], x
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")   # noqa: E731
        h4 = self.h4(torch.cat([up(p5), p4], 1))
        o3 = self.o3(torch.cat([up(h4), p3], 1))
        o4 = self.o4(torch.cat([self.down3(o3), h4], 1))
        o5 = self.o5(torch.cat([self.down4(o4), p5], 1))
        outs = []
        for head, o in zip(self.heads, (o3, o4, o5)):
            h = head(o)
            n, _, hh, ww = h.shape
            h = h.view(n, self.na, self.no, hh, ww).permute(0, 1, 3, 4, 2).sigmoid()
            outs.append(h.reshape(n, -1, self.no))
        return torch.cat(outs, 1)


# ---- OCR-style recognizer ----------------------------------------------------------------------
class _SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = F.relu(self.conv1(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.conv2(s))


class _MbBlock(nn.Module):
    def __init__(self, cin, k, exp, cout, se, act, stride):
        super().__init__()
        self.act = F.relu if act == "relu" else F.hardswish
        self.expand, self.bn1 = nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp)
        self.dw = nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False)
        self.bn2 = nn.BatchNorm2d(exp)
        self.se = _SE(exp) if se else None
        self.project, self.bn3 = nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.residual = tuple(stride) == (1, 1) and cin == cout

    def forward(self, x):
        y = self.act(self.bn2(self.dw(self.act(self.bn1(self.expand(x))))))
        if self.se is not None:
            y = self.se(y)
        y = self.bn3(self.project(y))
        return x + y if self.residual else y


class _Encoder(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        n, t, d = x.shape
        hd = d // self.heads
        y = self.ln1(x)
        q = self.q(y).view(n, t, self.heads, hd).transpose(1, 2)
        k = self.k(y).view(n, t, self.heads, hd).permute(0, 2, 3, 1)
        v = self.v(y).view(n, t, self.heads, hd).transpose(1, 2)
        att = torch.softmax(q @ k * (1 / math.sqrt(hd)), -1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class OcrRecognizer(nn.Module):
    def __init__(self, blocks, stem=16, last=384, dim=128, heads=4, depth=2, num_classes=97):
        """blocks: benchmarks/models.py's OCR_BLOCKS (the one table both builders read)."""
        super().__init__()
        self.stem_conv = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        layers, cin = [], stem
        for k, exp, cout, se, act, stride in blocks:
            layers.append(_MbBlock(cin, k, exp, cout, se, act, stride))
            cin = cout
        self.blocks = nn.Sequential(*layers)
        self.last_conv, self.last_bn = nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last)
        self.neck = nn.Linear(last, dim)
        self.encoders = nn.Sequential(*(_Encoder(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = F.hardswish(self.stem_bn(self.stem_conv(x)))
        x = F.hardswish(self.last_bn(self.last_conv(self.blocks(x))))
        x = F.max_pool2d(x, 2, 2).flatten(2).transpose(1, 2)      # (N, T, last)
        x = self.encoders(self.neck(x))
        return torch.softmax(self.head(self.norm(x)), -1)


_MODULES = {"resnet18": ResNet18, "mobilenetv2": MobileNetV2, "yolo": YoloDetector,
            "ocr": OcrRecognizer}
_ARCH_KEYS = {"size", "height", "line_width", "seed"}    # builder-only arguments


def make_module(kind: str, **kw) -> nn.Module:
    """The torch module of a benchmark model; kw: the builder's architecture arguments."""
    return _MODULES[kind](**{k: v for k, v in kw.items() if k not in _ARCH_KEYS})


# ---- weights from ONNX -------------------------------------------------------------------------
def _onnx_layers(model) -> list:
    """(kind, {torch parameter name: array}) of every weighted ONNX node, in graph order."""
    from onnx import numpy_helper
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in model.graph.node:
        ins = list(n.input)
        if n.op_type in ("Conv", "ConvTranspose"):
            p = {"weight": init[ins[1]]}
            if len(ins) > 2 and ins[2]:
                p["bias"] = init[ins[2]]
            out.append(("conv", p))
        elif n.op_type == "BatchNormalization":
            out.append(("bn", {"weight": init[ins[1]], "bias": init[ins[2]],
                               "running_mean": init[ins[3]], "running_var": init[ins[4]]}))
        elif n.op_type == "Gemm" and ins[1] in init:
            out.append(("linear", {"weight": init[ins[1]], "bias": init[ins[2]]}))
        elif n.op_type == "MatMul" and ins[1] in init:
            adds = [c for c in consumers.get(n.output[0], []) if c.op_type == "Add"]
            bias = next(init[i] for i in adds[0].input if i in init)
            out.append(("linear", {"weight": init[ins[1]].T, "bias": bias}))
        elif n.op_type == "LayerNormalization":
            out.append(("ln", {"weight": init[ins[1]], "bias": init[ins[2]]}))
    return out


_KIND = {nn.Conv2d: "conv", nn.ConvTranspose2d: "conv", nn.BatchNorm2d: "bn",
         nn.Linear: "linear", nn.LayerNorm: "ln"}


def load_onnx_weights(module: nn.Module, model) -> nn.Module:
    """Copy the ONNX model's weights into `module` (layers paired in order; kinds and shapes
    must match, else ValueError naming the first mismatch). Returns the module in eval mode."""
    mods = [m for m in module.modules() if type(m) in _KIND]
    layers = _onnx_layers(model)
    if len(mods) != len(layers):
        raise ValueError(f"torch module has {len(mods)} weighted layers, ONNX has {len(layers)}")
    with torch.no_grad():
        for i, (m, (kind, params)) in enumerate(zip(mods, layers)):
            if _KIND[type(m)] != kind:
                raise ValueError(f"layer {i}: torch {type(m).__name__} vs ONNX {kind}")
            for name, arr in params.items():
                t = getattr(m, name)
                if tuple(t.shape) != arr.shape:
                    raise ValueError(f"layer {i} ({type(m).__name__}.{name}): torch shape "
                                     f"{tuple(t.shape)} vs ONNX {arr.shape}")
                t.copy_(torch.from_numpy(np.array(arr, dtype=np.float32)))
    return module.eval()
