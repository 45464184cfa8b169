"""Elementwise arithmetic: unary math, broadcasting binary ops and variadic Max/Min/Sum/Mean.

Each family is one class driven by a table (op type -> numpy function). Float math stays in
the input's dtype: numpy 2 keeps float32 with Python scalars (weak scalars, NEP 50).
"""
from __future__ import annotations

import math

import numpy as np

from . import dims
from .registry import Op, register

__all__ = ["Unary", "Binary", "erf"]


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, to ~1e-15 relative (float64 inside), in x's dtype.

    |x| < 2.5: the series 2/sqrt(pi) exp(-x^2) sum 2^n x^(2n+1) / (2n+1)!! (all terms positive:
    no cancellation); beyond, 1 - erfc(x) with erfc's continued fraction (Lentz-free, evaluated
    from a fixed depth backwards). numpy has no erf and scipy is not a dependency.
    """
    x = np.asarray(x)
    v = x.astype(np.float64)
    a = np.abs(v)
    out = np.empty_like(v)
    small = a < 2.5
    if small.any():
        s = a[small]
        term = s.copy()
        total = s.copy()
        x2 = s * s
        for n in range(1, 80):
            term = term * 2.0 * x2 / (2 * n + 1)
            total += term
        out[small] = 2.0 / math.sqrt(math.pi) * np.exp(-x2) * total
    big = ~small
    if big.any():
        s = a[big]
        frac = np.zeros_like(s)
        for k in range(60, 0, -1):
            frac = (k / 2.0) / (s + frac)
        erfc = np.exp(-s * s) / math.sqrt(math.pi) / (s + frac)
        out[big] = 1.0 - erfc
    out = np.where(np.isnan(v), np.nan, np.copysign(out, v))
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64)


class Unary(Op):
    """y = f(x), same shape and dtype. Subclasses fill ``table`` (op type -> function)."""

    table: dict = {}
    elementwise = True

    def parse(self, a):
        self.fn = self.table[self.op_type]

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[0].dtype)]

    def run(self, x):
        return (np.asarray(self.fn(x), dtype=x.dtype),)


@register("Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign",
          "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
          "Atanh")
class Math(Unary):
    table = {
        "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal,
        "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
        "Round": np.rint,   # half to even, as ONNX specifies
        "Sign": np.sign, "Erf": erf, "Sin": np.sin, "Cos": np.cos, "Tan": np.tan,
        "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh,
        "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
    }


def _div(x, y):
    """ONNX Div: true division for floats, truncation toward zero for integers (C semantics)."""
    if x.dtype.kind == "f":
        return np.divide(x, y)
    q = np.floor_divide(x, y)
    if x.dtype.kind == "i":
        fix = (np.remainder(x, y) != 0) & ((x < 0) != (y < 0))
        q = q + fix.astype(q.dtype)
    return q


def _pow(x, y):
    """ONNX Pow: the result has the base's dtype, whatever the exponent's."""
    if x.dtype.kind == "f":
        return np.power(x, y.astype(x.dtype, copy=False))
    return np.power(x.astype(np.float64), y.astype(np.float64))


def _mod(x, y, fmod):
    """fmod=1: C fmod (the dividend's sign); fmod=0: the divisor's sign, like Python."""
    return np.fmod(x, y) if fmod else np.mod(x, y)


class Binary(Op):
    """z = f(x, y) with numpy (multidirectional) broadcasting."""

    n_inputs = (2, 2)
    table: dict = {}
    same_types = True   # inputs must share a dtype (ONNX type constraint T for both)
    out_dtype = None    # None: the first input's dtype
    legacy_axis = None  # opsets 1-6 "broadcast"/"axis" attributes (see parse)

    def parse(self, a):
        self.fn = self.table[self.op_type]
        self.legacy_axis = None
        if self.opset < 7 and a.int("broadcast", 0):
            # opsets 1-6: B broadcasts to A when broadcast=1, aligned at ``axis`` if given
            self.legacy_axis = a.int("axis", None)

    def _align(self, a_shape, b_shape):
        """B's shape under the opset < 7 broadcast rule (unchanged otherwise)."""
        if self.legacy_axis is None or a_shape is None or b_shape is None:
            return b_shape
        ax = self.legacy_axis + len(a_shape) if self.legacy_axis < 0 else self.legacy_axis
        return (1,) * ax + tuple(b_shape) + (1,) * (len(a_shape) - ax - len(b_shape))

    def infer(self, ins, consts):
        if self.same_types and ins[0].dtype is not None and ins[1].dtype is not None \
                and ins[0].dtype != ins[1].dtype:
            raise self.error(f"input dtypes differ: {ins[0].dtype} and {ins[1].dtype}")
        dt = self.out_dtype if self.out_dtype is not None else ins[0].dtype
        try:
            return [(dims.broadcast(ins[0].shape, self._align(ins[0].shape, ins[1].shape)), dt)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, x, y):
        if self.legacy_axis is not None:
            y = y.reshape(self._align(x.shape, y.shape))
        dt = self.out_dtype if self.out_dtype is not None else x.dtype
        return (np.asarray(self.fn(x, y), dtype=dt),)


@register("Add", "Sub", "Mul", "Div")
class Arith(Binary):
    table = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div}
    elementwise = True

    def int8_kind(self):
        return "compute" if self.op_type in ("Add", "Sub", "Mul") else None


@register("Pow")
class Pow(Binary):
    same_types = False
    elementwise = True
    table = {"Pow": _pow}


@register("Mod")
class Mod(Binary):
    def parse(self, a):
        fmod = a.int("fmod", 0)
        self.fn = lambda x, y: _mod(x, y, fmod)


@register("BitShift")
class BitShift(Binary):
    def parse(self, a):
        d = a.str("direction", choices=("LEFT", "RIGHT"))
        self.fn = np.left_shift if d == "LEFT" else np.right_shift


@register("Max", "Min", "Sum", "Mean")
class Variadic(Op):
    """Elementwise reduction of 1..n broadcast inputs."""

    n_inputs = (1, None)
    table = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}
    elementwise = True

    def parse(self, a):
        self.fn = self.table[self.op_type]

    def infer(self, ins, consts):
        ins = [v for v in ins if v is not None]
        types = {v.dtype for v in ins if v.dtype is not None}
        if len(types) > 1:
            raise self.error(f"input dtypes differ: {sorted(t.name for t in types)}")
        return [(dims.broadcast(*[v.shape for v in ins]), ins[0].dtype)]

    def run(self, *xs):
        xs = [x for x in xs if x is not None]
        acc = xs[0]
        for x in xs[1:]:
            acc = self.fn(acc, x)
        if self.op_type == "Mean":
            acc = acc / len(xs)
        acc = np.broadcast_to(acc, np.broadcast_shapes(*[x.shape for x in xs]))
        return (np.array(acc, dtype=xs[0].dtype),)


# ---- int8 lowering (ops/int8.py) ------------------------------------------------------------------
def _arith_lower_int8(self, unit):
    """Add / Sub / Mul of two quantized operands (an activation and another activation or a
    quantized constant): the add / mul kernels with requantization when the second operand is
    the same shape, a per-channel vector along the physical last axis, or a scalar; an exact
    numpy form of the same float32 formula otherwise (general broadcasting, Sub)."""
    from .. import _kernels as K
    from .int8 import Kernel, QConst, QTensor, clamp_of

    if self.op_type not in ("Add", "Sub", "Mul") or self.legacy_axis is not None:
        return None
    ops = []
    for v in unit.inputs[:2]:
        if isinstance(v, QTensor):
            ops.append((v, None))
        elif isinstance(v, QConst) and v.values.dtype == np.uint8 and not v.qparams.is_per_axis:
            ops.append((QTensor(v.name, np.float32(v.qparams.scale), int(v.qparams.zero_point)),
                        v.values))
        else:
            return None
    (a, a_const), (b, b_const) = ops
    if a_const is not None and b_const is not None:
        return None
    y = unit.outputs[0]
    qmin, qmax = clamp_of(unit, y)
    f32 = np.float32
    if self.op_type == "Mul":
        ma, mb = f32(f32(a.scale * b.scale) / y.scale), f32(0)
    else:
        ma, mb = f32(a.scale / y.scale), f32(b.scale / y.scale)
        if self.op_type == "Sub":
            mb = -mb
    if not (np.isfinite(ma) and np.isfinite(mb) and ma > 0):
        return None
    reads = [t.name for t, c in ops if c is None]
    consts = {t.name: c for t, c in ops if c is not None}

    def numpy_form(ctx):
        """v = float32(a - za) * ma + float32(b - zb) * mb (or the product form), as the
        kernels compute it, on logical views."""
        from ..runtime.glue import logical_view, store
        getters = []
        for t in (a, b):
            if t.name in consts:
                c = consts[t.name]
                getters.append(lambda views, c=c: c)
            else:
                slot, perm = ctx.slot(t.name)[0], ctx.perm(t.name)
                getters.append(lambda views, s=slot, p=perm: logical_view(views[s], p))
        oslot, operm = ctx.slot(y.name)[0], ctx.perm(y.name)
        lo, hi = f32(qmin - y.zero_point), f32(qmax - y.zero_point)

        def fn(views):
            da = (getters[0](views).astype(np.int32) - a.zero_point)
            db = (getters[1](views).astype(np.int32) - b.zero_point)
            if self.op_type == "Mul":
                v = (da * db).astype(f32) * ma
            else:
                v = da.astype(f32) * ma + db.astype(f32) * mb
            q = np.rint(np.clip(v, lo, hi)).astype(np.int32) + y.zero_point
            store(views[oslot], q.astype(np.uint8), operm)
        return [K.PyStep(unit.name, self.op_type, fn)]

    def multipliers(x, z):
        if self.op_type == "Mul":
            return ma, f32(0)
        return f32(x.scale / y.scale), f32(z.scale / y.scale)

    def batched_channel(ctx, x, z, rows, cols):
        """One channel-form step per batch item: z holds one vector of cols per item."""
        batch = ctx.shape(x.name)[0]
        per = rows // batch
        (xs, xo), (zs_, zo), (ys, yo) = ctx.slot(x.name), ctx.slot(z.name), ctx.slot(y.name)
        mx, mz = multipliers(x, z)
        return [K.binary_step(f"{unit.name}[{i}]", "mul" if self.op_type == "Mul" else "add",
                              per, cols, (xs, xo + i * per * cols), (zs_, zo + i * cols),
                              (ys, yo + i * per * cols), "channel", a_zp=x.zero_point,
                              b_zp=z.zero_point, y_zp=y.zero_point, a_mult=float(mx),
                              b_mult=float(mz), qmin=qmin, qmax=qmax) for i in range(batch)]

    def make_steps(ctx):
        out_shape = ctx.shape(y.name)
        n = int(np.prod(out_shape))
        if n == 0:
            return []
        # x: an activation of the output's shape; z: the other operand (Add, Mul commute)
        full = [t for t in (a, b) if t.name not in consts and ctx.shape(t.name) == out_shape]
        if self.op_type == "Sub" or not full:
            return numpy_form(ctx)
        x = full[0]
        z = b if x is a else a
        zs = ctx_shape(ctx, z, consts)
        perm = ctx.perm(x.name)
        phys = tuple(out_shape[p] for p in perm)
        rows, cols = int(np.prod(phys[:-1])), (phys[-1] if phys else 1)
        zsize = int(np.prod(zs))
        if zs == out_shape and (z.name in consts or ctx.perm(z.name) == perm):
            form = "full"
        elif zsize == 1:
            form = "scalar"
        elif zsize == cols and dims.only_axis(zs, len(out_shape), perm[-1] if perm else 0):
            form = "channel"
        elif z.name not in consts and len(zs) == len(out_shape) and perm and perm[0] == 0 and \
                zs[0] == out_shape[0] and zsize == zs[0] * cols and \
                dims.only_axis(zs[1:], len(out_shape) - 1, perm[-1] - 1):
            return batched_channel(ctx, x, z, rows, cols)   # e.g. squeeze-excite x * s[N,C,1,1]
        else:
            return numpy_form(ctx)
        if z.name in consts:
            zc = consts[z.name]
            zc = np.transpose(np.broadcast_to(zc, out_shape), perm) if form == "full" else zc
            zslot = ctx.constant_slot(f"{unit.name}:{z.name}", np.ascontiguousarray(zc).reshape(-1))
        else:
            zslot = ctx.slot(z.name)
        mx, mz = multipliers(x, z)
        return [K.binary_step(unit.name, "mul" if self.op_type == "Mul" else "add", rows, cols,
                              ctx.slot(x.name), zslot, ctx.slot(y.name), form,
                              a_zp=x.zero_point, b_zp=z.zero_point, y_zp=y.zero_point,
                              a_mult=float(mx), b_mult=float(mz), qmin=qmin, qmax=qmax)]

    layouts = {}
    if len(reads) == 2:
        layouts[reads[1]] = "same_as:" + reads[0]
    k = Kernel(reads, [y.name], make_steps, layouts=layouts, label=self.op_type.lower(),
               unit=unit)
    if self.op_type == "Add" and len(consts) == 1:
        # a constant that varies along the last axis only: the 'channel' form wherever the
        # activation keeps its logical layout, as a GEMM's output does (lowering's bias fusion)
        x = a if b.name in consts else b
        z = b if x is a else a
        zc = consts[z.name]
        if zc.ndim >= 1 and zc.shape[-1] > 1 and all(d == 1 for d in zc.shape[:-1]):
            mx, mz = multipliers(x, z)
            k.row_add = {"values": np.ascontiguousarray(zc.reshape(-1)),
                         "a_zp": x.zero_point, "b_zp": z.zero_point, "y_zp": y.zero_point,
                         "a_mult": float(mx), "b_mult": float(mz), "qmin": qmin, "qmax": qmax}
    return k


def ctx_shape(ctx, t, consts):
    return tuple(consts[t.name].shape) if t.name in consts else ctx.shape(t.name)


Arith.lower_int8 = _arith_lower_int8


# ---- native lowering (runtime/lowering.py: lower_native) ----------------------------------------
_SCALAR_FORMS = {("Mul", 0): "mul", ("Mul", 1): "mul", ("Add", 0): "add", ("Add", 1): "add",
                 ("Sub", 1): "sub", ("Sub", 0): "rsub", ("Div", 1): "div", ("Div", 0): "rdiv"}


def _arith_lower_native(self, node, graph, cache):
    """A float32 Add/Sub/Mul/Div of an activation and a one-element float32 constant (attention's
    scale by 1 / sqrt(d)) as the C kernel: the same IEEE operation per element as numpy."""
    from .. import _kernels as K
    from .int8 import Kernel

    if self.legacy_axis is not None or len(node.inputs) != 2:
        return None
    consts = [i in graph.initializers for i in node.inputs]
    if consts.count(True) != 1:
        return None
    ci = consts.index(True)                     # the constant's position
    c = np.asarray(graph.initializers[node.inputs[ci]])
    x_name, y_name = node.inputs[1 - ci], node.outputs[0]
    xv, yv = graph.value(x_name), graph.value(y_name)
    if c.dtype != np.float32 or c.size != 1 or xv.dtype != np.float32 or \
            not xv.is_static or xv.shape is None or yv.shape is None or \
            tuple(xv.shape) != tuple(yv.shape):
        return None
    form, value = _SCALAR_FORMS[(self.op_type, ci)], float(c.reshape(()))
    n = int(np.prod(xv.shape, dtype=np.int64))

    def make_steps(ctx):
        if n == 0:
            return []
        return [K.scalar_f32_step(node.name, n, ctx.slot(x_name), ctx.slot(y_name), form, value,
                                  self.op_type)]

    return Kernel([x_name], [y_name], make_steps, layouts={x_name: "identity"},
                  out_perm=lambda perms, ctx: "identity",
                  label=f"float {self.op_type.lower()} by a constant (C)", precision="float")


Arith.lower_native = _arith_lower_native
