# Step constructors: one kernel call each, validated and bound at compile time (program.pxi).
# Tensor operands are (slot, byte offset); every region a step touches is declared as an extent
# so the Program checks it against the slot sizes before anything runs.


cdef struct GemmArgs:
    qe_gemm_packed *b
    size_t M, lda, ldc
    Py_ssize_t a_slot, a_off, c_slot, c_off
    int32_t a_zp
    const int32_t *b_zp
    qe_output out


cdef int _run_gemm(const void *p, char **slots) noexcept nogil:
    cdef const GemmArgs *g = <const GemmArgs *>p
    return qe_gemm_u8s8(g.b, g.M, <const uint8_t *>(slots[g.a_slot] + g.a_off), g.lda, g.a_zp,
                        g.b_zp, &g.out, slots[g.c_slot] + g.c_off, g.ldc)


def gemm_step(str name, GemmPacked b not None, Py_ssize_t M, a, c, a_zp, *, Py_ssize_t lda=0,
              Py_ssize_t ldc=0, out="u8", bias=None, scale=None, zero_point=0, qmin=0, qmax=255,
              fbias=None, b_zp=None, str op="Gemm"):
    """C[M, N] = output(A[M, K] x B): a = (slot, byte offset), c = (slot, byte offset);
    lda/ldc in elements (default K / N)."""
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
    _fill_output(&o, keep, out, N, bias, scale, zero_point, qmin, qmax, fbias)
    cdef size_t es = 1 if out == "u8" else 4
    a_slot, a_off = a
    c_slot, c_off = c
    extents = [(a_slot, a_off, a_off + (M - 1) * lda + K),
               (c_slot, c_off, c_off + ((M - 1) * ldc + N) * es)]
    cdef NativeStep s = _native_step(name, op, _run_gemm, sizeof(GemmArgs), keep, extents,
                                     2.0 * M * N * K)
    cdef GemmArgs *g = <GemmArgs *>s.args
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
    return s
