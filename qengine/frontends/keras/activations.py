"""Keras activation functions as ONNX ops (opset 17).

Used for a layer's ``activation=`` argument and for the Activation layer. Each entry emits the
function on one tensor; functions ONNX-17 lacks (gelu, mish, silu...) are spelled out with
older ops in the form exporters use, so the graph runs anywhere (and the int8 pipeline sees
an element-wise region it can turn into a lookup table).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .call import LayerCall

__all__ = ["apply_activation", "activation_name", "ACTIVATIONS"]

# SELU's constants as Keras' backends use them (torch and TF agree to float32 precision).
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _relu(c, x, w):
    return c.op("Relu", [x], w)


def _relu6(c, x, w):
    return c.op("Clip", [x, c.tmp_const(w + "_min", 0.0), c.tmp_const(w + "_max", 6.0)], w)


def _silu(c, x, w):
    return c.op("Mul", [x, c.op("Sigmoid", [x], w + "_sigmoid")], w)


def _hard_sigmoid(c, x, w):
    # Keras 3: relu6(x + 3) / 6 (as torch); Keras 2: clip(0.2 x + 0.5, 0, 1)
    alpha = 0.2 if c.keras_major < 3 else 1.0 / 6.0
    return c.op("HardSigmoid", [x], w, alpha=alpha, beta=0.5)


def _gelu(c, x, w):
    """0.5 x (1 + erf(x / sqrt 2)): Keras' default (approximate=False)."""
    e = c.op("Erf", [c.op("Div", [x, c.tmp_const(w + "_sqrt2", math.sqrt(2.0))], w + "_div")],
             w + "_erf")
    e = c.op("Add", [e, c.tmp_const(w + "_one", 1.0)], w + "_add")
    return c.op("Mul", [c.op("Mul", [x, e], w + "_mul"), c.tmp_const(w + "_half", 0.5)], w)


def _gelu_tanh(c, x, w):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): gelu(approximate=True)."""
    x3 = c.op("Mul", [c.op("Mul", [x, x], w + "_sq"), x], w + "_cube")
    inner = c.op("Add", [x, c.op("Mul", [x3, c.tmp_const(w + "_k", 0.044715)], w + "_kx3")],
                 w + "_inner")
    t = c.op("Tanh", [c.op("Mul", [inner, c.tmp_const(w + "_s", math.sqrt(2 / math.pi))],
                           w + "_scaled")], w + "_tanh")
    t = c.op("Add", [t, c.tmp_const(w + "_one", 1.0)], w + "_add")
    return c.op("Mul", [c.op("Mul", [x, t], w + "_mul"), c.tmp_const(w + "_half", 0.5)], w)


def _mish(c, x, w):
    sp = c.op("Softplus", [x], w + "_softplus")
    return c.op("Mul", [x, c.op("Tanh", [sp], w + "_tanh")], w)


def _log_sigmoid(c, x, w):
    n = c.op("Neg", [x], w + "_neg")
    return c.op("Neg", [c.op("Softplus", [n], w + "_softplus")], w)


def _tanh_shrink(c, x, w):
    return c.op("Sub", [x, c.op("Tanh", [x], w + "_tanh")], w)


def _hard_tanh(c, x, w):
    return c.op("Clip", [x, c.tmp_const(w + "_min", -1.0), c.tmp_const(w + "_max", 1.0)], w)


def _simple(op_type: str, **attrs) -> Callable:
    return lambda c, x, w: c.op(op_type, [x], w, **attrs)


#: Keras activation name -> emitter(call, x, node label) -> output tensor
ACTIVATIONS: dict[str, Callable] = {
    "relu": _relu,
    "relu6": _relu6,
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "softmax": _simple("Softmax", axis=-1),
    "log_softmax": _simple("LogSoftmax", axis=-1),
    "swish": _silu,
    "silu": _silu,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": _simple("HardSwish"),
    "hard_silu": _simple("HardSwish"),
    "gelu": _gelu,
    "elu": _simple("Elu", alpha=1.0),
    "selu": _simple("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "celu": _simple("Celu", alpha=1.0),
    "softplus": _simple("Softplus"),
    "softsign": _simple("Softsign"),
    "exponential": _simple("Exp"),
    "leaky_relu": _simple("LeakyRelu", alpha=0.2),
    "mish": _mish,
    "log_sigmoid": _log_sigmoid,
    "tanh_shrink": _tanh_shrink,
    "hard_tanh": _hard_tanh,
}
_IDENTITY = ("linear", "identity", None)


def activation_name(spec: Any) -> Any:
    """A config's activation as a plain name: "relu", or the serialized function
    ``{"class_name": "function", "config": "relu", ...}`` (Keras 3) -> "relu"."""
    if isinstance(spec, dict):
        if spec.get("class_name") == "function" and isinstance(spec.get("config"), str):
            return spec["config"]
        return spec.get("class_name", repr(spec))
    return spec


def apply_activation(call: LayerCall, x: str, spec: Any, what: str = "") -> str:
    """Emit activation ``spec`` on ``x`` (identity for linear/None); UnsupportedLayerError
    naming the layer for an activation qengine does not know (custom functions included:
    their code is not in the file)."""
    name = activation_name(spec)
    if name in _IDENTITY:
        return x
    fn = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if fn is None:
        raise call.unsupported(f"activation {name!r} (supported: "
                               f"{', '.join(sorted(ACTIVATIONS))}, linear)")
    return fn(call, x, what or str(name))
