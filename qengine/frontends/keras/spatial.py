"""Spatial Keras layers (convolutions, pooling, padding, cropping, upsampling) -> ONNX.

Keras is channels-last (NHWC); ONNX's spatial ops are channels-first. Each layer is written
as Transpose(to channels-first) -> op -> Transpose(back), and the transpose pass
(qengine/passes/transpose.py) then cancels the pairs between consecutive layers. Layers
with ``data_format="channels_first"`` need no transposes. Spatial rank 1, 2 and 3 share the
code: the rank is the digit in the class name (Conv1D, MaxPooling3D...).

'same' padding follows TensorFlow: total = max((ceil(n/s) - 1) * s + k_eff - n, 0) with the odd
unit at the end, which is ONNX's SAME_UPPER; pads are written out explicitly when the spatial
size is known (or the stride is 1), else auto_pad=SAME_UPPER is left for run time.
"""
from __future__ import annotations

import numpy as np

from .activations import apply_activation
from .call import LayerCall, converter

INT64_MAX = np.iinfo(np.int64).max


def _rank_of(call: LayerCall) -> int:
    digits = [ch for ch in call.class_name if ch.isdigit()]
    return int(digits[0]) if digits else 2


def _channels_first(call: LayerCall) -> bool:
    fmt = call.cfg("data_format", "channels_last") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        raise call.unsupported(f"data_format={fmt!r}")
    return fmt == "channels_first"


class _Layout:
    """Moves a tensor between the layer's layout and channels-first for one call."""

    def __init__(self, call: LayerCall, r: int, has_format: bool = True):
        self.call, self.r = call, r
        self.cf = _channels_first(call) if has_format else False
        x = call.one_input()
        if call.rank(x) != r + 2:
            raise call.error(f"expects a rank-{r + 2} input, got shape "
                             f"{list(call.shape(x))}")
        self.x = x

    @property
    def channels(self) -> int:
        return self.call.dim(self.x, 1 if self.cf else -1, "the channel count")

    def to_cf(self) -> str:
        if self.cf:
            return self.x
        return self.call.transpose(self.x, [0, self.r + 1, *range(1, self.r + 1)],
                                   "to_channels_first")

    def back(self, y: str) -> str:
        if self.cf:
            return y
        return self.call.transpose(y, [0, *range(2, self.r + 2), 1], "to_channels_last")


def _pads(call: LayerCall, x_cf: str, r: int, k, s, d, padding: str) -> dict:
    """ONNX pads/auto_pad attributes for Keras 'valid' / 'same' / 'causal'."""
    if padding == "valid":
        return {"pads": [0] * (2 * r)}
    eff = [(k[i] - 1) * d[i] + 1 for i in range(r)]
    if padding == "causal":     # Conv1D: everything before, nothing after
        return {"pads": [eff[0] - 1, 0]}
    shape = call.shape(x_cf)
    begin, end = [], []
    for i in range(r):
        n = shape[2 + i]
        if s[i] == 1:
            total = eff[i] - 1
        elif isinstance(n, int):
            total = max((-(-n // s[i]) - 1) * s[i] + eff[i] - n, 0)
        else:
            return {"auto_pad": "SAME_UPPER"}
        begin.append(total // 2)
        end.append(total - total // 2)
    return {"pads": begin + end}


def _padding(call: LayerCall, causal: bool = False) -> str:
    choices = ("valid", "same", "causal") if causal else ("valid", "same")
    return call.cfg_choice("padding", choices, "valid")


def _geometry(call: LayerCall, r: int):
    k = call.cfg_tuple("kernel_size", r)
    s = call.cfg_tuple("strides", r, 1)
    d = call.cfg_tuple("dilation_rate", r, 1)
    return k, s, d


def _kernel_to_onnx(kernel: np.ndarray, r: int) -> np.ndarray:
    """Keras (*k, in, out) -> ONNX (out, in, *k) for Conv; for ConvTranspose Keras' (*k, out,
    in) -> ONNX (in, out, *k): the same permutation."""
    return np.ascontiguousarray(kernel.transpose(r + 1, r, *range(r)))


def _depthwise_to_onnx(kernel: np.ndarray, r: int) -> np.ndarray:
    """Keras depthwise (*k, C, dm) -> ONNX (C*dm, 1, *k) for group=C: output channel
    c * dm + m reads input channel c in both."""
    k, (C, dm) = kernel.shape[:r], kernel.shape[r:]
    return np.ascontiguousarray(kernel.reshape(*k, C * dm).transpose(r, *range(r))[:, None])


@converter("Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D")
def conv(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    C, filters = lay.channels, call.cfg_int("filters")
    k, s, d = _geometry(call, r)
    groups = call.cfg_int("groups", 1)
    if C % groups or filters % groups:
        raise call.error(f"{C} input channels / {filters} filters are not divisible by "
                         f"groups={groups}")
    bias = bool(call.cfg("use_bias", True))
    ws = call.weights([("kernel", (*k, C // groups, filters))] +
                      ([("bias", (filters,))] if bias else []))
    ins = [lay.to_cf(), call.const("kernel", lambda: _kernel_to_onnx(ws[0], r))]
    if bias:
        ins.append(call.const("bias", lambda: ws[1]))
    y = call.op("Conv", ins, "Conv", kernel_shape=list(k), strides=list(s), dilations=list(d),
                group=groups, **_pads(call, ins[0], r, k, s, d, _padding(call, r == 1)))
    return apply_activation(call, lay.back(y), call.cfg("activation", None))


@converter("DepthwiseConv1D", "DepthwiseConv2D")
def depthwise_conv(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    C, dm = lay.channels, call.cfg_int("depth_multiplier", 1)
    k, s, d = _geometry(call, r)
    bias = bool(call.cfg("use_bias", True))
    ws = call.weights([("depthwise_kernel", (*k, C, dm))] +
                      ([("bias", (C * dm,))] if bias else []))
    ins = [lay.to_cf(), call.const("depthwise_kernel", lambda: _depthwise_to_onnx(ws[0], r))]
    if bias:
        ins.append(call.const("bias", lambda: ws[1]))
    y = call.op("Conv", ins, "Conv", kernel_shape=list(k), strides=list(s), dilations=list(d),
                group=C, **_pads(call, ins[0], r, k, s, d, _padding(call)))
    return apply_activation(call, lay.back(y), call.cfg("activation", None))


@converter("SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D",
           "SeparableConvolution2D")
def separable_conv(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    C, dm = lay.channels, call.cfg_int("depth_multiplier", 1)
    filters = call.cfg_int("filters")
    k, s, d = _geometry(call, r)
    bias = bool(call.cfg("use_bias", True))
    ws = call.weights([("depthwise_kernel", (*k, C, dm)),
                       ("pointwise_kernel", (*(1,) * r, C * dm, filters))] +
                      ([("bias", (filters,))] if bias else []))
    x = lay.to_cf()
    dw = call.const("depthwise_kernel", lambda: _depthwise_to_onnx(ws[0], r))
    y = call.op("Conv", [x, dw], "depthwise", kernel_shape=list(k), strides=list(s),
                dilations=list(d), group=C, **_pads(call, x, r, k, s, d, _padding(call)))
    pw = call.const("pointwise_kernel", lambda: _kernel_to_onnx(ws[1], r))
    ins = [y, pw] + ([call.const("bias", lambda: ws[2])] if bias else [])
    y = call.op("Conv", ins, "pointwise", kernel_shape=[1] * r)
    return apply_activation(call, lay.back(y), call.cfg("activation", None))


def _transpose_pads(k_eff: int, s: int, padding: str, out_pad):
    """(pad begin, pad end, output_padding) of an ONNX ConvTranspose equal to Keras' (TF's)
    transposed convolution. TF's output length O is fixed by padding/output_padding; the
    result is the window [pb, pb + O) of the full scatter of length (n-1)*s + k_eff, with
    pb = max(full - O, 0) // 2 for 'same' (0 for 'valid'). full - O does not depend on n."""
    if padding == "valid":
        raw = k_eff - max(k_eff, s) if out_pad is None else -out_pad
        pb = 0
    else:
        raw = k_eff - s if out_pad is None else k_eff - k_eff % 2 - out_pad
        pb = max(raw, 0) // 2
    pe = raw - pb
    return (pb, pe, 0) if pe >= 0 else (pb, 0, -pe)


@converter("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
           "Convolution2DTranspose", "Convolution3DTranspose")
def conv_transpose(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    C, filters = lay.channels, call.cfg_int("filters")
    k, s, d = _geometry(call, r)
    op = None if call.cfg("output_padding", None) is None else \
        call.cfg_tuple("output_padding", r, lo=0)
    if call.cfg("groups", 1) not in (1, None):
        raise call.unsupported("groups != 1")
    padding = _padding(call)
    bias = bool(call.cfg("use_bias", True))
    ws = call.weights([("kernel", (*k, filters, C))] +
                      ([("bias", (filters,))] if bias else []))
    pb, pe, opad = zip(*[_transpose_pads((k[i] - 1) * d[i] + 1, s[i], padding,
                                         None if op is None else op[i]) for i in range(r)])
    ins = [lay.to_cf(), call.const("kernel", lambda: _kernel_to_onnx(ws[0], r))]
    if bias:
        ins.append(call.const("bias", lambda: ws[1]))
    attrs = dict(kernel_shape=list(k), strides=list(s), dilations=list(d),
                 pads=list(pb) + list(pe))
    if any(opad):
        attrs["output_padding"] = list(opad)
    y = call.op("ConvTranspose", ins, "ConvTranspose", **attrs)
    return apply_activation(call, lay.back(y), call.cfg("activation", None))


# -- pooling ----------------------------------------------------------------------------------
@converter("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D",
           "MaxPool3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
           "AvgPool1D", "AvgPool2D", "AvgPool3D")
def pool(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    k = call.cfg_tuple("pool_size", r, 2)
    s = k if call.cfg("strides", None) is None else call.cfg_tuple("strides", r)
    x = lay.to_cf()
    pads = _pads(call, x, r, k, s, (1,) * r, _padding(call))
    if call.class_name.startswith("Max"):
        y = call.op("MaxPool", [x], "MaxPool", kernel_shape=list(k), strides=list(s), **pads)
    else:   # Keras (TF) averages over the valid inputs only: count_include_pad=0
        y = call.op("AveragePool", [x], "AveragePool", kernel_shape=list(k), strides=list(s),
                    count_include_pad=0, **pads)
    return lay.back(y)


@converter("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
           "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D")
def global_pool(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    op = "GlobalMaxPool" if "Max" in call.class_name else "GlobalAveragePool"
    y = call.op(op, [lay.to_cf()], op)                       # (N, C, 1, ..., 1)
    if call.cfg("keepdims", False):
        return lay.back(y)
    return call.op("Flatten", [y], "Flatten", axis=1)        # (N, C)


# -- padding, cropping, upsampling ----------------------------------------------------------------
def _pairs(call: LayerCall, key: str, r: int, default) -> list[tuple[int, int]]:
    """Keras' padding/cropping argument: int, r ints (symmetric) or r pairs."""
    v = call.cfg(key, default)
    if isinstance(v, int):
        return [(v, v)] * r
    if r == 1 and isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(a, int) for a in v):
        return [(int(v[0]), int(v[1]))]
    if isinstance(v, (list, tuple)) and len(v) == r:
        out = []
        for a in v:
            if isinstance(a, int):
                out.append((a, a))
            elif isinstance(a, (list, tuple)) and len(a) == 2 and all(
                    isinstance(b, int) for b in a):
                out.append((int(a[0]), int(a[1])))
            else:
                break
        else:
            return out
    raise call.error(f"{key}={v!r} is not an int, {r} ints or {r} pairs of ints")


@converter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    p = _pairs(call, "padding", r, 1)
    pads = [0, 0] + [a for a, _ in p] + [0, 0] + [b for _, b in p]
    y = call.op("Pad", [lay.to_cf(), call.tmp_const("pads", np.array(pads, np.int64))], "Pad",
                mode="constant")
    return lay.back(y)


@converter("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r)
    c = _pairs(call, "cropping", r, 1)
    starts = [a for a, _ in c]
    ends = [-b if b > 0 else INT64_MAX for _, b in c]
    y = call.op("Slice", [lay.to_cf(), call.tmp_const("starts", np.array(starts, np.int64)),
                          call.tmp_const("ends", np.array(ends, np.int64)),
                          call.tmp_const("axes", np.arange(2, 2 + r, dtype=np.int64))],
                "Slice")
    return lay.back(y)


@converter("UpSampling1D", "UpSampling2D", "UpSampling3D")
def upsampling(call: LayerCall) -> str:
    r = _rank_of(call)
    lay = _Layout(call, r, has_format=r > 1)   # UpSampling1D: always (N, steps, C)
    size = call.cfg_tuple("size", r, 2) if r > 1 else (call.cfg_int("size", 2),)
    interp = call.cfg_choice("interpolation", ("nearest", "bilinear"), "nearest")
    if interp == "bilinear" and r != 2:
        raise call.unsupported(f"interpolation={interp!r} in {r}-D")
    scales = np.array([1.0, 1.0] + [float(v) for v in size], np.float32)
    attrs = ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
              "nearest_mode": "floor"} if interp == "nearest" else
             {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
    y = call.op("Resize", [lay.to_cf(), "", call.tmp_const("scales", scales)], "Resize",
                **attrs)
    return lay.back(y)
