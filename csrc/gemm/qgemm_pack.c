/*
 * qgemm_pack.c -- packing B into the panel layout that the blocked SIMD families read
 * (see qgemm.h): panel[g][col][kk], K zero-padded to k_pad, N padded to col_align per panel.
 * Weights are packed once, but MatMul of two activations (attention) packs its B on every
 * call, so the common layouts have loops the compiler vectorizes: whole groups of kr rows of a
 * row-major B (stride_n == 1) or of a transposed one (stride_k == 1, each column's K bytes
 * contiguous), for the two element layouts in use (kr 4 of int8, kr 2 of int16). Everything
 * else, and the partial last group, takes the element-by-element loop.
 */
#include "qgemm.h"

static size_t k_padded(const qe_gemm_ukernel *uk, size_t K) { return QE_ROUND_UP(K, uk->k_pad); }

size_t qe_gemm_panels_bytes(const qe_gemm_ukernel *uk, size_t K, size_t N) {
    const size_t panels = QE_DIV_UP(N, uk->nr);
    return qe_gemm_panel_offset(uk, K, panels - 1) +
           k_padded(uk, K) * qe_gemm_panel_width(uk, N, panels - 1) * uk->b_elem;
}

/* One whole group of kr rows of B (k0 .. k0 + kr - 1) into `dst` = panel[g][0][0], for columns
 * src + col * stride_n, col < cols. KR and T fixed so the loops vectorize. */
#define QE_PACK_GROUP_FIXED(KR, T)                                                               \
    static void pack_group_kr##KR##_##T(T *restrict dst, const uint8_t *restrict src,            \
                                        ptrdiff_t stride_k, ptrdiff_t stride_n, size_t cols,     \
                                        uint8_t flip) {                                          \
        if (stride_n == 1) {                                                                     \
            for (size_t col = 0; col < cols; col++)                                              \
                for (size_t kk = 0; kk < (KR); kk++)                                             \
                    dst[col * (KR) + kk] =                                                       \
                        (T)(int8_t)(src[(ptrdiff_t)kk * stride_k + (ptrdiff_t)col] ^ flip);      \
        } else { /* stride_k == 1 */                                                             \
            for (size_t col = 0; col < cols; col++)                                              \
                for (size_t kk = 0; kk < (KR); kk++)                                             \
                    dst[col * (KR) + kk] =                                                       \
                        (T)(int8_t)(src[(ptrdiff_t)col * stride_n + (ptrdiff_t)kk] ^ flip);      \
        }                                                                                        \
    }
QE_PACK_GROUP_FIXED(4, int8_t)
QE_PACK_GROUP_FIXED(2, int16_t)

void qe_gemm_pack_panels(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k,
                         ptrdiff_t stride_n, int xor128) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t K = p->K, N = p->N, kr = uk->kr;
    QE_ASSERT(uk->b_elem == 1 || uk->b_elem == 2);
    QE_ASSERT(uk->k_pad % kr == 0 && uk->nr % uk->col_align == 0);
    const uint8_t flip = xor128 ? 0x80 : 0x00;
    const int fast_layout = stride_n == 1 || stride_k == 1;
    const int kr4_i8 = fast_layout && kr == 4 && uk->b_elem == 1;
    const int kr2_i16 = fast_layout && kr == 2 && uk->b_elem == 2;
    for (size_t j = 0; j * uk->nr < N; j++) {
        const size_t n0 = j * uk->nr, w = qe_gemm_panel_width(uk, N, j);
        const size_t cols = QE_MIN(w, N - n0);
        char *panel = (char *)p->data + qe_gemm_panel_offset(uk, K, j);
        const uint8_t *col0 = b + (ptrdiff_t)n0 * stride_n;
        size_t k = 0;
        if (kr4_i8 || kr2_i16) {
            for (; k + kr <= K; k += kr) {
                const uint8_t *src = col0 + (ptrdiff_t)k * stride_k;
                const size_t at = (k / kr) * w * kr; /* panel[k / kr][0][0], in elements */
                if (kr4_i8)
                    pack_group_kr4_int8_t((int8_t *)panel + at, src, stride_k, stride_n, cols,
                                          flip);
                else
                    pack_group_kr2_int16_t((int16_t *)panel + at, src, stride_k, stride_n, cols,
                                           flip);
            }
        }
        for (; k < K; k++) { /* any layout, element by element */
            const size_t g = k / kr, kk = k % kr;
            const uint8_t *src = col0 + (ptrdiff_t)k * stride_k;
            for (size_t col = 0; col < cols; col++) {
                const int8_t v = (int8_t)(uint8_t)(src[(ptrdiff_t)col * stride_n] ^ flip);
                const size_t idx = (g * w + col) * kr + kk;
                if (uk->b_elem == 1)
                    ((int8_t *)panel)[idx] = v;
                else
                    ((int16_t *)panel)[idx] = v;
            }
        }
        /* padding (k >= K, col >= cols) stays zero: p->data was cleared */
    }
}
