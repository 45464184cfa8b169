# int8 GEMM: prepacked weights and C = output(A (uint8) x B (int8)).


cdef class GemmPacked:
    """B (K x N, int8 -- or uint8 with b_is_u8, shifted by -128 while packing) packed once
    with its column sums for the kernels of one ISA (the active one by default)."""
    cdef qe_gemm_packed *ptr

    def __cinit__(self, b, isa=None, b_is_u8=False):
        self.ptr = NULL
        cdef qe_isa path = _isa_from_name(isa)
        arr = np.asarray(b)
        want = np.uint8 if b_is_u8 else np.int8
        if arr.dtype != want:
            raise TypeError(f"B must be {np.dtype(want).name}, got {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"B must be a non-empty 2-D array (K, N), got shape {arr.shape}")
        if arr.shape[0] > QE_MAX_K:
            raise ValueError(f"K = {arr.shape[0]} exceeds {QE_MAX_K}: the int32 accumulator "
                             "could overflow")
        cdef const uint8_t[:, :] view = arr.view(np.uint8)
        cdef size_t K = arr.shape[0], N = arr.shape[1]
        cdef Py_ssize_t sk = view.strides[0], sn = view.strides[1]
        cdef int is_u8 = 1 if b_is_u8 else 0
        with nogil:
            self.ptr = qe_gemm_pack(&view[0, 0], K, N, sk, sn, is_u8, path)
        if self.ptr == NULL:
            raise MemoryError("packing GEMM weights failed")

    def __dealloc__(self):
        qe_gemm_packed_free(self.ptr)

    @property
    def K(self):
        return qe_gemm_packed_k(self.ptr)

    @property
    def N(self):
        return qe_gemm_packed_n(self.ptr)

    @property
    def nbytes(self):
        return qe_gemm_packed_nbytes(self.ptr)

    @property
    def isa(self):
        return ISA_NAMES[<int>qe_gemm_packed_isa(self.ptr)]

    @property
    def col_sums(self):
        cdef size_t n = qe_gemm_packed_n(self.ptr)
        cdef const int32_t *s = qe_gemm_packed_col_sums(self.ptr)
        return np.array(<int32_t[:n]>s, dtype=np.int32)


def gemm_u8s8(GemmPacked b not None, a, a_zp, *, out="u8", bias=None, scale=None,
              zero_point=0, qmin=0, qmax=255, fbias=None, b_zp=None, c=None):
    """C = output(sum_k (a[m,k] - a_zp) * (B[k,n] - b_zp[n])).

    a: uint8 (M, K), rows contiguous. out: 'u8' (requantize with scale = multipliers,
    zero_point, [qmin, qmax]), 'i32' (raw accumulators) or 'f32' (dequantize with scale, plus
    fbias). bias: int32 (N,). b_zp: int (N,) or scalar, in [-128, 127] (after any u8 shift).
    c: optional preallocated (M, N) output whose row stride may exceed N."""
    a = _input_rows(a, np.uint8, "a")
    cdef Py_ssize_t M = a.shape[0], N = b.N
    if a.shape[1] != b.K:
        raise ValueError(f"a has {a.shape[1]} columns but B has K = {b.K} rows")
    _check_int(a_zp, "a_zp", 0, 255)
    cdef list keep = []
    cdef qe_output o
    _fill_output(&o, keep, out, N, bias, scale, zero_point, qmin, qmax, fbias)
    cdef const int32_t *bzp_ptr = NULL
    cdef int32_t[::1] bzp_v
    if b_zp is not None:
        bz = np.broadcast_to(_vector(b_zp, np.int32, N, "b_zp", True), (N,)).copy()
        if bz.size and (bz.min() < -128 or bz.max() > 127):
            raise ValueError("b_zp must be in [-128, 127]")
        keep.append(bz)
        bzp_v = bz
        bzp_ptr = &bzp_v[0]
    result = _output_array(c, out, M, N, "c")
    if M == 0:
        return result
    cdef const uint8_t[:, :] av = a
    cdef size_t lda = a.strides[0] if M > 1 else a.shape[1]
    cdef size_t ldc = (result.strides[0] // result.itemsize) if M > 1 else N
    cdef uintptr_t cptr = result.__array_interface__["data"][0]
    cdef int rc
    cdef int32_t azp = a_zp
    with nogil:
        rc = qe_gemm_u8s8(b.ptr, M, &av[0, 0], lda, azp, bzp_ptr, &o, <void *>cptr, ldc)
    if rc != QE_OK:
        raise ValueError(f"qe_gemm_u8s8 rejected its arguments (code {rc})")
    return result
