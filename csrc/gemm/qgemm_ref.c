/*
 * qgemm_ref.c -- the portable reference GEMM: the definition every SIMD path must equal.
 * Layout: B stored transposed, one row of K int8 per output column n (n-major).
 * Slow on purpose: plain loops, no blocking, the output pipeline through qe_output_row_ref.
 */
#include <string.h>

#include "qgemm.h"

static size_t ref_packed_bytes(const qe_gemm_ukernel *uk, size_t K, size_t N) { return K * N; }

static void ref_pack(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k, ptrdiff_t stride_n,
                     int xor128) {
    int8_t *dst = p->data;
    for (size_t n = 0; n < p->N; n++)
        for (size_t k = 0; k < p->K; k++) {
            uint8_t v = b[(ptrdiff_t)k * stride_k + (ptrdiff_t)n * stride_n];
            dst[n * p->K + k] = (int8_t)(xor128 ? (uint8_t)(v ^ 0x80) : v);
        }
}

static void ref_run(const qe_gemm_packed *p, size_t M, const uint8_t *a, size_t lda, int32_t a_zp,
                    const int32_t *b_zp, const qe_output *out, size_t n_begin, size_t n_end,
                    void *c, size_t ldc) {
    const size_t K = p->K, cols = n_end - n_begin, es = qe_output_elem_size(out->kind);
    const int8_t *B = p->data;
    int32_t *acc = qe_scratch(0, cols * sizeof(int32_t));
    QE_ASSERT(acc != NULL);
    for (size_t m = 0; m < M; m++) {
        const uint8_t *row = a + m * lda;
        int32_t rowsum = 0;
        if (b_zp)
            for (size_t k = 0; k < K; k++) rowsum += row[k];
        for (size_t j = 0; j < cols; j++) {
            const size_t n = n_begin + j;
            const int8_t *col = B + n * K;
            int32_t s = 0; /* |s| <= K * 255 * 128 < 2^31 for K <= QE_MAX_K */
            for (size_t k = 0; k < K; k++) s += (int32_t)row[k] * (int32_t)col[k];
            s = qe_add_wrap(s, qe_mul_wrap(-a_zp, p->col_sums[n]));
            if (b_zp) {
                s = qe_add_wrap(s, qe_mul_wrap(-b_zp[n], rowsum));
                s = qe_add_wrap(s, qe_mul_wrap((int32_t)K * a_zp, b_zp[n]));
            }
            acc[j] = s;
        }
        qe_output_row_ref(out, acc, n_begin, cols, (char *)c + (m * ldc + n_begin) * es);
    }
}

const qe_gemm_ukernel qe_gemm_ukernel_ref = {
    .name = "qgemm_u8s8_ref",
    .packed_bytes = ref_packed_bytes,
    .pack = ref_pack,
    .run = ref_run,
    .mr = 4,
    .nr = 16,
};
