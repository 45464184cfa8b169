"""Core, activation, normalisation, merge, reshaping and preprocessing layers -> ONNX.

These act on the last axis or element-wise, so they stay in Keras' channels-last layout:
Dense is Gemm on 2-D inputs and MatMul+Add on higher ranks, Rescaling/Normalization are
Mul/Add or Sub/Div by constants. BatchNormalization is the exception: it becomes ONNX's
BatchNormalization (channels-first), so the prepare pass can fold it into the Conv before it.
"""
from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, _gelu_tanh, apply_activation
from .call import LayerCall, converter, op_converter

#: Keras' backend.epsilon() default (keras.json may change it; files do not record it)
KERAS_EPSILON = 1e-7


# -- core -------------------------------------------------------------------------------------
@converter("Dense")
def dense(call: LayerCall) -> str:
    x = call.one_input()
    if call.rank(x) < 2:
        raise call.error(f"expects an input of rank >= 2, got {list(call.shape(x))}")
    if call.cfg("lora_rank", None):
        raise call.unsupported("LoRA-enabled Dense (lora_rank set): merge the LoRA weights "
                               "first")
    units, C = call.cfg_int("units"), call.dim(x, -1, "the input feature count")
    bias = bool(call.cfg("use_bias", True))
    ws = call.weights([("kernel", (C, units))] + ([("bias", (units,))] if bias else []))
    W = call.const("kernel", lambda: ws[0])
    if call.rank(x) == 2:     # the classic fully connected layer: Gemm (BatchNorm folds in)
        y = call.op("Gemm", [x, W] + ([call.const("bias", lambda: ws[1])] if bias else []),
                    "Gemm")
        return apply_activation(call, y, call.cfg("activation", None))
    y = call.op("MatMul", [x, W], "MatMul")
    if bias:
        y = call.op("Add", [y, call.const("bias", lambda: ws[1])], "BiasAdd")
    return apply_activation(call, y, call.cfg("activation", None))


@converter("Activation")
def activation(call: LayerCall) -> str:
    return apply_activation(call, call.one_input(), call.cfg("activation"))


@converter("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
           "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
           "Identity")
def passthrough(call: LayerCall) -> str:
    """Training-time-only layers: the identity at inference."""
    return call.one_input()


# -- activations as layers ------------------------------------------------------------------------
@converter("ReLU")
def relu(call: LayerCall) -> str:
    x = call.one_input()
    top = call.cfg("max_value", None)
    slope = call.cfg_float("negative_slope", 0.0)
    t = call.cfg_float("threshold", 0.0)
    if t == 0.0 and slope == 0.0 and top is not None:     # ReLU(6.0): one fusable Clip
        return call.op("Clip", [x, call.tmp_const("min", 0.0),
                                call.tmp_const("max", float(top))], "Clip")
    if t == 0.0 and slope == 0.0:
        y = call.op("Relu", [x], "Relu")
    elif t == 0.0:
        y = call.op("LeakyRelu", [x], "LeakyRelu", alpha=slope)
    else:   # x >= t ? x : slope * (x - t)
        below = call.op("Mul", [call.op("Sub", [x, call.tmp_const("threshold", t)], "sub"),
                                call.tmp_const("slope", slope)], "below")
        ge = call.op("GreaterOrEqual", [x, call.tmp_const("threshold_ge", t)], "ge")
        y = call.op("Where", [ge, x, below], "Where")
    if top is not None:
        y = call.op("Min", [y, call.tmp_const("max_value", float(top))], "max_value")
    return y


@converter("LeakyReLU")
def leaky_relu(call: LayerCall) -> str:
    slope = call.cfg_float("negative_slope", 0.3, "alpha")
    return call.op("LeakyRelu", [call.one_input()], "LeakyRelu", alpha=slope)


@converter("ELU")
def elu(call: LayerCall) -> str:
    return call.op("Elu", [call.one_input()], "Elu", alpha=call.cfg_float("alpha", 1.0))


@converter("ThresholdedReLU")
def thresholded_relu(call: LayerCall) -> str:
    return call.op("ThresholdedRelu", [call.one_input()], "ThresholdedRelu",
                   alpha=call.cfg_float("theta", 1.0))


@converter("PReLU")
def prelu(call: LayerCall) -> str:
    x = call.one_input()
    shape = list(call.shape(x)[1:])
    for a in call.cfg("shared_axes", None) or []:
        if not 1 <= int(a) <= len(shape):
            raise call.error(f"shared_axes contains {a}, out of range for input "
                             f"{list(call.shape(x))}")
        shape[int(a) - 1] = 1
    if not all(isinstance(d, int) for d in shape):
        raise call.error(f"alpha's shape {shape} depends on unknown input dims")
    (alpha,) = call.weights([("alpha", tuple(shape))])
    return call.op("PRelu", [x, call.const("alpha", lambda: alpha)], "PRelu")


@converter("Softmax")
def softmax(call: LayerCall) -> str:
    x = call.one_input()
    return call.op("Softmax", [x], "Softmax", axis=call.axis(x))


# -- normalisation ------------------------------------------------------------------------------
def _axes(call: LayerCall, x: str, default) -> list[int]:
    a = call.cfg("axis", default)
    a = [a] if isinstance(a, int) else list(a)
    r = call.rank(x)
    if not a or not all(isinstance(v, int) and -r <= v < r for v in a):
        raise call.error(f"axis={call.cfg('axis', default)!r} is not valid for a rank-{r} "
                         f"input")
    return sorted({v % r for v in a})


def _along(v: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along ``axis`` (no leading 1s: (C,) for the
    last axis, (C, 1, 1) for axis 1 of a rank-4 tensor)."""
    return v.reshape((-1,) + (1,) * (rank - 1 - axis))


@converter("BatchNormalization")
def batch_norm(call: LayerCall) -> str:
    """An ONNX BatchNormalization over the channel axis: the prepare pass folds it into the
    Conv/Gemm before it. Channels-last inputs of rank >= 3 are wrapped in Transposes like a
    spatial layer (the transpose pass removes them); other axes get Mul+Add by constants
    folded as Keras folds them (x * inv + (beta - mean * inv))."""
    x = call.one_input()
    axes = _axes(call, x, -1)
    if len(axes) != 1:
        raise call.unsupported(f"axis={axes}: one axis is supported")
    if call.cfg("renorm", False):
        raise call.unsupported("renorm=True")
    ax, r = axes[0], call.rank(x)
    C = call.dim(x, ax, "the normalised axis")
    scale, center = bool(call.cfg("scale", True)), bool(call.cfg("center", True))
    eps = call.cfg_float("epsilon", 1e-3)
    ws = call.weights(([("gamma", (C,))] if scale else []) + ([("beta", (C,))] if center else [])
                      + [("moving_mean", (C,)), ("moving_variance", (C,))])
    gamma = ws.pop(0) if scale else np.ones(C, np.float32)
    beta = ws.pop(0) if center else np.zeros(C, np.float32)
    mean, var = ws
    if ax == 1 or ax == r - 1:
        params = [call.const(k, lambda v=v: v) for k, v in
                  (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                   ("moving_variance", var))]
        y = x if ax == 1 else call.transpose(x, [0, r - 1, *range(1, r - 1)],
                                             "to_channels_first")
        y = call.op("BatchNormalization", [y] + params, "BatchNormalization", epsilon=eps)
        return y if ax == 1 else call.transpose(y, [0, *range(2, r), 1], "to_channels_last")
    inv = (np.float32(1) / np.sqrt(var + np.float32(eps))).astype(np.float32) * gamma
    res = -mean * inv + beta
    y = call.op("Mul", [x, call.const("scale", lambda: _along(inv, ax, r))], "Mul")
    return call.op("Add", [y, call.const("shift", lambda: _along(res, ax, r))], "Add")


@converter("LayerNormalization")
def layer_norm(call: LayerCall) -> str:
    x = call.one_input()
    axes, r = _axes(call, x, -1), call.rank(x)
    if axes != list(range(axes[0], r)):
        raise call.unsupported(f"axis={axes}: only the trailing axes can be normalised")
    if call.cfg("rms_scaling", False):
        raise call.unsupported("rms_scaling=True")
    shape = tuple(call.dim(x, a, "a normalised axis") for a in axes)
    scale, center = bool(call.cfg("scale", True)), bool(call.cfg("center", True))
    ws = call.weights(([("gamma", shape)] if scale else []) + ([("beta", shape)] if center
                                                               else []))
    gamma = call.const("gamma", lambda: ws[0] if scale else np.ones(shape, np.float32))
    ins = [x, gamma] + ([call.const("beta", lambda: ws[-1])] if center else [])
    return call.op("LayerNormalization", ins, "LayerNormalization", axis=axes[0],
                   epsilon=call.cfg_float("epsilon", 1e-3))


# -- merging ---------------------------------------------------------------------------------------
def _chain(call: LayerCall, op_type: str) -> str:
    if len(call.inputs) < 2:
        raise call.error(f"expects at least 2 inputs, got {len(call.inputs)}")
    y = call.inputs[0]
    for k, t in enumerate(call.inputs[1:]):
        y = call.op(op_type, [y, t], op_type if len(call.inputs) == 2 else f"{op_type}_{k}")
    return y


@converter("Add")
def add(call: LayerCall) -> str:
    return _chain(call, "Add")


@converter("Multiply")
def multiply(call: LayerCall) -> str:
    return _chain(call, "Mul")


@converter("Maximum")
def maximum(call: LayerCall) -> str:
    return _chain(call, "Max")


@converter("Minimum")
def minimum(call: LayerCall) -> str:
    return _chain(call, "Min")


@converter("Subtract")
def subtract(call: LayerCall) -> str:
    if len(call.inputs) != 2:
        raise call.error(f"expects exactly 2 inputs, got {len(call.inputs)}")
    return call.op("Sub", call.inputs, "Sub")


@converter("Average")
def average(call: LayerCall) -> str:
    s = _chain(call, "Add")
    return call.op("Mul", [s, call.tmp_const("inv_n", 1.0 / len(call.inputs))], "mean")


@converter("Concatenate")
def concatenate(call: LayerCall) -> str:
    if len(call.inputs) < 1:
        raise call.error("expects at least 1 input")
    return call.op("Concat", call.inputs, "Concat", axis=call.axis(call.inputs[0]))


# -- reshaping ---------------------------------------------------------------------------------
@converter("Flatten")
def flatten(call: LayerCall) -> str:
    x = call.one_input()
    r = call.rank(x)
    if call.cfg("data_format", "channels_last") == "channels_first" and r > 2:
        x = call.transpose(x, [0, *range(2, r), 1], "to_channels_last")
    if r == 1:
        return call.op("Reshape", [x, call.tmp_const("shape", [-1, 1])], "Reshape")
    return call.op("Flatten", [x], "Flatten", axis=1)


@converter("Reshape")
def reshape(call: LayerCall) -> str:
    target = call.cfg("target_shape")
    if not isinstance(target, (list, tuple)) or not all(
            isinstance(d, int) and (d > 0 or d == -1) for d in target):
        raise call.error(f"target_shape={target!r} is not a list of positive ints (or -1)")
    return call.op("Reshape", [call.one_input(), call.tmp_const("shape", [0, *target])],
                   "Reshape")


@converter("Permute")
def permute(call: LayerCall) -> str:
    dims = call.cfg("dims")
    x = call.one_input()
    if sorted(dims) != list(range(1, call.rank(x))):
        raise call.error(f"dims={dims!r} is not a permutation of 1..{call.rank(x) - 1}")
    return call.transpose(x, [0, *dims], "Transpose")


# -- preprocessing ------------------------------------------------------------------------------
def _number_or_list(call: LayerCall, key: str, default) -> np.ndarray:
    v = call.cfg(key, default)
    if isinstance(v, dict) and "config" in v:     # a serialized array
        v = v["config"].get("value", v["config"])
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise call.error(f"{key}={v!r} is not a number or a list of numbers") from None
    return arr


@converter("Rescaling")
def rescaling(call: LayerCall) -> str:
    x = call.one_input()
    scale, offset = _number_or_list(call, "scale", 1.0), _number_or_list(call, "offset", 0.0)
    if not (scale.ndim == 0 and scale == 1):
        x = call.op("Mul", [x, call.const("scale", lambda: scale)], "Mul")
    if not (offset.ndim == 0 and offset == 0):
        x = call.op("Add", [x, call.const("offset", lambda: offset)], "Add")
    return x


@converter("Normalization")
def normalization(call: LayerCall) -> str:
    """(x - mean) / max(sqrt(var), eps), or its inverse, with mean/var from the config or
    from the adapted weights (mean, variance, count); broadcast along the kept axes."""
    x = call.one_input()
    r = call.rank(x)
    keep = [] if call.cfg("axis", -1) in (None, [], ()) else _axes(call, x, -1)
    bshape = [call.dim(x, a, "a normalised axis") if a in keep else 1 for a in range(r)]
    kept = tuple(bshape[a] for a in keep)
    mean, var = call.cfg("mean", None), call.cfg("variance", None)
    if mean is None or var is None:
        mean, var, _ = call.weights([("mean", kept), ("variance", kept), ("count", ())])
    else:
        mean, var = (np.asarray(v, np.float32) for v in (mean, var))

    def broadcast(v):
        v = np.asarray(v, np.float32)
        if v.ndim:       # align to the kept axes from the right, as Keras does
            full = [1] * r
            for i in range(1, v.ndim + 1):
                full[keep[-i]] = v.shape[-i]
            v = v.reshape(full)
        return np.ascontiguousarray(np.broadcast_to(v, bshape))

    std = lambda: np.maximum(np.sqrt(broadcast(var)), np.float32(KERAS_EPSILON))  # noqa: E731
    m = call.const("mean", lambda: broadcast(mean))
    s = call.const("std", std)
    if call.cfg("invert", False):
        return call.op("Add", [call.op("Mul", [x, s], "Mul"), m], "Add")
    return call.op("Div", [call.op("Sub", [x, m], "Sub"), s], "Div")


# -- Keras operations on symbolic tensors (x + 3.0, keras.ops.relu(x), ...) ---------------------
_OP_BINARY = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div",
              "TrueDivide": "Div", "Maximum": "Max", "Minimum": "Min", "Power": "Pow"}
_OP_UNARY = {"Negative": "Neg", "Absolute": "Abs", "Abs": "Abs", "Sqrt": "Sqrt", "Exp": "Exp",
             "Log": "Log", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Relu": "Relu",
             "Softplus": "Softplus", "Softsign": "Softsign"}
_OP_ACTIVATIONS = {"Relu6": "relu6", "Silu": "silu", "Swish": "silu",
                   "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu",
                   "HardSwish": "hard_silu", "Selu": "selu", "Mish": "mish"}


def _op_config(call: LayerCall, allowed=()) -> None:
    extra = set(call.layer.config) - {"name", *allowed}
    if extra:
        raise call.unsupported(f"options {sorted(extra)} of this operation")


@op_converter(*_OP_BINARY)
def op_binary(call: LayerCall) -> str:
    _op_config(call)
    if len(call.inputs) != 2:
        raise call.error(f"expects 2 arguments, got {len(call.inputs)}")
    return call.op(_OP_BINARY[call.class_name], call.inputs, call.class_name)


@op_converter(*_OP_UNARY, *_OP_ACTIVATIONS, "Square", "Softmax", "Gelu", "LeakyRelu", "Elu")
def op_unary(call: LayerCall) -> str:
    x, t = call.one_input(), call.class_name
    if t in _OP_UNARY:
        _op_config(call)
        return call.op(_OP_UNARY[t], [x], t)
    if t in _OP_ACTIVATIONS:
        _op_config(call)
        return ACTIVATIONS[_OP_ACTIVATIONS[t]](call, x, t)
    if t == "Square":
        _op_config(call)
        return call.op("Mul", [x, x], t)
    if t == "Softmax":
        _op_config(call, ("axis",))
        return call.op("Softmax", [x], t, axis=call.axis(x))
    if t == "Gelu":
        _op_config(call, ("approximate",))
        return (_gelu_tanh if call.cfg("approximate", True) else ACTIVATIONS["gelu"])(call, x, t)
    if t == "LeakyRelu":
        _op_config(call, ("negative_slope",))
        return call.op("LeakyRelu", [x], t, alpha=call.cfg_float("negative_slope", 0.2))
    _op_config(call, ("alpha",))
    return call.op("Elu", [x], t, alpha=call.cfg_float("alpha", 1.0))

