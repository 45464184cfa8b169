# Step constructors: one kernel call each, validated and bound at compile time (program.pxi).
# Tensor operands are (slot, byte offset); every region a step touches is declared as an extent
# so the Program checks it against the slot sizes before anything runs.


# Run-time parameters (dynamic quantization: DynamicQuantizeLinear computes the activation's zero
# point and scale per run): a step may read its input zero point and its f32 output scales from
# slots instead of binding them at compile time.
cdef struct RuntimeParams:
    Py_ssize_t zp_slot, zp_off          # zp_slot < 0: the zero point is bound at compile time
    int zp_signed                       # the stored zero point is int8 (input shifted by +128)
    Py_ssize_t scale_slot, scale_off    # scale_slot < 0: the output scales are bound


cdef inline int32_t _runtime_zp(const RuntimeParams *r, char **slots, int32_t bound) noexcept nogil:
    if r.zp_slot < 0:
        return bound
    if r.zp_signed:
        return <int32_t>(<const int8_t *>(slots[r.zp_slot] + r.zp_off))[0] + 128
    return <int32_t>(<const uint8_t *>(slots[r.zp_slot] + r.zp_off))[0]


cdef inline void _runtime_output(const RuntimeParams *r, char **slots, qe_output *o) noexcept nogil:
    if r.scale_slot >= 0:
        o.scale = <const float *>(slots[r.scale_slot] + r.scale_off)


cdef int _bind_runtime(RuntimeParams *r, list extents, str out, Py_ssize_t n, zp_from,
                       scale_from) except -1:
    """Validate a_zp_from = (slot, byte offset, signed) and scale_from = (slot, byte offset,
    count) into *r, adding their extents. Run-time scales apply to out='f32' only: the f32
    output is plain float math, so any value is safe, whereas u8 requantization needs scales
    checked before they reach C."""
    r.zp_slot = -1
    r.scale_slot = -1
    if zp_from is not None:
        slot, off, signed = zp_from
        r.zp_slot, r.zp_off, r.zp_signed = slot, off, 1 if signed else 0
        extents.append((slot, off, off + 1))
    if scale_from is not None:
        if out != "f32":
            raise ValueError("run-time scales need out='f32'")
        slot, off, count = scale_from
        if count not in (1, n):
            raise ValueError(f"run-time scales must have 1 or {n} entries, got {count}")
        r.scale_slot, r.scale_off = slot, off
        extents.append((slot, off, off + 4 * count))
    return 0


cdef extern from "qe_kernels.h" nogil:
    int qe_gemm_u8s8_add(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out,
                         const uint8_t *add_b, const qe_binary_params *add_p, void *c,
                         size_t ldc)


_ROW_ADD_KEYS = frozenset(("values", "a_zp", "b_zp", "y_zp", "a_mult", "b_mult", "qmin", "qmax"))


cdef struct GemmArgs:
    qe_gemm_packed *b
    size_t M, lda, ldc
    Py_ssize_t a_slot, a_off, c_slot, c_off
    int32_t a_zp
    const int32_t *b_zp
    qe_output out
    RuntimeParams rt
    const uint8_t *add_b        # NULL, or a fused row Add (row_add)
    qe_binary_params add_p


cdef int _run_gemm(const void *p, char **slots) noexcept nogil:
    cdef const GemmArgs *g = <const GemmArgs *>p
    cdef qe_output out
    if g.add_b != NULL:
        return qe_gemm_u8s8_add(g.b, g.M, <const uint8_t *>(slots[g.a_slot] + g.a_off), g.lda,
                                g.a_zp, g.b_zp, &g.out, g.add_b, &g.add_p,
                                slots[g.c_slot] + g.c_off, g.ldc)
    if g.rt.zp_slot < 0 and g.rt.scale_slot < 0:
        return qe_gemm_u8s8(g.b, g.M, <const uint8_t *>(slots[g.a_slot] + g.a_off), g.lda,
                            g.a_zp, g.b_zp, &g.out, slots[g.c_slot] + g.c_off, g.ldc)
    out = g.out
    _runtime_output(&g.rt, slots, &out)
    return qe_gemm_u8s8(g.b, g.M, <const uint8_t *>(slots[g.a_slot] + g.a_off), g.lda,
                        _runtime_zp(&g.rt, slots, g.a_zp), g.b_zp, &out,
                        slots[g.c_slot] + g.c_off, g.ldc)


def gemm_step(str name, GemmPacked b not None, Py_ssize_t M, a, c, a_zp, *, Py_ssize_t lda=0,
              Py_ssize_t ldc=0, out="u8", bias=None, scale=None, zero_point=0, qmin=0, qmax=255,
              fbias=None, b_zp=None, str op="Gemm", a_zp_from=None, scale_from=None,
              row_add=None):
    """C[M, N] = output(A[M, K] x B): a = (slot, byte offset), c = (slot, byte offset);
    lda/ldc in elements (default K / N). a_zp_from = (slot, byte offset, signed): read A's zero
    point from a slot at each run (uint8, or int8 + 128 when signed) instead of a_zp.
    scale_from = (slot, byte offset, count): read the f32 output scales (1 or N floats) from a
    slot at each run; `scale` is then ignored. row_add: None, or a dict of a fused Add of a
    row vector (out 'u8', constant parameters only): values (N uint8), a_zp, b_zp, y_zp,
    a_mult, b_mult, qmin, qmax as binary_step takes them, with C as operand a (the Add reads
    C's codes with its own a_zp and a_mult); C is then the Add's output (binary_step's
    'channel' form, in the GEMM's tasks)."""
    cdef Py_ssize_t K = b.K, N = b.N
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    lda = lda or K
    ldc = ldc or N
    if lda < K or ldc < N:
        raise ValueError(f"row strides too small: lda={lda} < K={K} or ldc={ldc} < N={N}")
    _check_int(a_zp, "a_zp", 0, 255)
    cdef list keep = [b]
    cdef qe_output o
    if scale_from is not None:
        scale = np.ones(scale_from[2] if scale_from[2] in (1, N) else 1, np.float32)
    _fill_output(&o, keep, out, N, bias, scale, zero_point, qmin, qmax, fbias)
    cdef size_t es = 1 if out == "u8" else 4
    a_slot, a_off = a
    c_slot, c_off = c
    extents = [(a_slot, a_off, a_off + (M - 1) * lda + K),
               (c_slot, c_off, c_off + ((M - 1) * ldc + N) * es)]
    cdef RuntimeParams rt
    _bind_runtime(&rt, extents, out, N, a_zp_from, scale_from)
    cdef NativeStep s = _native_step(name, op, _run_gemm, sizeof(GemmArgs), keep, extents,
                                     2.0 * M * N * K)
    cdef GemmArgs *g = <GemmArgs *>s.args
    g.rt = rt
    cdef int32_t[::1] bzv
    if b_zp is not None:
        bz = np.broadcast_to(_vector(b_zp, np.int32, N, "b_zp", True), (N,)).copy()
        if bz.min() < -128 or bz.max() > 127:
            raise ValueError("b_zp must be in [-128, 127]")
        keep.append(bz)
        bzv = bz
        g.b_zp = &bzv[0]
    g.b = b.ptr
    g.M = M
    g.lda = lda
    g.ldc = ldc
    g.a_slot = a_slot
    g.a_off = a_off
    g.c_slot = c_slot
    g.c_off = c_off
    g.a_zp = a_zp
    g.out = o
    g.add_b = NULL
    cdef const uint8_t[::1] addv
    if row_add is not None:
        if out != "u8" or a_zp_from is not None or scale_from is not None:
            raise ValueError("a fused row Add needs a uint8 output and constant parameters")
        missing = sorted(_ROW_ADD_KEYS - set(row_add))
        if missing:
            raise ValueError(f"row_add lacks {missing}")
        vals = np.ascontiguousarray(row_add["values"])
        if vals.dtype != np.uint8 or vals.shape != (N,):
            raise ValueError(f"row_add values must be {N} uint8, got {vals.dtype} {vals.shape}")
        for k in ("a_zp", "b_zp", "y_zp", "qmin", "qmax"):
            _check_int(row_add[k], k, 0, 255)
        am, bm = float(row_add["a_mult"]), float(row_add["b_mult"])
        if not (np.isfinite(am) and np.isfinite(bm) and am > 0 and bm > 0) or \
                row_add["qmin"] > row_add["qmax"]:
            raise ValueError("row_add multipliers must be finite and > 0, qmin <= qmax")
        keep.append(vals)
        addv = vals
        g.add_b = &addv[0]
        g.add_p.a_zp, g.add_p.b_zp = row_add["a_zp"], row_add["b_zp"]
        g.add_p.y_zp = row_add["y_zp"]
        g.add_p.a_mult, g.add_p.b_mult = am, bm
        g.add_p.qmin, g.add_p.qmax = row_add["qmin"], row_add["qmax"]
    return s


cdef struct MatmulArgs:
    qe_matmul_shape shape
    Py_ssize_t a_slot, a_off, b_slot, b_off, c_slot, c_off
    int32_t a_zp, b_zp
    qe_output out
    qe_isa isa


cdef int _run_matmul(const void *p, char **slots) noexcept nogil:
    cdef const MatmulArgs *m = <const MatmulArgs *>p
    return qe_matmul_u8u8(&m.shape, <const uint8_t *>(slots[m.a_slot] + m.a_off), m.a_zp,
                          <const uint8_t *>(slots[m.b_slot] + m.b_off), m.b_zp, &m.out,
                          slots[m.c_slot] + m.c_off, m.isa)


def matmul_u8u8_step(str name, Py_ssize_t batch, Py_ssize_t M, Py_ssize_t K, Py_ssize_t N, a,
                     Py_ssize_t a_stride, b, Py_ssize_t b_stride, c, a_zp, b_zp, *, out="u8",
                     scale=None, zero_point=0, qmin=0, qmax=255, str op="MatMul",
                     lda=None, ldb=None, ldc=None, c_stride=None, bint b_trans=False):
    """Batched MatMul of two uint8 activations:
    C_i[M, N] = output((A_i - a_zp) x (B_i - b_zp)) for i < batch. A_i starts at byte
    a_stride * i of a = (slot, byte offset) (0: the same matrix for every i), its rows lda
    bytes apart (default K); B_i likewise at b_stride * i, K rows of N ldb apart (default N),
    or with b_trans N rows of K (B_i[k][n] at n * ldb + k, default ldb K: a transposed key
    read in place); C_i at element c_stride * i of c (default M * ldc), rows ldc apart
    (default N). Strided operands are views of permuted tensors (attention heads interleaved
    in one row). One scale (the product of the operands' scales over the output's)."""
    if batch < 1 or M < 1 or K < 1 or N < 1:
        raise ValueError(f"matmul sizes must be >= 1, got batch={batch} M={M} K={K} N={N}")
    if K > QE_MAX_K:
        raise ValueError(f"K = {K} exceeds the int32 accumulator bound {QE_MAX_K}")
    cdef Py_ssize_t la = K if lda is None else lda
    cdef Py_ssize_t lb = (K if b_trans else N) if ldb is None else ldb
    cdef Py_ssize_t lc = N if ldc is None else ldc
    cdef Py_ssize_t cs = M * lc if c_stride is None else c_stride
    if la < K or lb < (K if b_trans else N) or lc < N:
        raise ValueError(f"row strides too short: lda={la} (K={K}), ldb={lb} "
                         f"({'K' if b_trans else 'N'}={K if b_trans else N}), ldc={lc} (N={N})")
    if a_stride < 0 or b_stride < 0 or cs < 0:
        raise ValueError("matrix strides must be >= 0")
    # the batch's outputs must not overlap: stacked matrices, or rows interleaved within ldc
    if batch > 1 and cs < (M - 1) * lc + N and (cs < N or (batch - 1) * cs + N > lc):
        raise ValueError(f"output matrices overlap: c_stride={cs}, ldc={lc}, M={M}, N={N}, "
                         f"batch={batch}")
    _check_int(a_zp, "a_zp", 0, 255)
    _check_int(b_zp, "b_zp", 0, 255)
    cdef list keep = []
    cdef qe_output o
    _fill_output(&o, keep, out, N, None, scale, zero_point, qmin, qmax, None)
    if o.per_channel:
        raise ValueError("an activation matmul takes one output scale")
    cdef size_t es = 1 if out == "u8" else 4
    a_slot, a_off = a
    b_slot, b_off = b
    c_slot, c_off = c
    b_reach = (N - 1) * lb + K if b_trans else (K - 1) * lb + N
    extents = [(a_slot, a_off, a_off + (batch - 1) * a_stride + (M - 1) * la + K),
               (b_slot, b_off, b_off + (batch - 1) * b_stride + b_reach),
               (c_slot, c_off, c_off + ((batch - 1) * cs + (M - 1) * lc + N) * es)]
    cdef NativeStep s = _native_step(name, op, _run_matmul, sizeof(MatmulArgs), keep, extents,
                                     2.0 * batch * M * N * K)
    cdef MatmulArgs *g = <MatmulArgs *>s.args
    g.shape.batch = batch
    g.shape.M = M
    g.shape.K = K
    g.shape.N = N
    g.shape.lda = la
    g.shape.ldb = lb
    g.shape.ldc = lc
    g.shape.a_stride = a_stride
    g.shape.b_stride = b_stride
    g.shape.c_stride = cs
    g.shape.b_trans = b_trans
    g.a_slot, g.a_off = a_slot, a_off
    g.b_slot, g.b_off = b_slot, b_off
    g.c_slot, g.c_off = c_slot, c_off
    g.a_zp = a_zp
    g.b_zp = b_zp
    g.out = o
    g.isa = qe_get_isa()
    return s


# ---- convolution -----------------------------------------------------------------------------
cdef struct ConvArgs:
    qe_conv_packed *p
    qe_conv_shape s
    Py_ssize_t x_slot, x_off, y_slot, y_off
    int32_t x_zp
    const int32_t *w_zp
    qe_output out
    const uint8_t *lut
    size_t ldy
    RuntimeParams rt
    int has_pool               # a max pool over the output runs inside the call
    qe_pool_shape pool


cdef inline int _conv_call(const ConvArgs *c, char **slots, int32_t x_zp,
                           const qe_output *out) noexcept nogil:
    cdef const uint8_t *x = <const uint8_t *>(slots[c.x_slot] + c.x_off)
    if c.has_pool:
        return qe_conv_u8s8_maxpool(c.p, &c.s, x, x_zp, c.w_zp, out, c.lut, &c.pool,
                                    <uint8_t *>(slots[c.y_slot] + c.y_off), c.ldy)
    return qe_conv_u8s8_lut(c.p, &c.s, x, x_zp, c.w_zp, out, c.lut, slots[c.y_slot] + c.y_off,
                            c.ldy)


cdef int _run_conv(const void *p, char **slots) noexcept nogil:
    cdef const ConvArgs *c = <const ConvArgs *>p
    cdef qe_output out
    if c.rt.zp_slot < 0 and c.rt.scale_slot < 0:
        return _conv_call(c, slots, c.x_zp, &c.out)
    out = c.out
    _runtime_output(&c.rt, slots, &out)
    return _conv_call(c, slots, _runtime_zp(&c.rt, slots, c.x_zp), &out)


def conv_step(str name, ConvPacked p not None, Py_ssize_t batch, Py_ssize_t in_h,
              Py_ssize_t in_w, x, y, x_zp, *, Py_ssize_t ldy=0, w_zp=None, out="u8",
              bias=None, scale=None, zero_point=0, qmin=0, qmax=255, fbias=None,
              x_zp_from=None, scale_from=None, lut=None, str op="Conv", maxpool=None):
    """NHWC convolution of x = (slot, byte offset) [batch, in_h, in_w, in_c] into y = (slot,
    byte offset) [batch, out_h, out_w] pixels of out_c values, pixel stride ldy (default out_c).
    x_zp_from / scale_from: run-time zero point and f32 scales read from slots (gemm_step).
    lut: 256 uint8, then y = lut[y] inside the convolution's tasks (a fused lookup region);
    op: the name profiles show ("Conv+HardSwish"). maxpool: None, or {kernel, strides, pads,
    ceil_mode} of a max pool over the (u8) output that runs inside the call: y is then the
    pooled output (conv_maxpool_u8; only where conv_maxpool_supported)."""
    _check_int(x_zp, "x_zp", 0, 255)
    cdef qe_conv_shape s = p.shape
    s.batch, s.in_h, s.in_w = batch, in_h, in_w
    s.out_h = _out_len(in_h, s.kernel_h, s.stride_h, s.dilation_h, s.pad_top, s.pad_bottom)
    s.out_w = _out_len(in_w, s.kernel_w, s.stride_w, s.dilation_w, s.pad_left, s.pad_right)
    if batch < 1 or qe_conv_shape_check(&s) != QE_OK:
        raise ValueError(f"convolution {name!r}: invalid shape (batch {batch}, input "
                         f"{in_h}x{in_w}x{s.in_c})")
    ldy = ldy or p.out_c
    if ldy < p.out_c:
        raise ValueError(f"ldy ({ldy}) < out_c ({p.out_c})")
    cdef list keep = [p]
    cdef qe_output o
    if scale_from is not None:
        scale = np.ones(scale_from[2] if scale_from[2] in (1, p.out_c) else 1, np.float32)
    _fill_output(&o, keep, out, p.out_c, bias, scale, zero_point, qmin, qmax, fbias)
    if scale is not None:
        _check_positive_array(np.asarray(scale, dtype=np.float32), "scale")
    cdef size_t es = 1 if out == "u8" else 4
    x_slot, x_off = x
    y_slot, y_off = y
    cdef Py_ssize_t pixels = batch * s.out_h * s.out_w
    cdef qe_conv_shape s2
    cdef qe_pool_shape ps
    cdef Py_ssize_t out_pixels = pixels
    if maxpool is not None:
        if out != "u8" or not conv_maxpool_supported(p, in_h, in_w):
            raise ValueError(f"convolution {name!r}: a fused max pool needs a uint8 output and "
                             f"a convolution run by column strips")
        _conv_pool_shapes(p, batch, in_h, in_w, &s2, &ps, maxpool["kernel"],
                          maxpool["strides"], maxpool["pads"], maxpool.get("ceil_mode", False))
        out_pixels = batch * ps.out_h * ps.out_w
    extents = [(x_slot, x_off, x_off + batch * in_h * in_w * s.in_c),
               (y_slot, y_off, y_off + ((out_pixels - 1) * ldy + p.out_c) * es)]
    cdef RuntimeParams rt
    _bind_runtime(&rt, extents, out, p.out_c, x_zp_from, scale_from)
    ops = 2.0 * pixels * p.out_c * s.kernel_h * s.kernel_w * (s.in_c // s.groups)
    cdef NativeStep st = _native_step(name, op, _run_conv, sizeof(ConvArgs), keep, extents, ops)
    cdef ConvArgs *c = <ConvArgs *>st.args
    c.rt = rt
    cdef int32_t[::1] wzv
    if w_zp is not None:
        wz = np.broadcast_to(_vector(w_zp, np.int32, p.out_c, "w_zp", True), (p.out_c,)).copy()
        if wz.min() < -128 or wz.max() > 127:
            raise ValueError("w_zp must be in [-128, 127]")
        keep.append(wz)
        wzv = wz
        c.w_zp = &wzv[0]
    c.p = p.ptr
    c.s = s
    c.x_slot, c.x_off, c.y_slot, c.y_off = x_slot, x_off, y_slot, y_off
    c.x_zp = x_zp
    c.out = o
    c.ldy = ldy
    c.has_pool = 0
    if maxpool is not None:
        c.has_pool = 1
        c.pool = ps
    c.lut = NULL
    cdef const uint8_t[::1] lut_v
    if lut is not None:
        lut_a = _lut_table(lut, out)
        keep.append(lut_a)
        lut_v = lut_a
        c.lut = &lut_v[0]
    return st


# ---- pooling -----------------------------------------------------------------------------------
cdef struct PoolArgs:
    qe_pool_shape s
    int kind          # 0 max, 1 average, 2 global average
    int include_pad
    Py_ssize_t x_slot, x_off, y_slot, y_off
    int32_t x_zp, y_zp, qmin, qmax
    float mult


cdef int _run_pool(const void *p, char **slots) noexcept nogil:
    cdef const PoolArgs *a = <const PoolArgs *>p
    cdef const uint8_t *x = <const uint8_t *>(slots[a.x_slot] + a.x_off)
    cdef uint8_t *y = <uint8_t *>(slots[a.y_slot] + a.y_off)
    if a.kind == 0:
        return qe_maxpool_u8(&a.s, x, y)
    if a.kind == 1:
        return qe_avgpool_u8(&a.s, a.include_pad, x, a.x_zp, a.mult, a.y_zp, a.qmin, a.qmax, y)
    return qe_global_avgpool_u8(a.s.batch, a.s.in_h * a.s.in_w, a.s.channels, x, a.x_zp, a.mult,
                                a.y_zp, a.qmin, a.qmax, y)


def pool_step(str name, str kind, tuple x_shape, x, y, *, kernel=1, strides=1, dilations=1,
              pads=0, ceil_mode=False, count_include_pad=False, x_zp=0, mult=1.0, y_zp=0,
              qmin=0, qmax=255):
    """kind 'max' | 'average' | 'global_average' over NHWC x_shape (n, h, w, c);
    x, y = (slot, byte offset)."""
    if kind not in ("max", "average", "global_average"):
        raise ValueError(f"unknown pooling kind {kind!r}")
    if len(x_shape) != 4 or min(x_shape) < 1:
        raise ValueError(f"pooling input must be a non-empty NHWC shape, got {x_shape}")
    cdef qe_pool_shape s
    dummy = np.empty((1, 1, 1, 1), np.uint8)
    if kind == "global_average":
        n, h, w, c = x_shape
        if h * w > GLOBAL_POOL_MAX_HW:
            raise ValueError(f"global pooling over {h * w} pixels exceeds {GLOBAL_POOL_MAX_HW}")
        s.batch, s.in_h, s.in_w, s.channels, s.out_h, s.out_w = n, h, w, c, 1, 1
        out_shape = (n, 1, 1, c)
    else:
        out_shape = _pool_shape(&s, np.broadcast_to(dummy, x_shape), kernel, strides,
                                dilations, pads, ceil_mode)
        if qe_pool_shape_check(&s) != QE_OK:
            raise ValueError(f"pooling {name!r}: invalid window for input {x_shape}")
    if kind != "max":
        _requant_args(x_zp, mult, y_zp, qmin, qmax)
    x_slot, x_off = x
    y_slot, y_off = y
    extents = [(x_slot, x_off, x_off + int(np.prod(x_shape))),
               (y_slot, y_off, y_off + int(np.prod(out_shape)))]
    cdef NativeStep st = _native_step(name, {"max": "MaxPool", "average": "AveragePool",
                                             "global_average": "GlobalAveragePool"}[kind],
                                      _run_pool, sizeof(PoolArgs), [], extents)
    cdef PoolArgs *a = <PoolArgs *>st.args
    a.s = s
    a.kind = {"max": 0, "average": 1, "global_average": 2}[kind]
    a.include_pad = 1 if count_include_pad else 0
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    a.x_zp, a.y_zp, a.qmin, a.qmax = x_zp, y_zp, qmin, qmax
    a.mult = mult
    return st


# ---- element-wise ------------------------------------------------------------------------------
cdef struct BinaryArgs:
    int is_mul
    size_t rows, cols, b_row_stride
    int b_scalar
    qe_binary_params p
    Py_ssize_t a_slot, a_off, b_slot, b_off, y_slot, y_off


cdef int _run_binary(const void *p, char **slots) noexcept nogil:
    cdef const BinaryArgs *b = <const BinaryArgs *>p
    cdef const uint8_t *x = <const uint8_t *>(slots[b.a_slot] + b.a_off)
    cdef const uint8_t *z = <const uint8_t *>(slots[b.b_slot] + b.b_off)
    cdef uint8_t *y = <uint8_t *>(slots[b.y_slot] + b.y_off)
    if b.is_mul:
        return qe_mul_u8(b.rows, b.cols, x, z, b.b_row_stride, b.b_scalar, &b.p, y)
    return qe_add_u8(b.rows, b.cols, x, z, b.b_row_stride, b.b_scalar, &b.p, y)


def binary_step(str name, str op, Py_ssize_t rows, Py_ssize_t cols, a, b, y, str b_form, *,
                a_zp, b_zp, y_zp, float a_mult, float b_mult=0.0, qmin=0, qmax=255):
    """op 'add' | 'mul' over rows x cols uint8; b_form 'full' | 'channel' (a vector of cols
    broadcast over rows) | 'scalar'. Operands (slot, byte offset). add: a_mult = s_a/s_y,
    b_mult = +-s_b/s_y (Sub negates it); mul: a_mult = s_a*s_b/s_y."""
    if op not in ("add", "mul") or b_form not in ("full", "channel", "scalar"):
        raise ValueError(f"bad binary step {op!r} / {b_form!r}")
    if rows < 1 or cols < 1:
        raise ValueError("empty binary step")
    for v, n in ((a_zp, "a_zp"), (b_zp, "b_zp"), (y_zp, "y_zp"), (qmin, "qmin"), (qmax, "qmax")):
        _check_int(v, n, 0, 255)
    if not (np.isfinite(a_mult) and np.isfinite(b_mult)) or qmin > qmax:
        raise ValueError("multipliers must be finite and qmin <= qmax")
    a_slot, a_off = a
    b_slot, b_off = b
    y_slot, y_off = y
    b_len = rows * cols if b_form == "full" else (cols if b_form == "channel" else 1)
    extents = [(a_slot, a_off, a_off + rows * cols), (b_slot, b_off, b_off + b_len),
               (y_slot, y_off, y_off + rows * cols)]
    cdef NativeStep st = _native_step(name, "Mul" if op == "mul" else "Add", _run_binary,
                                      sizeof(BinaryArgs), [], extents)
    cdef BinaryArgs *p = <BinaryArgs *>st.args
    p.is_mul = op == "mul"
    p.rows, p.cols = rows, cols
    p.b_row_stride = cols if b_form == "full" else 0
    p.b_scalar = b_form == "scalar"
    p.p.a_zp, p.p.b_zp, p.p.y_zp = a_zp, b_zp, y_zp
    p.p.a_mult, p.p.b_mult = a_mult, b_mult
    p.p.qmin, p.p.qmax = qmin, qmax
    p.a_slot, p.a_off, p.b_slot, p.b_off, p.y_slot, p.y_off = a_slot, a_off, b_slot, b_off, y_slot, y_off
    return st


cdef struct MapArgs:
    int kind            # 0 lut, 1 requantize, 2 quantize f32->u8, 3 dequantize u8->f32,
                        # 4 lut u8->f32
    size_t rows, cols, ldx, ldy
    Py_ssize_t x_slot, x_off, y_slot, y_off
    const uint8_t *table
    const float *ftable
    int32_t x_zp, y_zp, qmin, qmax
    float mult
    float scale


cdef int _run_map(const void *p, char **slots) noexcept nogil:
    cdef const MapArgs *m = <const MapArgs *>p
    cdef char *x = slots[m.x_slot] + m.x_off
    cdef char *y = slots[m.y_slot] + m.y_off
    if m.kind == 0:
        return qe_lut_u8(m.rows * m.cols, <const uint8_t *>x, m.table, <uint8_t *>y)
    if m.kind == 1:
        return qe_requantize_u8(m.rows, m.cols, <const uint8_t *>x, m.ldx, m.x_zp, m.mult,
                                m.y_zp, m.qmin, m.qmax, <uint8_t *>y, m.ldy)
    if m.kind == 4:
        return qe_lut_u8_f32(m.rows * m.cols, <const uint8_t *>x, m.ftable, <float *>y)
    if m.kind == 2:
        return qe_quantize_f32_u8(m.rows * m.cols, 1, <const float *>x, &m.scale, &m.y_zp,
                                  m.qmin, m.qmax, <uint8_t *>y)
    return qe_dequantize_u8_f32(m.rows * m.cols, 1, <const uint8_t *>x, &m.scale, &m.x_zp,
                                <float *>y)


def lut_step(str name, Py_ssize_t n, x, y, table, str op="Lookup"):
    """y[i] = table[x[i]] over n uint8 values; x, y = (slot, byte offset)."""
    t = np.ascontiguousarray(table)
    if t.dtype != np.uint8 or t.shape != (256,):
        raise ValueError("table must be 256 uint8 values")
    if n < 1:
        raise ValueError("empty lookup step")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef list keep = [t]
    cdef NativeStep st = _native_step(name, op, _run_map, sizeof(MapArgs), keep,
                                      [(x_slot, x_off, x_off + n), (y_slot, y_off, y_off + n)])
    cdef MapArgs *m = <MapArgs *>st.args
    cdef const uint8_t[::1] tv = t
    m.kind = 0
    m.rows, m.cols = 1, n
    m.table = &tv[0]
    m.x_slot, m.x_off, m.y_slot, m.y_off = x_slot, x_off, y_slot, y_off
    return st


def lut_f32_step(str name, Py_ssize_t n, x, y, table, str op="Lookup"):
    """y[i] = table[x[i]] over n uint8 values into float32; x, y = (slot, byte offset)."""
    t = np.ascontiguousarray(table)
    if t.dtype != np.float32 or t.shape != (256,):
        raise ValueError("table must be 256 float32 values")
    if n < 1:
        raise ValueError("empty lookup step")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef list keep = [t]
    cdef NativeStep st = _native_step(name, op, _run_map, sizeof(MapArgs), keep,
                                      [(x_slot, x_off, x_off + n), (y_slot, y_off, y_off + 4 * n)])
    cdef MapArgs *m = <MapArgs *>st.args
    cdef const float[::1] tv = t
    m.kind = 4
    m.rows, m.cols = 1, n
    m.ftable = &tv[0]
    m.x_slot, m.x_off, m.y_slot, m.y_off = x_slot, x_off, y_slot, y_off
    return st


def requantize_step(str name, Py_ssize_t rows, Py_ssize_t cols, x, Py_ssize_t ldx, y,
                    Py_ssize_t ldy, x_zp, float mult, y_zp, qmin=0, qmax=255,
                    str op="Requantize"):
    """Rows of cols uint8 from one scale to another, strided (Concat)."""
    _requant_args(x_zp, mult, y_zp, qmin, qmax)
    if rows < 1 or cols < 1 or ldx < cols or ldy < cols:
        raise ValueError("bad requantize geometry")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef NativeStep st = _native_step(
        name, op, _run_map, sizeof(MapArgs), [],
        [(x_slot, x_off, x_off + (rows - 1) * ldx + cols),
         (y_slot, y_off, y_off + (rows - 1) * ldy + cols)])
    cdef MapArgs *m = <MapArgs *>st.args
    m.kind = 1
    m.rows, m.cols, m.ldx, m.ldy = rows, cols, ldx, ldy
    m.x_zp, m.y_zp, m.qmin, m.qmax, m.mult = x_zp, y_zp, qmin, qmax, mult
    m.x_slot, m.x_off, m.y_slot, m.y_off = x_slot, x_off, y_slot, y_off
    return st


def quantize_step(str name, Py_ssize_t n, x, y, float scale, zero_point, qmin=0, qmax=255):
    """float32 -> uint8 over n values (per tensor)."""
    _check_int(zero_point, "zero_point", 0, 255)
    _check_int(qmin, "qmin", 0, 255)
    _check_int(qmax, "qmax", 0, 255)
    _positive_float(scale, "scale")
    if n < 1 or qmin > qmax:
        raise ValueError("bad quantize step")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef NativeStep st = _native_step(name, "QuantizeLinear", _run_map, sizeof(MapArgs), [],
                                      [(x_slot, x_off, x_off + 4 * n), (y_slot, y_off, y_off + n)])
    cdef MapArgs *m = <MapArgs *>st.args
    m.kind = 2
    m.rows, m.cols = 1, n
    m.scale, m.y_zp, m.qmin, m.qmax = scale, zero_point, qmin, qmax
    m.x_slot, m.x_off, m.y_slot, m.y_off = x_slot, x_off, y_slot, y_off
    return st


def dequantize_step(str name, Py_ssize_t n, x, y, float scale, zero_point):
    """uint8 -> float32 over n values (per tensor)."""
    _check_int(zero_point, "zero_point", 0, 255)
    _positive_float(scale, "scale")
    if n < 1:
        raise ValueError("empty dequantize step")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef NativeStep st = _native_step(name, "DequantizeLinear", _run_map, sizeof(MapArgs), [],
                                      [(x_slot, x_off, x_off + n), (y_slot, y_off, y_off + 4 * n)])
    cdef MapArgs *m = <MapArgs *>st.args
    m.kind = 3
    m.rows, m.cols = 1, n
    m.scale, m.x_zp = scale, zero_point
    m.x_slot, m.x_off, m.y_slot, m.y_off = x_slot, x_off, y_slot, y_off
    return st


# ---- float ops left in quantized models ----------------------------------------------------------
cdef extern from "qe_kernels.h" nogil:
    int qe_softmax_f32(size_t rows, size_t cols, const float *x, float *y, int log_form)


cdef struct SoftmaxArgs:
    size_t rows, cols
    int log_form
    Py_ssize_t x_slot, x_off, y_slot, y_off


cdef int _run_softmax(const void *p, char **slots) noexcept nogil:
    cdef const SoftmaxArgs *a = <const SoftmaxArgs *>p
    return qe_softmax_f32(a.rows, a.cols, <const float *>(slots[a.x_slot] + a.x_off),
                          <float *>(slots[a.y_slot] + a.y_off), a.log_form)


def softmax_step(str name, Py_ssize_t rows, Py_ssize_t cols, x, y, bint log=False):
    """float32 (log-)softmax of rows x cols over the last axis; x, y = (slot, byte offset)."""
    if rows < 1 or cols < 1:
        raise ValueError("empty softmax step")
    x_slot, x_off = x
    y_slot, y_off = y
    n = rows * cols * 4
    cdef NativeStep st = _native_step(name, "LogSoftmax" if log else "Softmax", _run_softmax,
                                      sizeof(SoftmaxArgs), [],
                                      [(x_slot, x_off, x_off + n), (y_slot, y_off, y_off + n)])
    cdef SoftmaxArgs *a = <SoftmaxArgs *>st.args
    a.rows, a.cols, a.log_form = rows, cols, 1 if log else 0
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    return st


cdef extern from "qe_kernels.h" nogil:
    ctypedef enum qe_scalar_op:
        QE_SCALAR_MUL, QE_SCALAR_ADD, QE_SCALAR_SUB, QE_SCALAR_RSUB, QE_SCALAR_DIV, QE_SCALAR_RDIV
    int qe_scalar_f32(size_t n, const float *x, qe_scalar_op op, float c, float *y)


cdef struct ScalarArgs:
    size_t n
    qe_scalar_op op
    float c
    Py_ssize_t x_slot, x_off, y_slot, y_off


cdef int _run_scalar(const void *p, char **slots) noexcept nogil:
    cdef const ScalarArgs *a = <const ScalarArgs *>p
    return qe_scalar_f32(a.n, <const float *>(slots[a.x_slot] + a.x_off), a.op, a.c,
                         <float *>(slots[a.y_slot] + a.y_off))


_SCALAR_OPS = {"mul": QE_SCALAR_MUL, "add": QE_SCALAR_ADD, "sub": QE_SCALAR_SUB,
               "rsub": QE_SCALAR_RSUB, "div": QE_SCALAR_DIV, "rdiv": QE_SCALAR_RDIV}


def scalar_f32_step(str name, Py_ssize_t n, x, y, str op, float c, str op_type="Mul"):
    """y = x (op) c over n float32 values: op one of mul, add, sub (x - c), rsub (c - x),
    div (x / c), rdiv (c / x); x, y = (slot, byte offset)."""
    if op not in _SCALAR_OPS:
        raise ValueError(f"op must be one of {sorted(_SCALAR_OPS)}, got {op!r}")
    if n < 1:
        raise ValueError("empty scalar step")
    x_slot, x_off = x
    y_slot, y_off = y
    cdef NativeStep st = _native_step(name, op_type, _run_scalar, sizeof(ScalarArgs), [],
                                      [(x_slot, x_off, x_off + 4 * n),
                                       (y_slot, y_off, y_off + 4 * n)])
    cdef ScalarArgs *a = <ScalarArgs *>st.args
    a.n, a.op, a.c = n, _SCALAR_OPS[op], c
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    return st


# ---- layout ---------------------------------------------------------------------------------------
cdef extern from "qe_kernels.h" nogil:
    int qe_permute_copy(size_t ndim, const size_t *shape, const Py_ssize_t *src_strides,
                        size_t elem, const void *src, void *dst)


cdef struct PermuteArgs:
    size_t ndim, elem
    size_t shape[8]
    Py_ssize_t strides[8]
    Py_ssize_t x_slot, x_off, y_slot, y_off


cdef int _run_permute(const void *p, char **slots) noexcept nogil:
    cdef const PermuteArgs *a = <const PermuteArgs *>p
    return qe_permute_copy(a.ndim, a.shape, a.strides, a.elem, slots[a.x_slot] + a.x_off,
                           slots[a.y_slot] + a.y_off)


def permute_step(str name, tuple src_shape, tuple perm, Py_ssize_t elem, x, y,
                 str op="Relayout"):
    """y (contiguous) = the C-contiguous array x of src_shape transposed by perm (numpy
    semantics: y.shape[k] = src_shape[perm[k]]); elem: bytes per element (1, 2, 4, 8)."""
    cdef Py_ssize_t n = len(src_shape), k
    if not 1 <= n <= 8 or sorted(perm) != list(range(n)) or elem not in (1, 2, 4, 8):
        raise ValueError(f"bad permutation {perm} of shape {src_shape} (elem {elem})")
    if any(d < 0 for d in src_shape):
        raise ValueError(f"negative dimension in {src_shape}")
    cstrides = [elem] * n
    for k in range(n - 2, -1, -1):
        cstrides[k] = cstrides[k + 1] * src_shape[k + 1]
    nbytes = elem * int(np.prod(src_shape, dtype=np.int64))
    x_slot, x_off = x
    y_slot, y_off = y
    cdef NativeStep st = _native_step(name, op, _run_permute, sizeof(PermuteArgs), [],
                                      [(x_slot, x_off, x_off + nbytes),
                                       (y_slot, y_off, y_off + nbytes)])
    cdef PermuteArgs *a = <PermuteArgs *>st.args
    a.ndim, a.elem = n, elem
    for k in range(n):
        a.shape[k] = src_shape[perm[k]]
        a.strides[k] = cstrides[perm[k]]
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    return st


def strided_copy_step(str name, tuple shape, tuple strides, Py_ssize_t offset, Py_ssize_t elem,
                      x, y, str op="Copy"):
    """y (contiguous, `shape`) = the view of x starting `offset` bytes in with byte `strides`
    (any sign): Slice, Split, Transpose... as one native copy."""
    cdef Py_ssize_t n = len(shape), k
    if not 1 <= n <= 8 or len(strides) != n or elem not in (1, 2, 4, 8):
        raise ValueError(f"bad strided copy: shape {shape}, strides {strides}, elem {elem}")
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    lo = hi = offset
    for k in range(n):
        if shape[k] > 1:
            span = (shape[k] - 1) * strides[k]
            if span < 0:
                lo += span
            else:
                hi += span
    x_slot, x_off = x
    y_slot, y_off = y
    extents = [(y_slot, y_off, y_off + count * elem)]
    if count:
        extents.append((x_slot, x_off + lo, x_off + hi + elem))
    cdef NativeStep st = _native_step(name, op, _run_permute, sizeof(PermuteArgs), [], extents)
    cdef PermuteArgs *a = <PermuteArgs *>st.args
    a.ndim, a.elem = n, elem
    for k in range(n):
        a.shape[k] = shape[k]
        a.strides[k] = strides[k]
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off + offset, y_slot, y_off
    return st


cdef extern from "qe_kernels.h" nogil:
    int qe_layernorm_f32(size_t rows, size_t cols, const float *x, const float *gamma,
                         const float *beta, float eps, float *y)


cdef struct LayerNormArgs:
    size_t rows, cols
    const float *gamma
    const float *beta
    float eps
    Py_ssize_t x_slot, x_off, y_slot, y_off


cdef int _run_layernorm(const void *p, char **slots) noexcept nogil:
    cdef const LayerNormArgs *a = <const LayerNormArgs *>p
    return qe_layernorm_f32(a.rows, a.cols, <const float *>(slots[a.x_slot] + a.x_off),
                            a.gamma, a.beta, a.eps, <float *>(slots[a.y_slot] + a.y_off))


def layernorm_step(str name, Py_ssize_t rows, Py_ssize_t cols, x, y, gamma, beta, float eps):
    """float32 layer normalization of rows x cols over each row; gamma/beta: (cols,) or None."""
    if rows < 1 or cols < 1:
        raise ValueError("empty layer normalization step")
    if not (eps >= 0):
        raise ValueError(f"epsilon must be >= 0, got {eps}")
    g = _vector(gamma, np.float32, cols, "gamma", False)
    cdef list keep = [g]
    cdef const float[::1] gv = g
    cdef const float[::1] bv
    x_slot, x_off = x
    y_slot, y_off = y
    n = rows * cols * 4
    cdef NativeStep st = _native_step(name, "LayerNormalization", _run_layernorm,
                                      sizeof(LayerNormArgs), keep,
                                      [(x_slot, x_off, x_off + n), (y_slot, y_off, y_off + n)])
    cdef LayerNormArgs *a = <LayerNormArgs *>st.args
    a.gamma = &gv[0]
    if beta is not None:
        b = _vector(beta, np.float32, cols, "beta", False)
        keep.append(b)
        bv = b
        a.beta = &bv[0]
    a.rows, a.cols, a.eps = rows, cols, eps
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    return st


cdef extern from "qe_kernels.h" nogil:
    int qe_gather_axes(size_t ndim, const size_t *shape, const Py_ssize_t *src_strides,
                       const int32_t *const *maps, size_t elem, const void *src, void *dst)


cdef struct GatherArgs:
    size_t ndim, elem
    size_t shape[8]
    Py_ssize_t strides[8]
    const int32_t *maps[8]
    Py_ssize_t x_slot, x_off, y_slot, y_off


cdef int _run_gather(const void *p, char **slots) noexcept nogil:
    cdef const GatherArgs *a = <const GatherArgs *>p
    return qe_gather_axes(a.ndim, a.shape, a.strides, a.maps, a.elem,
                          slots[a.x_slot] + a.x_off, slots[a.y_slot] + a.y_off)


def gather_axes_step(str name, tuple src_shape, list maps, Py_ssize_t elem, x, y,
                     str op="Resize"):
    """y[i_0..] = x[maps[0][i_0], maps[1][i_1], ...] for a C-contiguous x of src_shape;
    maps[k]: int indices into axis k (its length is y's size on axis k)."""
    cdef Py_ssize_t n = len(src_shape), k
    if not 1 <= n <= 8 or len(maps) != n or elem not in (1, 2, 4, 8):
        raise ValueError(f"bad gather: shape {src_shape}, {len(maps)} maps, elem {elem}")
    arrays = []
    for k in range(n):
        m = np.ascontiguousarray(maps[k], dtype=np.int32)
        if m.ndim != 1 or m.size == 0 or m.min() < 0 or m.max() >= src_shape[k]:
            raise ValueError(f"map {k} indexes outside axis {k} of {src_shape}")
        arrays.append(m)
    cstrides = [elem] * n
    for k in range(n - 2, -1, -1):
        cstrides[k] = cstrides[k + 1] * src_shape[k + 1]
    x_slot, x_off = x
    y_slot, y_off = y
    nbytes_in = elem * int(np.prod(src_shape, dtype=np.int64))
    nbytes_out = elem * int(np.prod([m.size for m in arrays], dtype=np.int64))
    cdef NativeStep st = _native_step(name, op, _run_gather, sizeof(GatherArgs), arrays,
                                      [(x_slot, x_off, x_off + nbytes_in),
                                       (y_slot, y_off, y_off + nbytes_out)])
    cdef GatherArgs *a = <GatherArgs *>st.args
    cdef const int32_t[::1] mv
    a.ndim, a.elem = n, elem
    for k in range(n):
        mv = arrays[k]
        a.shape[k] = arrays[k].size
        a.strides[k] = cstrides[k]
        a.maps[k] = &mv[0]
    a.x_slot, a.x_off, a.y_slot, a.y_off = x_slot, x_off, y_slot, y_off
    return st
