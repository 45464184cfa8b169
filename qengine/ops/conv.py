"""Conv and ConvTranspose (N-D, NCHW, groups, dilations, pads, auto_pad) through BLAS.

Conv: the padded input is viewed as im2col windows (no copy), gathered once into a
(pixels x C*K) matrix and multiplied by the weights with numpy matmul (BLAS sgemm).
Depthwise convolutions (one input channel per group) instead accumulate one shifted view per
kernel tap: K whole-tensor multiply-adds, no per-pixel Python loop.
ConvTranspose: one GEMM gives every (pixel, output channel, tap) product; a loop over the K
taps scatters them into the strided output (col2im), then the pads are cropped.
"""
from __future__ import annotations

import itertools

import numpy as np

from .registry import Op, register
from .spatial import forward_geometry, pad_spatial, parse_window, windows


def _check_common(op, x, w, b, transpose: bool):
    """Rank and channel checks shared by Conv and ConvTranspose; returns (rank, M) where M is
    the number of output channels (None if unknown). Weights are (M, C/g, *k) for Conv and
    (C, M/g, *k) for ConvTranspose."""
    for what, shp in (("input", x), ("weight", w)):
        if shp is not None and len(shp) < 3:
            raise op.error(f"{what} must have rank >= 3 (N, C, spatial...), got {list(shp)}")
    if x is not None and w is not None and len(x) != len(w):
        raise op.error(f"input {list(x)} and weight {list(w)} ranks differ")
    g, M, need = op.group, None, None
    if w is not None:
        w0, w1 = (d if isinstance(d, int) else None for d in w[:2])
        if transpose:
            M, need = (w1 * g if w1 is not None else None), w0
            if w0 is not None and w0 % g:
                raise op.error(f"{w0} input channels are not divisible by group={g}")
        else:
            M, need = w0, (w1 * g if w1 is not None else None)
            if M is not None and M % g:
                raise op.error(f"{M} output channels are not divisible by group={g}")
    if x is not None and isinstance(x[1], int) and need is not None and x[1] != need:
        raise op.error(f"input has {x[1]} channels but weight {list(w)} with group={g} "
                       f"expects {need}")
    if b is not None and (len(b) != 1 or (M is not None and isinstance(b[0], int)
                                          and b[0] != M)):
        raise op.error(f"bias shape {list(b)} does not match {M} output channels")
    if op.window.kernel is not None and w is not None and \
            all(isinstance(d, int) for d in w[2:]) and list(w[2:]) != op.window.kernel:
        raise op.error(f"kernel_shape {op.window.kernel} differs from the weight's {list(w[2:])}")
    rank = len(x) if x is not None else (len(w) if w is not None else None)
    return rank, M


def _infer(op, ins, transpose: bool, geometry):
    """The shape rule of both: (N, M, *spatial) with ``geometry(in_dims, kernel)``."""
    x, w = ins[0].shape, ins[1].shape
    b = ins[2].shape if len(ins) > 2 and ins[2] is not None else None
    rank, M = _check_common(op, x, w, b, transpose)
    if rank is None:
        return [(None, ins[0].dtype)]
    sp = list(x[2:]) if x is not None else [None] * (rank - 2)
    kern = op.window.kernel or (list(w[2:]) if w is not None else None)
    if kern is None or not all(isinstance(k, int) for k in kern):
        out = [None] * len(sp)
    else:
        try:
            out = geometry(sp, kern)[0]
        except ValueError as e:
            raise op.error(str(e)) from None
    return [((x[0] if x is not None else None, M, *out), ins[0].dtype)]


def _via_float32(op, x, w, b):
    y = op.run(x.astype(np.float32), w.astype(np.float32),
               None if b is None else b.astype(np.float32))[0]
    return (y.astype(x.dtype),)


@register("Conv")
class Conv(Op):
    int8_role = "compute"
    int8_float_output = True

    n_inputs = (2, 3)

    def parse(self, a):
        self.window = parse_window(a, kernel_required=False)
        self.group = a.int("group", 1, lo=1)

    def infer(self, ins, consts):
        return _infer(self, ins, False, lambda sp, k: forward_geometry(self.window, sp, k))

    def run(self, x, w, b=None):
        if x.dtype == np.float16:   # no fp16 BLAS in numpy: compute in float32
            return _via_float32(self, x, w, b)
        r = x.ndim - 2
        N, C = x.shape[:2]
        M, Cg = w.shape[:2]
        k, s, d, _ = self.window.resolved(r, w.shape[2:])
        out, pb, pe = forward_geometry(self.window, x.shape[2:], k)
        v = windows(pad_spatial(x, pb, pe), out, k, s, d)      # (N, C, *out, *k)
        G, Mg, P, K = self.group, M // self.group, int(np.prod(out)), int(np.prod(k))
        if Cg == 1 and G > 1:
            y = self._depthwise(v, w, G, Mg, out, k)
        elif G == 1:
            cols = v.transpose(0, *range(2, 2 + r), 1, *range(2 + r, 2 + 2 * r))
            cols = cols.reshape(N * P, C * K)
            y = (cols @ w.reshape(M, C * K).T).reshape(N, P, M).transpose(0, 2, 1)
        else:
            cols = v.reshape(N, G, Cg, *out, *k)
            cols = cols.transpose(0, 1, *range(3, 3 + r), 2, *range(3 + r, 3 + 2 * r))
            cols = cols.reshape(N, G, P, Cg * K)
            wt = w.reshape(G, Mg, Cg * K).transpose(0, 2, 1)
            y = np.matmul(cols, wt).transpose(0, 1, 3, 2)      # (N, G, Mg, P)
        y = y.reshape(N, M, *out)
        if b is not None:
            y = y + b.reshape(M, *([1] * r))
        return (np.ascontiguousarray(y, dtype=x.dtype),)

    @staticmethod
    def _depthwise(v, w, G, Mg, out, k):
        """One input channel per group: y[n, g, m] = sum_taps v[n, g, .., tap] * w[g*Mg+m, tap]."""
        r = len(k)
        N = v.shape[0]
        wg = w.reshape(G, Mg, *k)
        acc = np.zeros((N, G, Mg, *out), dtype=np.result_type(v.dtype, w.dtype))
        bshape = (1, G, Mg) + (1,) * r
        for tap in itertools.product(*[range(n) for n in k]):
            xs = v[(slice(None), slice(None)) + (slice(None),) * r + tap]   # (N, G, *out)
            acc += xs[:, :, None] * wg[(slice(None), slice(None)) + tap].reshape(bshape)
        return acc


@register("ConvTranspose")
class ConvTranspose(Op):
    int8_role = "compute"

    n_inputs = (2, 3)

    def parse(self, a):
        self.window = parse_window(a, kernel_required=False)
        self.group = a.int("group", 1, lo=1)
        self.output_padding = a.ints("output_padding", None, lo=0)
        self.output_shape = a.ints("output_shape", None, lo=0)

    def geometry(self, in_dims, kern):
        """Output dims and (begin, end) pads, following ONNX's rules for output_shape and
        auto_pad (the odd unit of padding goes to the end for SAME_UPPER)."""
        r = len(in_dims)
        k, s, d, p = self.window.resolved(r, kern)
        op = self.output_padding or [0] * r
        if len(op) != r:
            raise ValueError(f"output_padding has {len(op)} values for {r} spatial dims")
        target = self.output_shape[-r:] if self.output_shape else None
        out, pb, pe = [], [], []
        for i, n in enumerate(in_dims):
            full = None if not isinstance(n, int) else s[i] * (n - 1) + op[i] + (k[i] - 1) * d[i] + 1
            if target is not None or self.window.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                want = target[i] if target is not None else (
                    None if full is None else n * s[i])
                if full is None:
                    out.append(want), pb.append(0), pe.append(0)
                    continue
                total = full - want    # negative: the output extends past the full one
                b = total // 2 if self.window.auto_pad == "SAME_UPPER" else total - total // 2
                out.append(want), pb.append(b), pe.append(total - b)
            else:
                b, e = (0, 0) if self.window.auto_pad == "VALID" else (p[i], p[i + r])
                o = None if full is None else full - b - e
                if o is not None and o <= 0:
                    raise ValueError(f"pads ({b}, {e}) leave no output in spatial dim {i}")
                out.append(o), pb.append(b), pe.append(e)
        return out, pb, pe

    def infer(self, ins, consts):
        return _infer(self, ins, True, self.geometry)

    def run(self, x, w, b=None):
        if x.dtype == np.float16:
            return _via_float32(self, x, w, b)
        r = x.ndim - 2
        N, C = x.shape[:2]
        G = self.group
        Cg, Mg = C // G, w.shape[1]
        kern = list(w.shape[2:])
        k, s, d, _ = self.window.resolved(r, kern)
        out, pb, pe = self.geometry(list(x.shape[2:]), kern)
        ins = x.shape[2:]
        P, K = int(np.prod(ins)), int(np.prod(k))
        wt = w.reshape(G, Cg, Mg * K).transpose(0, 2, 1)          # (G, Mg*K, Cg)
        cols = np.matmul(wt, x.reshape(N, G, Cg, P))               # (N, G, Mg*K, P)
        cols = cols.reshape(N, G, Mg, *k, *ins)
        # The full (unpadded) output spans [0, full); the result is [pb, pb + out), which
        # may reach outside it (negative pads, output_padding): allocate the union.
        lo = [min(0, pb[i]) for i in range(r)]
        ext = [max(s[i] * (ins[i] - 1) + (k[i] - 1) * d[i] + 1, pb[i] + out[i]) - lo[i]
               for i in range(r)]
        full = np.zeros((N, G, Mg, *ext), dtype=cols.dtype)
        for tap in itertools.product(*[range(n) for n in k]):
            dst = tuple(slice(tap[i] * d[i] - lo[i],
                              tap[i] * d[i] - lo[i] + (ins[i] - 1) * s[i] + 1, s[i])
                        for i in range(r))
            full[(slice(None),) * 3 + dst] += cols[(slice(None),) * 3 + tap]
        crop = tuple(slice(pb[i] - lo[i], pb[i] - lo[i] + out[i]) for i in range(r))
        y = full[(slice(None),) * 3 + crop].reshape(N, G * Mg, *out)
        if b is not None:
            y = y + b.reshape(G * Mg, *([1] * r))
        return (np.ascontiguousarray(y, dtype=x.dtype),)



# ---- int8 lowering (the compiler calls Conv.lower_int8; see ops/int8.py) ------------------------
def _conv_lower_int8(self, unit):
    """Conv on uint8 NHWC activations with int8 per-channel weights: im2col/1x1/depthwise
    kernels (csrc/conv) with the requantization and a fused Relu/Clip in their epilogue."""
    from .. import _kernels as K
    from .int8 import NHWC, Kernel, QConst, QTensor, bias_int32, output_args, weight_int8

    x, w = unit.inputs[0], unit.inputs[1]
    b = unit.inputs[2] if len(unit.inputs) > 2 else None
    y = unit.outputs[0]
    if not isinstance(x, QTensor) or not isinstance(w, QConst) or w.values.ndim not in (3, 4):
        return None
    wq = weight_int8(w, 0)
    if wq is None:
        return None
    wv, w_zp, s_w = wq
    rank = wv.ndim
    ohwi = wv.transpose(0, 2, 3, 1) if rank == 4 else wv.transpose(0, 2, 1)[:, None]
    ohwi = np.ascontiguousarray(ohwi)
    if int(np.prod(ohwi.shape[1:])) > K.MAX_K:
        return None
    out_args = output_args(unit, x.scale, s_w, y)
    if out_args is None:
        return None
    bias = bias_int32(b, x.scale, s_w)
    layout = NHWC if rank == 4 else (0, 2, 1)
    cache = unit.cache

    def packed(pads, strides, dilations):
        key = ("conv", pads, strides, dilations, K.get_isa())
        if key not in cache:
            cache[key] = K.ConvPacked(ohwi, strides=strides, dilations=dilations, pads=pads,
                                      groups=self.group)
        return cache[key]

    def packed_for(shape):
        """The packed convolution for an NCHW / NCW input shape and its (h, w) sizes."""
        sp = list(shape[2:]) if rank == 4 else [1, shape[2]]
        k, s, d, _ = self.window.resolved(rank - 2, wv.shape[2:])
        out, pb, pe = forward_geometry(self.window, shape[2:], k)
        if rank == 3:
            s, d, pb, pe = [1] + s, [1] + d, [0] + pb, [0] + pe
        return packed((pb[0], pb[1], pe[0], pe[1]), tuple(s), tuple(d)), sp

    def steps_into(dst, table, op, pool):
        def make_steps(ctx):
            shape = ctx.shape(x.name)
            p, sp = packed_for(shape)
            return [K.conv_step(self.name, p, shape[0], sp[0], sp[1], ctx.slot(x.name),
                                ctx.slot(dst), x.zero_point, w_zp=w_zp, bias=bias, lut=table,
                                op=op, maxpool=pool(ctx) if pool else None, **out_args)]
        return make_steps

    def with_maxpool(table, op):
        """The kernel with a max pool after it (lowering's pool fusion), where the input's
        spatial sizes are known and the convolution runs by column strips; else None."""
        def fuse(pool, dst):
            shape = unit.shape(x.name)
            if rank != 4 or shape is None or not all(isinstance(v, int) for v in shape[2:]):
                return None
            p, sp = packed_for(shape)
            if not K.conv_maxpool_supported(p, sp[0], sp[1]):
                return None
            return kernel(dst, table, f"{op}+MaxPool", pool)
        return fuse

    def kernel(dst, table, op, pool=None):
        k = Kernel([x.name], [dst], steps_into(dst, table, op, pool), layouts={x.name: layout},
                   out_perm=lambda perms, ctx: layout, label=op.lower(), unit=unit,
                   nbytes=int(ohwi.nbytes))
        if out_args["out"] == "u8" and table is None and pool is None:
            k.with_lut = lambda t, d, ops: kernel(d, t, f"Conv+{ops}")
        if out_args["out"] == "u8" and pool is None:
            k.with_maxpool = with_maxpool(table, op)
        return k

    return kernel(y.name, None, "Conv")


Conv.lower_int8 = _conv_lower_int8


# ---- int8 ConvTranspose -------------------------------------------------------------------
def _conv_transpose_lower_int8(self, unit):
    """ConvTranspose on uint8 channels-last activations with int8 weights per output channel:
    per group one GEMM, rows = input pixels, columns = (tap, output channel) --
    x[P, Cg] x W[Cg, taps * Mg] -- then a col2im scatter of the taps, one vectorized numpy
    operation per tap. Any number of spatial dims.
    - Taps that never overlap (the kernel's reach fits in one stride, e.g. 2x2 stride 2):
      each output pixel gets one tap's sum or none, so the GEMM requantizes itself (u8
      epilogue, bias and multiplier per column) and col2im only moves bytes; uncovered pixels
      hold the requantized bias.
    - Otherwise: int32 GEMM output, scatter-add, bias, then requantization by the dequantize
      (float32(acc) * m[c]) and quantize (rint, + zp, clamp) kernels -- the same float32 steps
      as qe_requant_one."""
    from .. import _kernels as K
    from ..quant.params import requant_multiplier
    from .int8 import Kernel, QConst, QTensor, bias_int32, clamp_of, weight_int8

    x, w = unit.inputs[0], unit.inputs[1]
    b = unit.inputs[2] if len(unit.inputs) > 2 else None
    y = unit.outputs[0]
    shape = unit.shape(x.name)
    if not isinstance(x, QTensor) or not isinstance(w, QConst) or shape is None or \
            w.values.ndim < 3 or len(shape) != w.values.ndim or 0 in shape:
        return None
    wq = weight_int8(w, 1)           # weights (C, M/g, *k): output channels along axis 1
    if wq is None:
        return None
    wv, w_zp, s_w = wq
    G, (C, Mg), kern = self.group, wv.shape[:2], list(wv.shape[2:])
    Cg, M, T, r = C // G, G * wv.shape[1], int(np.prod(kern)), wv.ndim - 2
    if Cg > K.MAX_K or C % G:
        return None
    s_full = np.tile(s_w, G)         # output channel g*Mg + j has weight scale j
    try:
        mult = requant_multiplier(x.scale, s_full, y.scale)
        out, pb, pe = self.geometry(list(shape[2:]), kern)
    except Exception:
        return None
    bias = bias_int32(b, x.scale, s_full)
    qmin, qmax = clamp_of(unit, y)
    _, s, d, _ = self.window.resolved(r, kern)
    disjoint = all((kern[i] - 1) * d[i] < s[i] for i in range(r))
    # B of group g: [Cg, T * Mg], column t * Mg + m = W[g*Cg + c, m, tap t]
    bmats = [np.ascontiguousarray(wv[g * Cg:(g + 1) * Cg].transpose(0, *range(2, 2 + r), 1)
                                  .reshape(Cg, T * Mg)) for g in range(G)]
    b_zp = None if w_zp is None else np.tile(w_zp, T)
    N, sp = shape[0], list(shape[2:])
    P = N * int(np.prod(sp))
    cols = unit.graph.unique_name(f"{unit.name}_cols")
    unit.graph.set_value(cols, (P, G * T * Mg), np.uint8 if disjoint else np.int32)
    lo = [min(0, pb[i]) for i in range(r)]
    ext = [max(s[i] * (sp[i] - 1) + (kern[i] - 1) * d[i] + 1, pb[i] + out[i]) - lo[i]
           for i in range(r)]
    taps = list(itertools.product(*[range(n) for n in kern]))
    dsts = [(slice(None),) + tuple(slice(t[i] * d[i] - lo[i],
                                         t[i] * d[i] - lo[i] + (sp[i] - 1) * s[i] + 1, s[i])
                                   for i in range(r)) for t in taps]
    crop = (slice(None),) + tuple(slice(pb[i] - lo[i], pb[i] - lo[i] + out[i]) for i in range(r))
    acc0 = np.zeros(M, np.int32) if bias is None else bias
    fill = np.clip(acc0.astype(np.float32) * mult, np.float32(qmin - y.zero_point),
                   np.float32(qmax - y.zero_point))
    fill = (np.rint(fill).astype(np.int32) + y.zero_point).astype(np.uint8).reshape(G, Mg)
    in_place = ext == list(out) and not any(lo) and not any(pb)   # no crop: scatter into y
    tiled = all(d[i] == 1 and kern[i] == s[i] and ext[i] == s[i] * sp[i] for i in range(r))
    cache = unit.cache

    def col2im(views, ci, yi):
        """Scatter every tap's columns into the uncropped output, crop, finish."""
        c = views[ci].reshape(N, *sp, G, T, Mg)
        if disjoint:
            full = views[yi].reshape(N, *ext, G, Mg) if in_place else \
                np.empty((N, *ext, G, Mg), np.uint8)
            if not tiled:
                full[...] = fill
            for t, dst in enumerate(dsts):
                full[dst] = c[(slice(None),) * (1 + r) + (slice(None), t)]
            if not in_place:
                views[yi][...] = full[crop].reshape(views[yi].shape)
            return
        full = np.zeros((N, *ext, G, Mg), np.int32)
        for t, dst in enumerate(dsts):
            full[dst] += c[(slice(None),) * (1 + r) + (slice(None), t)]
        acc = full[crop].reshape(-1, M)
        if bias is not None:
            acc = acc + bias
        v = K.dequantize(np.ascontiguousarray(acc), mult)
        K.quantize(v, 1.0, y.zero_point, qmin=qmin, qmax=qmax, y=views[yi].reshape(-1, M))

    def make_steps(ctx):
        xs, xo = ctx.slot(x.name)
        cs, co = ctx.slot(cols)
        es = 1 if disjoint else 4
        steps = []
        for g in range(G):
            key = ("conv_transpose", g, K.get_isa())
            if key not in cache:
                cache[key] = K.GemmPacked(bmats[g])
            kw = dict(out="i32")
            if disjoint:
                bg = None if bias is None else np.tile(bias[g * Mg:(g + 1) * Mg], T)
                kw = dict(out="u8", bias=bg, scale=np.tile(mult[g * Mg:(g + 1) * Mg], T),
                          zero_point=y.zero_point, qmin=qmin, qmax=qmax)
            steps.append(K.gemm_step(f"{unit.name}[{g}]" if G > 1 else unit.name, cache[key], P,
                                     (xs, xo + g * Cg), (cs, co + es * g * T * Mg),
                                     x.zero_point, lda=C, ldc=G * T * Mg, b_zp=b_zp,
                                     op="ConvTranspose", **kw))
        ci, yi = cs, ctx.slot(y.name)[0]
        steps.append(K.PyStep(unit.name, "ConvTranspose:col2im",
                              lambda views: col2im(views, ci, yi)))
        return steps

    layout = (0,) + tuple(range(2, 2 + r)) + (1,)          # channels last
    return Kernel([x.name], [y.name, cols], make_steps, layouts={x.name: layout},
                  label="conv_transpose gemm+col2im", unit=unit,
                  nbytes=int(sum(m.nbytes for m in bmats)))


ConvTranspose.lower_int8 = _conv_transpose_lower_int8
