# int8 GEMM: prepacked weights and C = output(A (uint8) x B (int8)).
from cpython.buffer cimport PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer

cdef extern from "gemm/qgemm.h" nogil:
    void qe_gemm_u8s8_serial(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                             int32_t a_zp, const int32_t *b_zp, const qe_output *out,
                             size_t n_begin, size_t n_end, void *c, size_t ldc)


cdef void *_buffer_ptr(obj, bint writable) except NULL:
    """Address of the first element of an array already checked for dtype and strides (the
    buffer protocol: cheaper per call than __array_interface__ or a typed memoryview)."""
    cdef Py_buffer view
    PyObject_GetBuffer(obj, &view, PyBUF_STRIDES | (PyBUF_WRITABLE if writable else 0))
    cdef void *ptr = view.buf
    PyBuffer_Release(&view)  # the caller keeps obj alive for the duration of the call
    return ptr


cdef class GemmPacked:
    """B (K x N, int8 -- or uint8 with b_is_u8, shifted by -128 while packing) packed once
    with its column sums for the kernels of one ISA (the active one by default). The packed
    object always runs the kernels of the ISA it was packed for."""
    cdef qe_gemm_packed *ptr

    def __cinit__(self, b, isa=None, b_is_u8=False):
        self.ptr = NULL
        cdef qe_isa path = _isa_from_name(isa)
        if not isinstance(b_is_u8, (bool, np.bool_, int, np.integer)) or b_is_u8 not in (0, 1):
            raise TypeError(f"b_is_u8 must be a bool, got {b_is_u8!r}")
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
    def tile(self):
        """(mr, nr, kr): the kernels' register tile, mr rows x nr columns, K in groups of kr
        bytes (kr = 0: the portable reference, which reads K one byte at a time)."""
        cdef size_t mr = 0, nr = 0, kr = 0
        qe_gemm_packed_tile_shape(self.ptr, &mr, &nr, &kr)
        return int(mr), int(nr), int(kr)

    @property
    def _b_address(self):
        """Where its packed B starts (tests of the prefetch hints)."""
        return <size_t>qe_gemm_packed_data(self.ptr)

    @property
    def _prefetch_address(self):
        """The packed B its prefetch hint names (Program sets it), 0 if none."""
        return <size_t>qe_gemm_packed_next_data(self.ptr)

    @property
    def col_sums(self):
        cdef size_t n = qe_gemm_packed_n(self.ptr)
        cdef const int32_t *s = qe_gemm_packed_col_sums(self.ptr)
        return np.array(<int32_t[:n]>s, dtype=np.int32)


cdef object _weight_zero_points(b_zp, Py_ssize_t n):
    """b_zp as a C-contiguous int32 array of n values in [-128, 127] (a scalar broadcasts)."""
    if isinstance(b_zp, (int, np.integer)) and not isinstance(b_zp, bool):
        _check_int(b_zp, "b_zp", -128, 127)
        return np.full(n, b_zp, dtype=np.int32)
    bz = _vector(b_zp, np.int32, n, "b_zp", True)
    cdef const int32_t[::1] v = bz
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        if v[i] < -128 or v[i] > 127:
            raise ValueError(f"b_zp must be in [-128, 127], got {v[i]} at index {i}")
    return np.full(n, v[0], dtype=np.int32) if (v.shape[0] == 1 and n != 1) else bz


cdef class _GemmCall:
    """The validated arguments of one GEMM call; holds every array C will touch alive."""
    cdef qe_output out
    cdef list keep
    cdef object a, c
    cdef const uint8_t *a_ptr
    cdef void *c_ptr
    cdef size_t M, lda, ldc
    cdef int32_t a_zp
    cdef const int32_t *b_zp


cdef _GemmCall _gemm_prepare(GemmPacked b, a, a_zp, str out, bias, scale, zero_point, qmin,
                             qmax, fbias, b_zp, c):
    cdef _GemmCall g = _GemmCall.__new__(_GemmCall)
    g.keep = []
    a = _input_rows(a, np.uint8, "a")
    if a.shape[1] != b.K:
        raise ValueError(f"a has {a.shape[1]} columns but B has K = {b.K} rows")
    _check_int(a_zp, "a_zp", 0, 255)
    g.a_zp = a_zp
    cdef Py_ssize_t N = b.N
    _fill_output(&g.out, g.keep, out, N, bias, scale, zero_point, qmin, qmax, fbias)
    cdef const int32_t[::1] bzp_v
    g.b_zp = NULL
    if b_zp is not None:
        bz = _weight_zero_points(b_zp, N)
        g.keep.append(bz)
        bzp_v = bz
        g.b_zp = &bzp_v[0]
    g.a = a
    g.c = _output_array(c, out, a.shape[0], N, "c")
    g.M = a.shape[0]
    if g.M:
        g.a_ptr = <const uint8_t *>_buffer_ptr(a, False)
        g.c_ptr = _buffer_ptr(g.c, True)
        g.lda = a.strides[0] if g.M > 1 else a.shape[1]
        g.ldc = (g.c.strides[0] // g.c.itemsize) if g.M > 1 else N
    return g


def gemm_u8s8(GemmPacked b not None, a, a_zp, *, out="u8", bias=None, scale=None,
              zero_point=0, qmin=0, qmax=255, fbias=None, b_zp=None, c=None):
    """C = output(sum_k (a[m,k] - a_zp) * (B[k,n] - b_zp[n])), on the thread pool.

    a: uint8 (M, K), rows contiguous (a row stride > K is fine). out: 'u8' (requantize with
    scale = multipliers, zero_point, [qmin, qmax]), 'i32' (raw accumulators) or 'f32'
    (dequantize with scale, plus fbias). bias: int32 (N,). scale: (N,) or scalar. b_zp: int
    (N,) or scalar, in [-128, 127] (after any u8 shift). c: optional preallocated (M, N)
    output whose row stride may exceed N. Returns C."""
    cdef _GemmCall g = _gemm_prepare(b, a, a_zp, out, bias, scale, zero_point, qmin, qmax,
                                     fbias, b_zp, c)
    if g.M == 0:
        return g.c
    cdef int rc
    with nogil:
        rc = qe_gemm_u8s8(b.ptr, g.M, g.a_ptr, g.lda, g.a_zp, g.b_zp, &g.out, g.c_ptr, g.ldc)
    if rc != QE_OK:
        raise ValueError(f"qe_gemm_u8s8 rejected its arguments (code {rc})")
    return g.c


def _gemm_u8s8_serial(GemmPacked b not None, a, a_zp, Py_ssize_t n_begin, Py_ssize_t n_end, *,
                      out="u8", bias=None, scale=None, zero_point=0, qmin=0, qmax=255,
                      fbias=None, b_zp=None, c=None):
    """Test hook for qe_gemm_u8s8_serial, the single-threaded entry the convolution driver
    calls: like gemm_u8s8 but computes only columns [n_begin, n_end) of C (others untouched)."""
    cdef _GemmCall g = _gemm_prepare(b, a, a_zp, out, bias, scale, zero_point, qmin, qmax,
                                     fbias, b_zp, c)
    if not 0 <= n_begin < n_end <= b.N:
        raise ValueError(f"need 0 <= n_begin < n_end <= {b.N}, got [{n_begin}, {n_end})")
    if g.M == 0:
        return g.c
    with nogil:
        qe_gemm_u8s8_serial(b.ptr, g.M, g.a_ptr, g.lda, g.a_zp, g.b_zp, &g.out,
                            <size_t>n_begin, <size_t>n_end, g.c_ptr, g.ldc)
    return g.c
