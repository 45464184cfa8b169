# C declarations of csrc/qe_kernels.h, shared by qengine/_kernels.pyx and its .pxi parts.
from libc.stdint cimport int8_t, uint8_t, int32_t, uint64_t

cdef extern from "qe_kernels.h" nogil:
    enum:
        QE_OK
        QE_ERR_ARG
        QE_ERR_NOMEM
        QE_ERR_ISA
        QE_ERR_OVERFLOW
        QE_MAX_K

    ctypedef enum qe_isa:
        QE_ISA_REF
        QE_ISA_AVX2
        QE_ISA_AVX512VNNI
        QE_ISA_NEON
        QE_ISA_NEON_DOTPROD
        QE_ISA_COUNT

    enum:
        QE_FEAT_AVX2
        QE_FEAT_FMA
        QE_FEAT_AVX512F
        QE_FEAT_AVX512BW
        QE_FEAT_AVX512VL
        QE_FEAT_AVX512VNNI
        QE_FEAT_AVX512VBMI
        QE_FEAT_AVXVNNI
        QE_FEAT_NEON
        QE_FEAT_DOTPROD

    unsigned qe_cpu_features()
    int qe_isa_available(qe_isa isa)
    qe_isa qe_isa_best()
    int qe_set_isa(qe_isa isa)
    qe_isa qe_get_isa()
    const char *qe_isa_name(qe_isa isa)
    uint64_t qe_int8_peak_probe(qe_isa isa, uint64_t iterations) nogil

    int qe_set_num_threads(int n)
    int qe_get_num_threads()
    uint64_t qe_pool_jobs_dispatched()

    ctypedef enum qe_out_kind:
        QE_OUT_U8
        QE_OUT_I32
        QE_OUT_F32

    ctypedef struct qe_output:
        qe_out_kind kind
        const int32_t *bias
        const float *scale
        int per_channel
        int32_t zero_point
        int32_t qmin
        int32_t qmax
        const float *fbias

    ctypedef struct qe_gemm_packed:
        pass
    qe_gemm_packed *qe_gemm_pack(const void *b, size_t K, size_t N, Py_ssize_t stride_k,
                                 Py_ssize_t stride_n, int b_is_u8, qe_isa isa)
    void qe_gemm_packed_free(qe_gemm_packed *p)
    size_t qe_gemm_packed_k(const qe_gemm_packed *p)
    size_t qe_gemm_packed_n(const qe_gemm_packed *p)
    size_t qe_gemm_packed_nbytes(const qe_gemm_packed *p)
    qe_isa qe_gemm_packed_isa(const qe_gemm_packed *p)
    void qe_gemm_packed_tile_shape(const qe_gemm_packed *p, size_t *mr, size_t *nr, size_t *kr)
    const int32_t *qe_gemm_packed_col_sums(const qe_gemm_packed *p)
    void qe_gemm_packed_set_next(qe_gemm_packed *p, const qe_gemm_packed *next)
    const void *qe_gemm_packed_next_data(const qe_gemm_packed *p)
    const void *qe_gemm_packed_data(const qe_gemm_packed *p)
    int qe_gemm_u8s8(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                     int32_t a_zp, const int32_t *b_zp, const qe_output *out, void *c, size_t ldc)
    ctypedef struct qe_matmul_shape:
        size_t batch, M, K, N
        size_t lda, ldb, ldc
        size_t a_stride, b_stride, c_stride
        int b_trans
    int qe_matmul_u8u8(const qe_matmul_shape *s, const uint8_t *a, int32_t a_zp, const uint8_t *b,
                       int32_t b_zp, const qe_output *out, void *c, qe_isa isa)

cdef extern from "qe_internal.h" nogil:
    void qe_set_thread_limit(int n)
    int qe_effective_threads()
