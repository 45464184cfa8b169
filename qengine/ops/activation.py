"""Activations: ReLU family, Clip, sigmoids, HardSwish, Gelu, Softmax and friends.

Activations with parameters read them once in ``parse``; the computation stays in the input's
float dtype (Python-float parameters are weak scalars in numpy 2).
"""
from __future__ import annotations

import math

import numpy as np

from . import dims
from .eltwise import Unary, erf
from .registry import Op, register


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@register("Relu", "Sigmoid", "Tanh", "Softsign", "Softplus", "Mish", "HardSwish")
class Plain(Unary):
    table = {
        "Relu": lambda x: np.maximum(x, 0),
        "Sigmoid": _sigmoid,
        "Tanh": np.tanh,
        "Softsign": lambda x: x / (1 + np.abs(x)),
        "Softplus": lambda x: np.logaddexp(x, 0),
        "Mish": lambda x: x * np.tanh(np.logaddexp(x, 0)),
        "HardSwish": lambda x: x * np.clip(x * (1 / 6) + 0.5, 0, 1),
    }


class _Param(Unary):
    """An activation with float attributes: ``params`` = {attribute: default}."""

    params: dict = {}

    def parse(self, a):
        self.p = {k: a.float(k, d) for k, d in self.params.items()}
        self.fn = lambda x: self.f(x, **self.p)


@register("LeakyRelu")
class LeakyRelu(_Param):
    params = {"alpha": 0.01}
    f = staticmethod(lambda x, alpha: np.where(x >= 0, x, x * alpha))


@register("Elu")
class Elu(_Param):
    params = {"alpha": 1.0}
    f = staticmethod(lambda x, alpha: np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0))))


@register("Celu")
class Celu(_Param):
    params = {"alpha": 1.0}
    f = staticmethod(lambda x, alpha: np.maximum(x, 0) +
                     np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha)))


@register("Selu")
class Selu(_Param):
    params = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}
    f = staticmethod(lambda x, alpha, gamma: gamma * np.where(
        x > 0, x, alpha * np.expm1(np.minimum(x, 0))))


@register("ThresholdedRelu")
class ThresholdedRelu(_Param):
    params = {"alpha": 1.0}
    f = staticmethod(lambda x, alpha: np.where(x > alpha, x, 0))


@register("HardSigmoid")
class HardSigmoid(_Param):
    params = {"alpha": 0.2, "beta": 0.5}
    f = staticmethod(lambda x, alpha, beta: np.clip(x * alpha + beta, 0, 1))


@register("Shrink")
class Shrink(_Param):
    params = {"bias": 0.0, "lambd": 0.5}
    f = staticmethod(lambda x, bias, lambd: np.where(
        x < -lambd, x + bias, np.where(x > lambd, x - bias, 0)))


@register("Gelu")
class Gelu(Unary):
    def parse(self, a):
        approx = a.str("approximate", "none", choices=("none", "tanh"))
        self.fn = self._tanh if approx == "tanh" else self._erf

    @staticmethod
    def _erf(x):
        return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))

    @staticmethod
    def _tanh(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


@register("PRelu")
class PRelu(Op):
    """y = x if x >= 0 else slope * x; slope broadcasts to x (unidirectionally)."""

    n_inputs = (2, 2)
    elementwise = True  # with a scalar slope

    def infer(self, ins, consts):
        x, s = ins[0].shape, ins[1].shape
        out = dims.broadcast(x, s)
        if x is not None and out is not None and len(out) != len(x):
            raise self.error(f"slope shape {list(s)} does not broadcast to x {list(x)}")
        return [(x, ins[0].dtype)]

    def run(self, x, slope):
        return (np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False),)


@register("Clip")
class Clip(Op):
    """clamp(x, min, max); min/max are attributes before opset 11, optional inputs since."""

    n_inputs = (1, 3)
    elementwise = True

    def parse(self, a):
        if self.opset < 11:
            self.lo = a.float("min", -3.4028234663852886e38)
            self.hi = a.float("max", 3.4028234663852886e38)
            if len(self.node.inputs) > 1:
                raise self.error("min/max are attributes before opset 11, not inputs")

    def infer(self, ins, consts):
        for v in ins[1:]:
            if v is not None and v.shape is not None and (
                    len(v.shape) > 1 or (len(v.shape) == 1 and isinstance(v.shape[0], int)
                                         and v.shape[0] != 1)):
                raise self.error(f"min/max must be scalars, got shape {list(v.shape)}")
        return [(ins[0].shape, ins[0].dtype)]

    def run(self, x, lo=None, hi=None):
        if self.opset < 11:
            lo, hi = self.lo, self.hi
        y = x
        if lo is not None:
            y = np.maximum(y, np.asarray(lo).astype(x.dtype).reshape(()))
        if hi is not None:
            y = np.minimum(y, np.asarray(hi).astype(x.dtype).reshape(()))
        return (np.asarray(y, dtype=x.dtype),)


@register("Softmax", "LogSoftmax", "Hardmax")
class Softmax(Op):
    """Along ``axis`` (opset >= 13, default -1); before 13 the input is flattened to 2-D at
    ``axis`` (default 1) and normalised over the second dimension."""

    def parse(self, a):
        self.legacy = self.opset < 13
        self.axis = a.int("axis", 1 if self.legacy else -1)

    def infer(self, ins, consts):
        s = ins[0].shape
        if s is not None:
            try:
                dims.norm_axis(self.axis, max(len(s), 1))
            except ValueError as e:
                raise self.error(str(e)) from None
        return [(s, ins[0].dtype)]

    def run(self, x):
        shape = x.shape
        axis = dims.norm_axis(self.axis, max(x.ndim, 1))
        if self.legacy:
            x = x.reshape(int(np.prod(shape[:axis])), -1)
            axis = 1
        if self.op_type == "Hardmax":
            y = np.zeros_like(x)
            idx = np.expand_dims(np.argmax(x, axis=axis), axis)
            np.put_along_axis(y, idx, 1, axis=axis)
        else:
            z = x - np.max(x, axis=axis, keepdims=True)
            if self.op_type == "Softmax":
                e = np.exp(z)
                y = e / np.sum(e, axis=axis, keepdims=True)
            else:
                y = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
        return (y.reshape(shape).astype(x.dtype, copy=False),)


# ---- native lowering (runtime/lowering.py: lower_native) ----------------------------------------
def _softmax_lower_native(self, node, graph, cache):
    """Softmax / LogSoftmax of float32 over contiguous rows (the last axis; before opset 13
    the flattened tail from `axis`) as the C kernel: no Python in the step."""
    from .. import _kernels as K
    from .int8 import Kernel

    if self.op_type == "Hardmax" or node.inputs[0] in graph.initializers:
        return None
    v = graph.value(node.inputs[0])
    if v.dtype != np.float32 or not v.is_static or not v.shape:
        return None
    shape = tuple(v.shape)
    axis = dims.norm_axis(self.axis, len(shape))
    if not self.legacy and axis != len(shape) - 1:
        return None
    rows, cols = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    x, y = node.inputs[0], node.outputs[0]

    def make_steps(ctx):
        if rows * cols == 0:
            return []
        return [K.softmax_step(node.name, rows, cols, ctx.slot(x), ctx.slot(y),
                               log=self.op_type == "LogSoftmax")]

    return Kernel([x], [y], make_steps, layouts={x: "identity"},
                  out_perm=lambda perms, ctx: "identity", label=f"float {self.op_type.lower()} (C)",
                  precision="float")


Softmax.lower_native = _softmax_lower_native
