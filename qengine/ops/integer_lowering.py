"""Native lowerings of the integer ops (ops/integer.py), called by runtime/lowering.py through
`lower_native(node, graph, cache)` on the concrete graph of one input shape.

Each returns an ops.int8.Kernel over raw graph tensors, or None (the node then runs its exact
numpy reference). Conventions the kernels need, handled here:
- int8 activations are flipped to uint8 (x ^ 0x80) into a scratch tensor, their zero point +128;
- uint8 weights are shifted to int8 (w - 128), their zero points alike;
- a zero point that is a tensor (DynamicQuantizeLinear's output) is read by the step at each
  run (gemm_step / conv_step a_zp_from), as are float-epilogue scales (scale_from).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _kernels as K
from ..errors import InputError
from .int8 import NHWC, Kernel

__all__ = ["matmul_integer_native", "conv_integer_native", "dynamic_quantize_native",
           "float_epilogue"]

_INT8 = (np.dtype(np.uint8), np.dtype(np.int8))
_FLIP = (np.arange(256) ^ 0x80).astype(np.uint8)


# ---- small helpers ------------------------------------------------------------------------------
def _shape(g, name) -> Optional[tuple]:
    v = g.value(name)
    return tuple(v.shape) if v.is_static else None


def _dtype(g, name) -> Optional[np.dtype]:
    v = g.value(name)
    return np.dtype(v.dtype) if v.dtype is not None else None


def _scalar_shape(shape) -> bool:
    return shape is not None and int(np.prod(shape)) == 1


def _activation_zp(g, name: str, signed: bool):
    """A scalar zero point of an activation as the kernels take it (uint8 storage): ('const',
    value) or ('tensor', name); None when it is not a scalar (per-row: the reference runs)."""
    if not name:
        return ("const", 128 if signed else 0)
    if name in g.initializers:
        z = g.initializers[name]
        return ("const", int(z.reshape(-1)[0]) + (128 if signed else 0)) if z.size == 1 else None
    return ("tensor", name) if _scalar_shape(_shape(g, name)) else None


def _weight_int8(w: np.ndarray, zp: Optional[np.ndarray], n: int, axis: int):
    """(int8 weights, int32 zero points per output channel or None) for weights whose output
    channels (n of them) run along `axis`; uint8 weights shift by -128 with their zero points.
    None when the zero point is neither a scalar nor one value per channel."""
    if w.dtype not in _INT8:
        return None
    shift = 128 if w.dtype == np.uint8 else 0
    wv = (w.astype(np.int16) - shift).astype(np.int8) if shift else w
    if zp is None:
        z = np.zeros(n, np.int32)
    elif zp.size == 1:
        z = np.full(n, int(zp.reshape(-1)[0]), np.int32)
    elif zp.size == n and zp.shape[-1 if axis else 0] == n and zp.ndim <= 2:
        z = zp.reshape(-1).astype(np.int32)
    else:
        return None
    z = z - shift
    return wv, (z if z.any() else None)


def _per_channel(shape, out_shape, axis: int, n: int) -> bool:
    """True when a tensor of `shape` broadcasts to `out_shape` without growing it and holds one
    value, or one value per channel along `axis` (n channels)."""
    if shape is None or len(shape) > len(out_shape):
        return False
    full = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    size = int(np.prod(full))
    if size == 1:
        return True
    return size == n and full[axis] == n


def _constant_operand(g, node, x: str, dtype, out_shape, axis: int, n: int):
    """The other operand of a binary node reading x, as n per-channel values, when it is a
    constant of `dtype` that does not grow the output; else None."""
    if node is None or len(node.inputs) != 2 or _shape(g, node.outputs[0]) != out_shape:
        return None
    c = node.inputs[1] if node.inputs[0] == x else node.inputs[0]
    cv = g.initializers.get(c)
    if cv is None or cv.dtype != dtype or not _per_channel(cv.shape, out_shape, axis, n):
        return None
    return np.array(np.broadcast_to(cv.reshape(-1), (n,)), dtype)


def float_epilogue(g, acc: str, out_shape: tuple, axis: int, n: int):
    """The float epilogue written after an integer op -- by onnxruntime's quantize_dynamic:
    acc -> Cast(to=float) -> Mul(s) [-> Add(constant float bias)]; by the QOperator import
    for QGemm's float output: acc -> Add(constant int32 bias) -> Cast -> Mul(s) -- with s and
    the biases one value or one per output channel. Returns (nodes, scale, fbias, output name,
    int32 bias) where scale is ('const', float32 array) or ('tensor', name, count); None when
    the pattern is not there."""
    readers = g.consumers_map()
    outputs = set(g.output_names)

    def sole(name):
        r = readers.get(name, [])
        ok = len(r) == 1 and name not in outputs and r[0].inputs.count(name) == 1
        return r[0] if ok and r[0].domain == "" else None

    nodes, ibias = [], None
    first = sole(acc)
    if first is not None and first.op_type == "Add":
        ibias = _constant_operand(g, first, acc, np.int32, out_shape, axis, n)
        if ibias is None:
            return None
        nodes.append(first)
        acc = first.outputs[0]
    cast = sole(acc)
    if cast is None or cast.op_type != "Cast" or int(cast.attrs.get("to", 0)) != 1:
        return None
    mul = sole(cast.outputs[0])
    if mul is None or mul.op_type != "Mul" or len(mul.inputs) != 2:
        return None
    s = mul.inputs[1] if mul.inputs[0] == cast.outputs[0] else mul.inputs[0]
    if _dtype(g, s) != np.float32 or not _per_channel(_shape(g, s), out_shape, axis, n) or \
            _shape(g, mul.outputs[0]) != out_shape:
        return None
    if s in g.initializers:
        sv = g.initializers[s].reshape(-1).astype(np.float32)
        if not (np.all(np.isfinite(sv)) and np.all(sv >= 0)):
            return None
        scale = ("const", sv)
    else:
        scale = ("tensor", s, int(np.prod(_shape(g, s))))
    nodes += [cast, mul]
    out = mul.outputs[0]
    add = sole(out)
    fbias = _constant_operand(g, add, out, np.float32, out_shape, axis, n) \
        if add is not None and add.op_type == "Add" else None
    if fbias is not None:
        nodes.append(add)
        out = add.outputs[0]
    return nodes, scale, fbias, out, ibias


def _scratch(g, base: str, shape: tuple) -> str:
    """A fresh uint8 tensor (arena memory) for an int8 input flipped to uint8."""
    name = g.unique_name(base)
    g.set_value(name, shape, np.uint8)
    return name


def _output_kwargs(ctx, epi, zp):
    """gemm_step / conv_step keyword arguments for the output kind and run-time parameters."""
    kw = {}
    if zp[0] == "tensor":
        kw["a_zp_from"] = ctx.slot(zp[1]) + (zp[2],)
    if epi is None:
        kw["out"] = "i32"
        return kw
    _, scale, fbias, _, ibias = epi
    kw.update(out="f32", fbias=fbias, bias=ibias)
    if scale[0] == "const":
        kw["scale"] = scale[1]
    else:
        kw["scale_from"] = ctx.slot(scale[1]) + (scale[2],)
    return kw


def _kernel(node, reads, writes, make_steps, epi, layouts, out_perm, label, nbytes=0):
    k = Kernel([r for r in dict.fromkeys(reads) if r], writes, make_steps, layouts=layouts,
               out_perm=out_perm, label=label, node=node, nbytes=nbytes)
    if epi is not None:
        k.fused_nodes = list(epi[0])
    return k


# ---- MatMulInteger ----------------------------------------------------------------------------
def matmul_integer_native(self, node, g, cache) -> Optional[Kernel]:
    a, b = node.inputs[0], node.inputs[1]
    azp_name, bzp_name = node.input(2), node.input(3)
    sa, sb, y = _shape(g, a), _shape(g, b), node.outputs[0]
    sy = _shape(g, y)
    at = _dtype(g, a)
    if sa is None or sb is None or sy is None or at not in _INT8 or 0 in sa or 0 in sb:
        return None
    if b not in g.initializers:
        return _matmul_runtime_b(self, node, g)
    B = g.initializers[b]
    if B.ndim != 2 or sa[-1] != B.shape[0] or B.shape[0] > K.MAX_K:
        return None
    if bzp_name and bzp_name not in g.initializers:
        return None
    signed = at == np.int8
    zp = _activation_zp(g, azp_name, signed)
    wq = _weight_int8(B, g.initializers.get(bzp_name) if bzp_name else None, B.shape[1], 1)
    if zp is None or wq is None:
        return None
    kn, b_zp = wq
    N = kn.shape[1]
    rows = int(np.prod(sa[:-1]))
    epi = float_epilogue(g, y, sy, len(sy) - 1, N)
    out = epi[3] if epi is not None else y
    if zp[0] == "tensor":
        zp = zp + (signed,)
    src = _scratch(g, f"{node.name}_a_u8", sa) if signed else a

    def make_steps(ctx):
        key = ("gemm", K.get_isa())
        if key not in cache:
            cache[key] = K.GemmPacked(kn)
        steps = []
        if signed:
            steps.append(K.lut_step(f"{node.name}:a_u8", rows * sa[-1], ctx.slot(a),
                                    ctx.slot(src), _FLIP, "SignFlip"))
        static_zp = zp[1] if zp[0] == "const" else 0
        steps.append(K.gemm_step(node.name, cache[key], rows, ctx.slot(src), ctx.slot(out),
                                 static_zp, b_zp=b_zp, op="MatMulInteger",
                                 **_output_kwargs(ctx, epi, zp)))
        return steps

    reads = [a, zp[1] if zp[0] == "tensor" else None]
    if epi is not None and epi[1][0] == "tensor":
        reads.append(epi[1][1])
    layouts = {r: "identity" for r in reads if r}
    label = "gemm " + ("f32 epilogue" if epi is not None else "i32")
    return _kernel(node, reads, [out] + ([src] if signed else []), make_steps, epi, layouts,
                   lambda perms, ctx: "identity", label, int(kn.nbytes))


def _matmul_runtime_b(self, node, g) -> Kernel:
    """B is a run-time tensor: each batch matrix is packed at every run (the GEMM kernels with
    out='i32'); zero points of other forms, or K beyond the kernels' bound, use the reference."""
    names = [node.inputs[0], node.inputs[1], node.input(2), node.input(3)]
    y = node.outputs[0]
    reads = [n for n in names if n and n not in g.initializers]

    def make_steps(ctx):
        get = [(lambda views, c=g.initializers[n]: c) if n in g.initializers else
               (lambda views, s=ctx.slot(n)[0]: views[s]) if n else (lambda views: None)
               for n in names]
        iy, sy = ctx.slot(y)[0], ctx.shape(y)

        def fn(views):
            a, b, azp, bzp = (f(views) for f in get)
            res = _matmul_packed_per_run(a, b, azp, bzp, sy)
            if res is None:
                res = self.run(a, b, azp, bzp)[0]
            np.copyto(views[iy], res.reshape(sy))
        return [K.PyStep(node.name, "MatMulInteger", fn)]

    return Kernel(reads, [y], make_steps, layouts={r: "identity" for r in reads},
                  out_perm=lambda perms, ctx: "identity", label="gemm i32 (B packed per run)",
                  node=node)


def _matmul_packed_per_run(a, b, azp, bzp, out_shape):
    """MatMulInteger on the GEMM kernels with B packed now; None when a zero point is not of
    the forms the kernels take (per-row A zero points) or K exceeds their bound."""
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] > K.MAX_K:
        return None
    if azp is not None and azp.size != 1:
        return None
    za = 0 if azp is None else int(azp.reshape(-1)[0])
    if a.dtype == np.int8:
        a, za = a.view(np.uint8) ^ np.uint8(0x80), za + 128
    n = b.shape[-1]
    batch = tuple(out_shape[:-2])
    zb = np.zeros((1, n), np.int64) if bzp is None else np.asarray(bzp, np.int64)
    if zb.size != 1 and zb.shape[-1] != n or (zb.ndim >= 2 and zb.shape[-2] != 1):
        return None
    try:
        zb = np.broadcast_to(zb.reshape((1,) * max(0, 2 - zb.ndim) + zb.shape),
                             batch + (1, n)).reshape(-1, n)
    except ValueError:
        return None
    A = np.broadcast_to(a, batch + a.shape[-2:]).reshape(-1, *a.shape[-2:])
    B = np.broadcast_to(b, batch + b.shape[-2:]).reshape(-1, *b.shape[-2:])
    u8 = b.dtype == np.uint8
    out = np.empty((A.shape[0], a.shape[-2], n), np.int32)
    for i in range(A.shape[0]):
        packed = K.GemmPacked(np.ascontiguousarray(B[i]), b_is_u8=u8)
        K.gemm_u8s8(packed, np.ascontiguousarray(A[i]), za, out="i32",
                    b_zp=(zb[i] - (128 if u8 else 0)).astype(np.int32), c=out[i])
    return out


# ---- ConvInteger ------------------------------------------------------------------------------
def conv_integer_native(self, node, g, cache) -> Optional[Kernel]:
    x, w = node.inputs[0], node.inputs[1]
    xzp_name, wzp_name = node.input(2), node.input(3)
    sx, y = _shape(g, x), node.outputs[0]
    sy = _shape(g, y)
    xt = _dtype(g, x)
    if sx is None or sy is None or xt not in _INT8 or len(sx) not in (3, 4) or 0 in sx:
        return None
    signed = xt == np.int8
    zp = _activation_zp(g, xzp_name, signed)
    if zp is None:
        return None
    if w not in g.initializers or (wzp_name and wzp_name not in g.initializers):
        return _conv_runtime_w(self, node, g, zp, signed)
    W = g.initializers[w]
    wq = _weight_int8(W, g.initializers.get(wzp_name) if wzp_name else None, W.shape[0], 0)
    if W.ndim != len(sx) or wq is None:
        return None
    wv, w_zp = wq
    ohwi = np.ascontiguousarray(wv.transpose(0, 2, 3, 1) if wv.ndim == 4 else
                                wv.transpose(0, 2, 1)[:, None])
    if int(np.prod(ohwi.shape[1:])) > K.MAX_K:
        return None
    M = W.shape[0]
    epi = float_epilogue(g, y, sy, 1, M)
    out = epi[3] if epi is not None else y
    if zp[0] == "tensor":
        zp = zp + (signed,)
    layout = NHWC if len(sx) == 4 else (0, 2, 1)
    src = _scratch(g, f"{node.name}_x_u8", sx) if signed else x
    geometry = _conv_geometry(self, sx, W.shape)

    def make_steps(ctx):
        sp, pads, strides, dilations = geometry
        key = ("conv", pads, strides, dilations, K.get_isa())
        if key not in cache:
            cache[key] = K.ConvPacked(ohwi, strides=strides, dilations=dilations, pads=pads,
                                      groups=self.group)
        steps = []
        if signed:
            steps.append(K.lut_step(f"{node.name}:x_u8", int(np.prod(sx)), ctx.slot(x),
                                    ctx.slot(src), _FLIP, "SignFlip"))
        kw = _output_kwargs(ctx, epi, zp)
        if "a_zp_from" in kw:
            kw["x_zp_from"] = kw.pop("a_zp_from")
        steps.append(K.conv_step(node.name, cache[key], sx[0], sp[0], sp[1], ctx.slot(src),
                                 ctx.slot(out), zp[1] if zp[0] == "const" else 0, w_zp=w_zp,
                                 **kw))
        return steps

    reads = [x, zp[1] if zp[0] == "tensor" else None]
    layouts = {x: layout}
    if epi is not None and epi[1][0] == "tensor":
        reads.append(epi[1][1])
        layouts[epi[1][1]] = "identity"
    label = "conv " + ("f32 epilogue" if epi is not None else "i32")
    return _kernel(node, reads, [out] + ([src] if signed else []), make_steps, epi, layouts,
                   lambda perms, ctx: layout, label, int(ohwi.nbytes))


def _conv_geometry(op, sx, wshape):
    """(spatial (h, w), pads (top, left, bottom, right), strides, dilations) for the kernels;
    1-D convolutions run as 2-D with height 1."""
    from .spatial import forward_geometry
    r = len(sx) - 2
    k, s, d, _ = op.window.resolved(r, list(wshape[2:]))
    _, pb, pe = forward_geometry(op.window, sx[2:], k)
    if r == 1:
        return (1, sx[2]), (0, pb[0], 0, pe[0]), (1, s[0]), (1, d[0])
    return tuple(sx[2:]), (pb[0], pb[1], pe[0], pe[1]), tuple(s), tuple(d)


def _conv_runtime_w(self, node, g, zp, signed) -> Kernel:
    """W (or its zero point) is a run-time tensor: packed at every run; weight zero points of
    other forms use the reference."""
    names = [node.inputs[0], node.inputs[1], node.input(2), node.input(3)]
    y = node.outputs[0]
    reads = [n for n in names if n and n not in g.initializers]
    sx, sy = _shape(g, names[0]), _shape(g, y)
    geometry = _conv_geometry(self, sx, _shape(g, names[1]))

    def make_steps(ctx):
        get = [(lambda views, c=g.initializers[n]: c) if n in g.initializers else
               (lambda views, s=ctx.slot(n)[0]: views[s]) if n else (lambda views: None)
               for n in names]
        iy = ctx.slot(y)[0]

        def fn(views):
            x, w, xzp, wzp = (f(views) for f in get)
            res = None
            wq = _weight_int8(w, wzp, w.shape[0], 0)
            ohwi = None if wq is None else (wq[0].transpose(0, 2, 3, 1) if w.ndim == 4 else
                                            wq[0].transpose(0, 2, 1)[:, None])
            if ohwi is not None and int(np.prod(ohwi.shape[1:])) <= K.MAX_K:
                sp, pads, strides, dilations = geometry
                p = K.ConvPacked(np.ascontiguousarray(ohwi), strides=strides,
                                 dilations=dilations, pads=pads, groups=self.group)
                xs = x.view(np.uint8) ^ np.uint8(0x80) if signed else x
                za = 0 if xzp is None else int(xzp.reshape(-1)[0]) + (128 if signed else 0)
                xn = xs.reshape(sx[0], sx[1], *sp).transpose(0, 2, 3, 1)
                res = K.conv_u8s8(p, np.ascontiguousarray(xn), za, out="i32", w_zp=wq[1])
                res = res.transpose(0, 3, 1, 2)
            if res is None:
                res = self.run(x, w, xzp, wzp)[0]
            np.copyto(views[iy], res.reshape(sy))
        return [K.PyStep(node.name, "ConvInteger", fn)]

    return Kernel(reads, [y], make_steps, layouts={r: "identity" for r in reads},
                  out_perm=lambda perms, ctx: "identity", label="conv i32 (W packed per run)",
                  node=node)


# ---- DynamicQuantizeLinear ----------------------------------------------------------------------
def dynamic_quantize_native(self, node, g, cache) -> Optional[Kernel]:
    """min/max, scale and zero point in numpy (float32, the spec's order), then the quantize
    kernel; y keeps x's physical layout (element-wise)."""
    from .integer import dynamic_qparams
    x = node.inputs[0]
    outs = list(node.outputs) + [""] * (3 - len(node.outputs))
    y, ys, yz = outs[:3]
    if _dtype(g, x) != np.float32 or _shape(g, x) is None:
        return None

    def make_steps(ctx):
        ix, iy = ctx.slot(x)[0], ctx.slot(y)[0]
        i_s = ctx.slot(ys)[0] if ys else None
        i_z = ctx.slot(yz)[0] if yz else None

        def fn(views):
            xv = views[ix]
            try:
                scale, zp = dynamic_qparams(xv)
            except InputError as e:
                raise InputError(f"node {node.name!r}: {e}") from None
            K.quantize(xv.reshape(-1), float(scale), int(zp), y=views[iy].reshape(-1))
            if i_s is not None:
                views[i_s][...] = scale
            if i_z is not None:
                views[i_z][...] = zp
        return [K.PyStep(node.name, "DynamicQuantizeLinear", fn)]

    return Kernel([x], [o for o in (y, ys, yz) if o], make_steps, label="dynamic quantize",
                  node=node)
