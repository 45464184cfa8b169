/*
 * qgemm_neondot.c -- u8 x s8 GEMM tiles with the aarch64 dot-product extension (sdot), exact.
 *
 * sdot multiplies signed bytes only, so A is flipped to signed once per row strip (prep_a:
 * a ^ 0x80 == a - 128) and the tile computes sum_k (a - 128) * b; the driver adds back
 * 128 * colsum[n] through the per-column term (a_bias = 128). Each product is at most
 * 128 * 128 and every sum stays far inside int32, so the result equals the reference exactly.
 *
 * B is packed in groups of 4 k (kr = 4): one int8x16 holds 4 columns x 4 k. A row's 16 bytes
 * cover 4 groups; sdot by lane takes one group (4 bytes) of it against 4 columns of B.
 * Tile: 4 rows x 16 columns: 16 accumulators, 4 B and 4 A registers.
 */
#include "qgemm_neon_common.h"

enum { KR = 4 };

/* A rows -> int8 rows (a - 128) of K rounded up to 16 (zeros past K: B is zero there). */
static size_t prep_a_neondot(const uint8_t *a, size_t lda, size_t rows, size_t K, void *dst) {
    const size_t stride = QE_ROUND_UP(K, 16);
    const uint8x16_t flip = vdupq_n_u8(0x80);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = a + r * lda;
        uint8_t *d = (uint8_t *)dst + r * stride;
        size_t k = 0;
        for (; k + 16 <= K; k += 16) vst1q_u8(d + k, veorq_u8(vld1q_u8(src + k), flip));
        for (; k < K; k++) d[k] = src[k] ^ 0x80;
        for (; k < stride; k++) d[k] = 0;
    }
    return stride;
}

#define QE_DECLARE_ROW(r)   \
    QE_NEON_DECLARE_ACC(r)  \
    __attribute__((unused)) const int8_t *a##r = (const int8_t *)t->a + (r < mr ? r : 0) * t->lda; \
    __attribute__((unused)) int8x16_t x##r;
#define QE_LOAD_A(r) if (r < mr) x##r = vld1q_s8(a##r + KR * g);
#define QE_DOT_ROW(r, l)                                                  \
    if (r < mr) {                                                         \
        if (nv > 0) c##r##0 = vdotq_laneq_s32(c##r##0, b0, x##r, l);      \
        if (nv > 1) c##r##1 = vdotq_laneq_s32(c##r##1, b1, x##r, l);      \
        if (nv > 2) c##r##2 = vdotq_laneq_s32(c##r##2, b2, x##r, l);      \
        if (nv > 3) c##r##3 = vdotq_laneq_s32(c##r##3, b3, x##r, l);      \
    }
/* Group `l` of the 4 loaded from each row, against one group of the panel (4 * nv columns). */
#define QE_DOT_GROUP(l)                                                   \
    do {                                                                  \
        const int8x16_t b0 = vld1q_s8(b);                                 \
        const int8x16_t b1 = nv > 1 ? vld1q_s8(b + 16) : b0;              \
        const int8x16_t b2 = nv > 2 ? vld1q_s8(b + 32) : b0;              \
        const int8x16_t b3 = nv > 3 ? vld1q_s8(b + 48) : b0;              \
        b += 16 * nv;                                                     \
        QE_DOT_ROW(0, l) QE_DOT_ROW(1, l) QE_DOT_ROW(2, l) QE_DOT_ROW(3, l) \
    } while (0)

/* The register tile: mr rows x (4 * nv) columns over all of K. */
QE_INLINE void tile_neondot(const qe_gemm_tile *t, const int mr, const int nv) {
    QE_NEON_FOR_ROWS(QE_DECLARE_ROW)
    const int8_t *b = t->b;
    const size_t groups = QE_DIV_UP(t->K, KR);
    size_t g = 0;
    for (; g + 4 <= groups; g += 4) {
        QE_NEON_FOR_ROWS(QE_LOAD_A)
        QE_DOT_GROUP(0); QE_DOT_GROUP(1); QE_DOT_GROUP(2); QE_DOT_GROUP(3);
    }
    if (g < groups) { /* 1 to 3 groups left: B has exactly that many, A rows are padded */
        QE_NEON_FOR_ROWS(QE_LOAD_A)
        QE_DOT_GROUP(0);
        if (g + 1 < groups) QE_DOT_GROUP(1);
        if (g + 2 < groups) QE_DOT_GROUP(2);
    }
    QE_NEON_STORE_TILE();
}

QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c4__neondot, tile_neondot, 1)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c4__neondot, tile_neondot, 2)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c4__neondot, tile_neondot, 3)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c4__neondot, tile_neondot, 4)

static const qe_gemm_tile_fn g_tiles[QE_NEON_MR * QE_NEON_NV_MAX] = {
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c4__neondot, 1),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c4__neondot, 2),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c4__neondot, 3),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c4__neondot, 4),
};

const qe_gemm_ukernel qe_gemm_ukernel_neondot = {
    .name = "qgemm_u8s8_4x16c4__neondot",
    .packed_bytes = qe_gemm_panels_bytes,
    .pack = qe_gemm_pack_panels,
    .run = qe_gemm_run_blocked,
    .mr = QE_NEON_MR,
    .nr = QE_NEON_NR,
    .kr = KR,
    .k_pad = KR,
    .col_align = 4,
    .b_elem = 1,
    .a_bias = 128,
    .nv_max = QE_NEON_NV_MAX,
    .tiles = g_tiles,
    .prep_a = prep_a_neondot,
    .prep_a_elem = 1,
};
