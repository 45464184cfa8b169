/*
 * qgemm_pack.c -- packing B into the panel layout that the blocked SIMD families read
 * (see qgemm.h): panel[g][col][kk], K zero-padded to k_pad, N padded to col_align per panel.
 * Runs once per weight tensor, so it is plain C.
 */
#include "qgemm.h"

static size_t k_padded(const qe_gemm_ukernel *uk, size_t K) { return QE_ROUND_UP(K, uk->k_pad); }

size_t qe_gemm_panels_bytes(const qe_gemm_ukernel *uk, size_t K, size_t N) {
    const size_t panels = QE_DIV_UP(N, uk->nr);
    return qe_gemm_panel_offset(uk, K, panels - 1) +
           k_padded(uk, K) * qe_gemm_panel_width(uk, N, panels - 1) * uk->b_elem;
}

void qe_gemm_pack_panels(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k,
                         ptrdiff_t stride_n, int xor128) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t K = p->K, N = p->N, kr = uk->kr;
    QE_ASSERT(uk->b_elem == 1 || uk->b_elem == 2);
    QE_ASSERT(uk->k_pad % kr == 0 && uk->nr % uk->col_align == 0);
    const uint8_t flip = xor128 ? 0x80 : 0x00;
    for (size_t j = 0; j * uk->nr < N; j++) {
        const size_t n0 = j * uk->nr, w = qe_gemm_panel_width(uk, N, j);
        const size_t cols = QE_MIN(w, N - n0);
        char *panel = (char *)p->data + qe_gemm_panel_offset(uk, K, j);
        for (size_t k = 0; k < K; k++) {
            const size_t g = k / kr, kk = k % kr;
            const uint8_t *src = b + (ptrdiff_t)k * stride_k + (ptrdiff_t)n0 * stride_n;
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
