/*
 * qgemm.h -- inside the int8 GEMM: the packed-weights object, the per-ISA kernel descriptor,
 * and the single-threaded entry that the convolution driver calls on its own tiles.
 *
 * C[m][n] = output( sum_k A[m][k] * B[k][n] - a_zp * colsum[n]
 *                   - b_zp[n] * rowsum[m] + K * a_zp * b_zp[n] )        (int32, wrapping)
 * which equals sum_k (A - a_zp)(B - b_zp) exactly; colsum is computed once at pack time.
 */
#ifndef QE_QGEMM_H
#define QE_QGEMM_H

#include "../output.h"

typedef struct qe_gemm_ukernel qe_gemm_ukernel;

struct qe_gemm_packed {
    size_t K, N;
    qe_isa isa;
    const qe_gemm_ukernel *uk; /* the kernel family this layout belongs to */
    void *data;                /* packed B, layout defined by uk */
    size_t data_bytes;
    int32_t *col_sums;         /* [N] sum_k B[k][n] */
};

/* A per-ISA GEMM implementation: how it packs B and how it computes a block of C on the calling
 * thread. `run` computes rows [0, M) and columns [n_begin, n_end) of C. */
struct qe_gemm_ukernel {
    const char *name;
    /* Bytes of packed data for K x N. */
    size_t (*packed_bytes)(size_t K, size_t N);
    /* Fill p->data from B (element (k, n) at b[k*stride_k + n*stride_n]; xor128 flips uint8 to
     * int8 by subtracting 128). */
    void (*pack)(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k, ptrdiff_t stride_n,
                 int xor128);
    void (*run)(const qe_gemm_packed *p, size_t M, const uint8_t *a, size_t lda, int32_t a_zp,
                const int32_t *b_zp, const qe_output *out, size_t n_begin, size_t n_end, void *c,
                size_t ldc);
    /* Preferred task tile for the threaded driver (rows, columns). */
    size_t tile_m, tile_n;
};

extern const qe_gemm_ukernel qe_gemm_ukernel_ref;

/* Single-threaded GEMM on the calling thread over columns [n_begin, n_end) (conv uses this to
 * run its own im2col tiles inside its own parallel loop). Arguments as qe_gemm_u8s8. */
void qe_gemm_u8s8_serial(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out, size_t n_begin,
                         size_t n_end, void *c, size_t ldc);

#endif
