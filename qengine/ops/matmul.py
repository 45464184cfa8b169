"""MatMul, Gemm and Einsum: numpy matmul / einsum, which call BLAS for float32 and float64."""
from __future__ import annotations

import re

import numpy as np

from . import dims
from .registry import Op, register


def matmul_shape(a, b):
    """numpy.matmul's shape rule with symbolic dims; ValueError when K differs."""
    if a is None or b is None:
        return None
    if len(a) == 0 or len(b) == 0:
        raise ValueError("MatMul inputs must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    ka, kb = a2[-1], b2[-2]
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
        raise ValueError(f"inner dimensions differ: {list(a)} x {list(b)}")
    batch = dims.broadcast(a2[:-2], b2[:-2])
    out = tuple(batch) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


@register("MatMul")
class MatMul(Op):
    int8_role = "compute"
    int8_float_output = True

    n_inputs = (2, 2)

    def infer(self, ins, consts):
        try:
            return [(matmul_shape(ins[0].shape, ins[1].shape), ins[0].dtype)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, a, b):
        if a.dtype == np.float16:   # numpy has no fp16 BLAS: accumulate in float32
            return (np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype),)
        return (np.asarray(np.matmul(a, b)),)


@register("Gemm")
class Gemm(Op):
    """Y = alpha * A' B' + beta * C with A' = A or A^T (transA), likewise B; C broadcasts."""
    int8_role = "compute"
    int8_float_output = True

    n_inputs = (2, 3)

    def parse(self, a):
        self.alpha = a.float("alpha", 1.0)
        self.beta = a.float("beta", 1.0)
        self.ta = a.int("transA", 0)
        self.tb = a.int("transB", 0)

    def infer(self, ins, consts):
        a, b = ins[0].shape, ins[1].shape
        for what, s in (("A", a), ("B", b)):
            if s is not None and len(s) != 2:
                raise self.error(f"{what} must be 2-D, got {list(s)}")
        M = None if a is None else a[1 if self.ta else 0]
        N = None if b is None else b[0 if self.tb else 1]
        if a is not None and b is not None:
            ka, kb = a[0 if self.ta else 1], b[1 if self.tb else 0]
            if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
                raise self.error(f"inner dimensions differ: A {list(a)} (transA={self.ta}) x "
                                 f"B {list(b)} (transB={self.tb})")
        c = ins[2].shape if len(ins) > 2 and ins[2] is not None else None
        if c is not None and (len(c) > 2 or any(
                isinstance(cd, int) and isinstance(t, int) and cd not in (1, t)
                for cd, t in zip(reversed(c), (N, M)))):
            raise self.error(f"C {list(c)} does not broadcast to ({M}, {N})")
        return [((M, N), ins[0].dtype)]

    def run(self, a, b, c=None):
        if self.ta:
            a = a.T
        if self.tb:
            b = b.T
        y = a @ b
        if self.alpha != 1.0:
            y = y * self.alpha
        if c is not None and self.beta != 0.0:
            y = y + (c * self.beta if self.beta != 1.0 else c)
        return (y.astype(a.dtype, copy=False),)


_EINSUM_OK = re.compile(r"^[A-Za-z.,\s>\-]*$")


@register("Einsum")
class Einsum(Op):
    """numpy.einsum with the path optimiser (pairwise contractions through BLAS)."""

    n_inputs = (1, None)

    def parse(self, a):
        eq = a.str("equation")
        if not _EINSUM_OK.match(eq) or eq.count("->") > 1:
            raise self.error(f"malformed einsum equation {eq!r}")
        self.eq = eq.replace(" ", "")
        lhs = self.eq.split("->")[0]
        if lhs.count(",") + 1 != len(self.node.inputs):
            raise self.error(f"equation {eq!r} names {lhs.count(',') + 1} operands, the node "
                             f"has {len(self.node.inputs)} inputs")

    def infer(self, ins, consts):
        shapes = [v.shape for v in ins]
        if any(s is None for s in shapes):
            return [(None, ins[0].dtype)]
        try:
            return [(einsum_shape(self.eq, shapes), ins[0].dtype)]
        except ValueError as e:
            raise self.error(f"equation {self.eq!r} does not fit inputs {shapes}: {e}") from None

    def run(self, *xs):
        return (np.asarray(np.einsum(self.eq, *xs, optimize=len(xs) > 1), dtype=xs[0].dtype),)


def einsum_shape(eq: str, shapes) -> tuple:
    """Output shape of einsum ``eq`` (spaces removed) on operand shapes (symbolic dims ok)."""
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    size: dict = {}
    ell = []
    for term, shp in zip(terms, shapes):
        head, has_ell, tail = term.partition("...")
        if not has_ell and len(term) != len(shp):
            raise ValueError(f"term {term!r} has {len(term)} letters for rank {len(shp)}")
        if has_ell and len(head) + len(tail) > len(shp):
            raise ValueError(f"term {term!r} needs rank >= {len(head) + len(tail)}")
        n_ell = len(shp) - len(head) - len(tail)
        ell.append(tuple(shp[len(head):len(head) + n_ell]) if has_ell else ())
        for ch, d in list(zip(head, shp)) + list(zip(tail, shp[len(shp) - len(tail):])):
            size[ch] = dims.bcast_dim(size[ch], d) if ch in size else d
    bdims = dims.broadcast(*ell) if ell else ()
    if not arrow:   # implicit output: the ellipsis, then letters used once, sorted
        once = sorted(ch for ch in set(lhs) if ch.isalpha() and lhs.count(ch) == 1)
        rhs = "..." + "".join(once)
    head, has_ell, tail = rhs.partition("...")
    for ch in head + tail:
        if ch not in size:
            raise ValueError(f"output letter {ch!r} appears in no input")
    return tuple(size[c] for c in head) + (tuple(bdims) if has_ell else ()) + \
        tuple(size[c] for c in tail)


# ---- int8 lowering (ops/int8.py) ------------------------------------------------------------------
def _gemm_kernel(unit, a, b_values, b_axis, bias_operand, y, alpha=1.0):
    """Rows of a (QTensor, flattened to [rows, K]) times constant int8 weights b_values [K, N]
    (or [N, K] when b_axis == 0: a transposed view) into y (QTensor, or FloatOut)."""
    from .. import _kernels as K
    from .int8 import Kernel, QConst, bias_int32, output_args, weight_int8

    if alpha != 1.0 or not isinstance(b_values, QConst) or b_values.values.ndim != 2:
        return None
    wq = weight_int8(b_values, b_axis)   # the output-channel axis
    if wq is None:
        return None
    wv, w_zp, s_w = wq
    kn = wv.T if b_axis == 0 else wv          # [K, N]
    if kn.shape[0] > K.MAX_K:
        return None
    out_args = output_args(unit, a.scale, s_w, y)
    if out_args is None:
        return None
    bias = bias_int32(bias_operand, a.scale, s_w)
    cache = unit.cache

    def steps_into(dst, op, row_add):
        def make_steps(ctx):
            key = ("gemm", K.get_isa())
            if key not in cache:
                cache[key] = K.GemmPacked(kn)
            shape = ctx.shape(a.name)
            rows = int(np.prod(shape[:-1]))
            if rows == 0:
                return []
            return [K.gemm_step(unit.name, cache[key], rows, ctx.slot(a.name), ctx.slot(dst),
                                a.zero_point, bias=bias, b_zp=w_zp, op=op, row_add=row_add,
                                **out_args)]
        return make_steps

    def with_row_add(row_add, dst):
        """This GEMM with a bias Add after it in its tasks (lowering's bias fusion)."""
        if row_add["values"].shape != (kn.shape[1],):
            return None
        return kernel(dst, f"{unit.node.op_type}+Add", row_add)

    def kernel(dst, op, row_add=None):
        k = Kernel([a.name], [dst], steps_into(dst, op, row_add),
                   layouts={a.name: "identity"}, out_perm=lambda perms, ctx: "identity",
                   label="gemm+add" if row_add else "gemm", unit=unit, nbytes=int(kn.nbytes))
        if out_args["out"] == "u8" and row_add is None:
            k.with_row_add = with_row_add
        return k

    return kernel(y.name, unit.node.op_type)


# At most this many steps for one activation MatMul whose batch the kernel cannot walk with
# one stride per operand (one step per index of the outer batch axes); beyond, the numpy loop.
_MAX_MATMUL_STEPS = 256


def _activation_matmul(unit, a, b, y):
    """MatMul of two quantized activations: B's codes are packed at each run (shifted to int8
    with its zero point) and multiplied per batch matrix; the output is requantized, or
    dequantized (FloatOut) with the scale s_a * s_b. The operands are read in place, in the
    layout their producers left (attention's heads interleaved in a row, a key matrix before
    its Transpose), when A's rows and B's rows or columns are contiguous; else they are copied
    to the logical layout first."""
    from .. import _kernels as K
    from .int8 import Kernel, identity, output_args

    out_args = output_args(unit, a.scale, np.array([b.scale], np.float32), y)
    if out_args is None:
        return None
    out_args["scale"] = out_args["scale"][0]

    def layout(name, b_side):
        def want(ctx, have):
            _, rows, cols = _operand_strides(ctx.shape(name), have, ctx.shape(y.name))
            return have if cols == 1 or (b_side and rows == 1) else identity(len(have))
        return want

    def make_steps(ctx):
        sa, sb, so = ctx.shape(a.name), ctx.shape(b.name), ctx.shape(y.name)
        if len(sa) < 2 or len(sb) < 2 or sa[-1] > K.MAX_K:
            raise ValueError("matmul operands must be at least 2-D")
        M, Kd, N = sa[-2], sa[-1], sb[-1]
        if int(np.prod(so, dtype=np.int64)) == 0:
            return []
        pa, pb = ctx.perm(a.name), ctx.perm(b.name)
        wa, lda, _ = _operand_strides(sa, pa, so)
        wb, rb, cb = _operand_strides(sb, pb, so)
        wc = _operand_strides(so, identity(len(so)), so)[0]
        b_trans = cb != 1
        split = _linear_suffix(so[:-2], (wa, wb, wc))
        outer = int(np.prod(so[:split], dtype=np.int64))
        if Kd > 0 and outer <= _MAX_MATMUL_STEPS:
            inner = int(np.prod(so[split:-2], dtype=np.int64))
            step = [_inner_stride(so[split:-2], w[split:]) for w in (wa, wb, wc)]
            slot_a, slot_b, slot_c = ctx.slot(a.name), ctx.slot(b.name), ctx.slot(y.name)
            elem = 1 if out_args["out"] == "u8" else 4     # C's offsets are in elements
            steps = []
            for idx in np.ndindex(*so[:split]):
                offs = [sum(i * st for i, st in zip(idx, w[:split])) for w in (wa, wb, wc)]
                steps.append(K.matmul_u8u8_step(
                    unit.name, inner, M, Kd, N, (slot_a[0], slot_a[1] + offs[0]), step[0],
                    (slot_b[0], slot_b[1] + offs[1]), step[1],
                    (slot_c[0], slot_c[1] + offs[2] * elem), a.zero_point, b.zero_point,
                    lda=lda, ldb=cb if b_trans else rb, b_trans=b_trans, c_stride=step[2],
                    **out_args))
            return steps
        ia, ib, io = ctx.slot(a.name)[0], ctx.slot(b.name)[0], ctx.slot(y.name)[0]
        ua, ub = np.argsort(pa), np.argsort(pb)     # physical -> logical axis order

        def fn(views):
            av, bv, ov = views[ia].transpose(ua), views[ib].transpose(ub), views[io]
            batch = so[:-2]
            A = np.broadcast_to(av, batch + sa[-2:]).reshape(-1, *sa[-2:])
            B = np.broadcast_to(bv, batch + sb[-2:]).reshape(-1, *sb[-2:])
            O = ov.reshape(-1, *so[-2:])
            for i in range(O.shape[0]):
                packed = K.GemmPacked(np.ascontiguousarray(B[i]), b_is_u8=True)
                K.gemm_u8s8(packed, np.ascontiguousarray(A[i]), a.zero_point,
                            b_zp=b.zero_point - 128, c=O[i], **out_args)
        return [K.PyStep(unit.name, "MatMul", fn)]

    return Kernel([a.name, b.name], [y.name], make_steps,
                  layouts={a.name: layout(a.name, False), b.name: layout(b.name, True)},
                  out_perm=lambda perms, ctx: "identity", label="matmul u8 x u8", unit=unit)


def _operand_strides(shape, perm, out_shape):
    """(per output batch axis stride, row stride, column stride), in elements, of a MatMul
    operand of logical shape `shape` stored as logical.transpose(perm); a batch axis the
    operand broadcasts (absent, or of size 1) has stride 0."""
    shape, perm = tuple(shape), tuple(perm)
    step, strides = 1, [0] * len(shape)
    for k in reversed(range(len(perm))):
        strides[perm[k]] = step
        step *= shape[perm[k]]
    nb = len(out_shape) - 2
    batch = [0] * (nb - (len(shape) - 2)) + [st if n != 1 else 0 for n, st in
                                              zip(shape[:-2], strides[:-2])]
    return batch, strides[-2], strides[-1]


def _linear_suffix(out_batch, walks) -> int:
    """The first output batch axis from which every operand's strides (walks) nest like a C
    array (size-1 axes aside): the batch from there on is one loop with one stride each."""
    split = len(out_batch)
    inner = {i: None for i in range(len(walks))}     # per walk: the stride of the axis inside
    inner_n = None
    for d in reversed(range(len(out_batch))):
        if out_batch[d] == 1:
            split = d
            continue
        for i, w in enumerate(walks):
            if inner_n is not None and w[d] != inner[i] * inner_n:
                return split
        for i, w in enumerate(walks):
            inner[i] = w[d]
        inner_n = out_batch[d]
        split = d
    return split


def _inner_stride(batch, walk) -> int:
    """The stride of the innermost axis of size > 1 in `batch` (0: a single matrix)."""
    for n, st in zip(reversed(batch), reversed(walk)):
        if n != 1:
            return st
    return 0


def _matmul_lower_int8(self, unit):
    from .int8 import QTensor
    a, b = unit.inputs[0], unit.inputs[1]
    y = unit.outputs[0]
    if not isinstance(a, QTensor):
        return None
    if isinstance(b, QTensor):
        return _activation_matmul(unit, a, b, y)
    return _gemm_kernel(unit, a, b, 1, None, y)


def _gemm_lower_int8(self, unit):
    from .int8 import QTensor
    a, b = unit.inputs[0], unit.inputs[1]
    c = unit.inputs[2] if len(unit.inputs) > 2 else None
    y = unit.outputs[0]
    if not isinstance(a, QTensor) or self.ta or (c is not None and self.beta != 1.0):
        return None
    if isinstance(b, QTensor):
        return None if c is not None or self.tb or self.alpha != 1.0 else \
            _activation_matmul(unit, a, b, y)
    return _gemm_kernel(unit, a, b, 0 if self.tb else 1, c, y, self.alpha)


MatMul.lower_int8 = _matmul_lower_int8
Gemm.lower_int8 = _gemm_lower_int8
