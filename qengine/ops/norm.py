"""Normalisations in inference form: BatchNormalization, LayerNormalization,
InstanceNormalization, LRN."""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import dims
from .reduce import Reduce
from .registry import Op, make_op, register


def _per_channel(v: np.ndarray, rank: int, dtype) -> np.ndarray:
    """A (C,) parameter shaped to broadcast along axis 1 of a rank-``rank`` tensor."""
    return v.astype(dtype, copy=False).reshape((1, -1) + (1,) * (rank - 2))


@register("BatchNormalization", since=7)
class BatchNormalization(Op):
    """y = (x - mean) / sqrt(var + eps) * scale + B over channel axis 1 (inference mode only:
    training mode would update statistics, which an inference engine never does)."""

    n_inputs = (5, 5)
    n_outputs = (1, 5)

    def parse(self, a):
        self.eps = a.float("epsilon", 1e-5)
        a.float("momentum", 0.9)
        if a.int("training_mode", 0) or len([o for o in self.node.outputs if o]) > 1:
            raise self.error("training mode (extra outputs or training_mode=1) is not "
                             "supported: export the model in eval mode")
        if self.opset < 9 and a.int("spatial", 1) != 1:
            raise self.error("spatial=0 (per-activation statistics) is not supported")

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is not None and len(x) < 2:
            raise self.error(f"input must have rank >= 2, got {list(x)}")
        C = x[1] if x is not None else None
        for what, v in zip(("scale", "B", "mean", "var"), ins[1:]):
            s = v.shape
            if s is not None and (len(s) != 1 or (isinstance(C, int) and isinstance(s[0], int)
                                                  and s[0] != C)):
                raise self.error(f"{what} has shape {list(s)}, expected [{C}]")
        return [(x, ins[0].dtype)]

    def run(self, x, scale, b, mean, var):
        r, dt = x.ndim, x.dtype
        inv = 1 / np.sqrt(var.astype(dt) + self.eps)
        y = (x - _per_channel(mean, r, dt)) * _per_channel(inv, r, dt) * \
            _per_channel(scale, r, dt) + _per_channel(b, r, dt)
        return (y.astype(dt, copy=False),)


@register("LayerNormalization")
class LayerNormalization(Op):
    """Normalise over axes [axis, rank); statistics in float32 (stash_type 1) at least."""

    n_inputs = (2, 3)
    n_outputs = (1, 3)

    def parse(self, a):
        self.axis = a.int("axis", -1)
        self.eps = a.float("epsilon", 1e-5)
        stash = a.int("stash_type", 1)
        self.stash = np.float64 if stash == 11 else np.float32

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None:
            return [(None, ins[0].dtype), (None, self.stash), (None, self.stash)]
        try:
            ax = dims.norm_axis(self.axis, len(x))
        except ValueError as e:
            raise self.error(str(e)) from None
        norm = tuple(x[ax:])
        for k, what in ((1, "scale"), (2, "bias")):     # over the normalized axes x[axis:]
            p = ins[k].shape if k < len(ins) and ins[k] is not None else None
            if p is not None:
                try:
                    b = dims.broadcast(norm, p)
                    if len(b) != len(norm) or any(isinstance(u, int) and isinstance(v, int) and
                                                  u != v for u, v in zip(norm, b)):
                        raise ValueError("it would change the output shape")
                except ValueError:
                    raise self.error(f"{what} {list(p)} does not broadcast to the input "
                                     f"{list(x)}") from None
        stat = tuple(x[:ax]) + (1,) * (len(x) - ax)
        return [(x, ins[0].dtype), (stat, self.stash), (stat, self.stash)][:len(self.node.outputs)]

    def run(self, x, scale, b=None):
        ax = dims.norm_axis(self.axis, x.ndim)
        axes = tuple(range(ax, x.ndim))
        st = np.promote_types(x.dtype, self.stash)
        xs = x.astype(st, copy=False)
        mean = xs.mean(axis=axes, keepdims=True)
        d = xs - mean
        inv = 1 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + self.eps)
        y = d * inv * scale.astype(st, copy=False)
        if b is not None:
            y = y + b.astype(st, copy=False)
        return (y.astype(x.dtype, copy=False), mean.astype(self.stash), inv.astype(self.stash))


@register("InstanceNormalization")
class InstanceNormalization(Op):
    """y = scale[c] * (x - mean[n, c]) / sqrt(var[n, c] + eps) + B[c], stats over spatial."""

    n_inputs = (3, 3)

    def parse(self, a):
        self.eps = a.float("epsilon", 1e-5)

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is not None and len(x) < 3:
            raise self.error(f"input must have rank >= 3, got {list(x)}")
        return [(x, ins[0].dtype)]

    def run(self, x, scale, b):
        axes = tuple(range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        d = x - mean
        var = (d * d).mean(axis=axes, keepdims=True)
        y = d / np.sqrt(var + self.eps) * _per_channel(scale, x.ndim, x.dtype) + \
            _per_channel(b, x.ndim, x.dtype)
        return (y.astype(x.dtype, copy=False),)


@register("LRN")
class LRN(Op):
    """Local response normalisation across channels:
    y = x / (bias + alpha / size * sum_{c' in window(c)} x[c']^2) ^ beta."""

    keeps_layout = True     # run() sums along the channels where they lie in memory

    def parse(self, a):
        self.size = a.int("size", lo=1)
        self.alpha = a.float("alpha", 1e-4)
        self.beta = a.float("beta", 0.75)
        self.bias = a.float("bias", 1.0)

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is not None and len(x) < 3:
            raise self.error(f"input must have rank >= 3, got {list(x)}")
        return [(x, ins[0].dtype)]

    def run(self, x):
        return (self._run(x, None),)

    def run_into(self, x, out):
        """run() writing into `out` (x's shape; glue.float_node gives it x's layout)."""
        y = self._run(x, out)
        if y is not out:
            np.copyto(out, y)

    def _run(self, x, out):
        # On channels-last storage (the executor's NCHW view of the int8 kernels' NHWC) the
        # window runs along the channels where they lie in memory; summing along axis 1 of such
        # a view crossed layouts at every step (AlexNet's two LRNs, `qengine bench
        # light_bvlc_alexnet.onnx --compare none --profile`: 5.22 -> 1.97 ms in numpy).
        # Returns `out` when the C kernel could write there, else a new array.
        channels_last = x.ndim > 2 and abs(x.strides[1]) == min(abs(s) for s in x.strides)
        if x.dtype != np.float32 or x.ndim < 3:
            return self._run_numpy(x, channels_last)
        if x.size == 0:
            return np.empty_like(x) if out is None else out
        from .. import _kernels as K        # float32: the C kernel (csrc/float/lrn.c)
        n, c, a = x.shape[0], x.shape[1], self.alpha / self.size
        if channels_last:
            xc, oc = np.moveaxis(x, 1, -1), None if out is None else np.moveaxis(out, 1, -1)
            xr = xc.reshape(n, -1, c)
            into = oc.reshape(xr.shape) if oc is not None and oc.flags.c_contiguous else None
            y = K.lrn_f32(xr, self.size, a, self.bias, self.beta, channels_last=True, out=into)
            return out if into is not None else np.moveaxis(y.reshape(xc.shape), -1, 1)
        xr = x.reshape(n, c, -1)
        into = out.reshape(xr.shape) if out is not None and out.flags.c_contiguous else None
        y = K.lrn_f32(xr, self.size, a, self.bias, self.beta, out=into)
        return out if into is not None else y.reshape(x.shape)

    def _run_numpy(self, x, channels_last):
        """Other float types: the same sums in the same order, and numpy's power."""
        ax = x.ndim - 1 if channels_last else 1     # where the channels are in xc
        xc = np.moveaxis(x, 1, ax)
        C, lo = xc.shape[ax], (self.size - 1) // 2

        def window(k):          # channels [k, k + C) of the zero-padded squares
            return (slice(None),) * ax + (slice(k, k + C),)
        padded = list(xc.shape)
        padded[ax] += self.size - 1
        sq = np.zeros(padded, x.dtype)
        np.multiply(xc, xc, out=sq[window(lo)])
        acc = sq[window(0)].copy()
        for k in range(1, self.size):  # a loop over the window taps, not over pixels
            acc += sq[window(k)]
        y = xc / (self.bias + (self.alpha / self.size) * acc) ** self.beta
        return np.moveaxis(y, ax, 1).astype(x.dtype, copy=False)


# ---- native lowering (runtime/lowering.py: lower_native) ----------------------------------------
def _layernorm_lower_native(self, node, graph, cache):
    """float32 LayerNormalization over the trailing axes [axis, rank), with constant scale and
    bias and only its first output used, as the C kernel (contiguous rows)."""
    from .. import _kernels as K
    from .int8 import Kernel

    x, y = node.inputs[0], node.outputs[0]
    if any(o for o in node.outputs[1:]) or x in graph.initializers or self.stash != np.float32:
        return None
    v = graph.value(x)
    if v.dtype != np.float32 or not v.is_static or not v.shape:
        return None
    shape = tuple(v.shape)
    ax = dims.norm_axis(self.axis, len(shape))
    rows, cols = int(np.prod(shape[:ax])), int(np.prod(shape[ax:]))
    scale = graph.initializers.get(node.inputs[1])
    bias = graph.initializers.get(node.input(2)) if node.input(2) else None
    if scale is None or (node.input(2) and bias is None):
        return None
    try:
        gamma = np.broadcast_to(scale.astype(np.float32), shape[ax:]).reshape(-1)
        beta = None if bias is None else \
            np.broadcast_to(bias.astype(np.float32), shape[ax:]).reshape(-1)
    except ValueError:
        return None

    def make_steps(ctx):
        if rows * cols == 0:
            return []
        return [K.layernorm_step(node.name, rows, cols, ctx.slot(x), ctx.slot(y), gamma, beta,
                                 self.eps)]

    return Kernel([x], [y], make_steps, layouts={x: "identity"},
                  out_perm=lambda perms, ctx: "identity", label="float layernorm (C)",
                  precision="float")


LayerNormalization.lower_native = _layernorm_lower_native


# ---- a layer normalization written out op by op ------------------------------------------------
def _scalar(graph, name):
    """The value of a one-element float constant, else None."""
    a = graph.initializers.get(name)
    return float(a.reshape(())) if a is not None and a.size == 1 and a.dtype.kind == "f" else None


def _written_out_layernorm(node, graph, readers: Optional[dict] = None) -> Optional[tuple]:
    """Exporters before opset 17 write LayerNormalization as
        mean = ReduceMean(x)  d = Sub(x, mean)  v = ReduceMean(Pow(d, 2))
        y = Div(d, Sqrt(Add(v, eps)))
    over the trailing axes, keepdims. From the first ReduceMean: (x, y, axis, eps, the other
    six nodes in order), or None where any link differs or an intermediate is read elsewhere.
    readers: the graph's consumers_map, when the caller has it."""
    readers = graph.consumers_map() if readers is None else readers
    outputs = set(graph.output_names)

    def sole(name, op_type):
        r = readers.get(name, [])
        return r[0] if len(r) == 1 and r[0].op_type == op_type and name not in outputs else None

    def trailing_axes(n):
        op = make_op(n, graph.opset)
        v = graph.value(n.inputs[0])
        if not op.keepdims or v.rank is None:
            return None
        arr = graph.initializers.get(n.input(1)) if op.axes_input and n.input(1) else None
        if op.axes_input and arr is None:
            return None
        axes = op._axes(v.rank, arr)
        if not axes or sorted(axes) != list(range(v.rank - len(axes), v.rank)):
            return None
        return v.rank - len(axes)

    x, mean = node.inputs[0], node.outputs[0]
    axis = trailing_axes(node)
    sub = sole(mean, "Sub")
    if axis is None or sub is None or sub.inputs != [x, mean]:
        return None
    d = sub.outputs[0]
    rd = readers.get(d, [])
    if d in outputs or len(rd) != 2 or {r.op_type for r in rd} != {"Pow", "Div"}:
        return None
    pow_, div = sorted(rd, key=lambda r: r.op_type != "Pow")
    if pow_.inputs[0] != d or _scalar(graph, pow_.inputs[1]) != 2.0 or div.inputs[0] != d:
        return None
    var = sole(pow_.outputs[0], "ReduceMean")
    if var is None or var.inputs[0] != pow_.outputs[0] or trailing_axes(var) != axis:
        return None
    add = sole(var.outputs[0], "Add")
    if add is None:
        return None
    eps = _scalar(graph, add.inputs[1] if add.inputs[0] == var.outputs[0] else add.inputs[0])
    sqrt = sole(add.outputs[0], "Sqrt")
    if eps is None or eps < 0 or sqrt is None or sole(sqrt.outputs[0], "Div") is not div or \
            div.inputs[1] != sqrt.outputs[0]:
        return None
    return x, div.outputs[0], axis, eps, [sub, pow_, var, add, sqrt, div]


def written_out_layernorms(graph) -> set:
    """The names of the nodes of every written-out layer normalization in the graph (the
    quantizer keeps them float: one kernel computes them, see below)."""
    names, readers = set(), graph.consumers_map()
    for n in graph.nodes:
        if n.op_type == "ReduceMean" and n.domain in ("", "ai.onnx"):
            found = _written_out_layernorm(n, graph, readers)
            if found is not None:
                names.update([n.name] + [m.name for m in found[4]])
    return names


def _written_out_layernorm_native(self, node, graph, cache):
    """The written-out layer normalization (_written_out_layernorm) as one LayerNormalization
    kernel over float32 rows: the same function in one pass, where the seven numpy steps it
    replaces made an 80 x 128 transformer block slower than onnxruntime float."""
    from .. import _kernels as K
    from .int8 import Kernel

    if self.op_type != "ReduceMean":
        return None
    found = _written_out_layernorm(node, graph)
    if found is None:
        return None
    x, y, axis, eps, rest = found
    v = graph.value(x)
    if v.dtype != np.float32 or not v.is_static or graph.value(y).dtype != np.float32 or \
            tuple(graph.value(y).shape) != tuple(v.shape) or x in graph.initializers:
        return None
    shape = tuple(v.shape)
    rows, cols = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    ones = np.ones(cols, np.float32)

    def make_steps(ctx):
        if rows * cols == 0:
            return []
        return [K.layernorm_step(node.name, rows, cols, ctx.slot(x), ctx.slot(y), ones, None,
                                 eps)]

    k = Kernel([x], [y], make_steps, layouts={x: "identity"},
               out_perm=lambda perms, ctx: "identity", label="float layernorm (C, written out)",
               precision="float")
    k.fused_nodes = rest
    return k


Reduce.lower_native = _written_out_layernorm_native
