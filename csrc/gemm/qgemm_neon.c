/*
 * qgemm_neon.c -- u8 x s8 GEMM tiles for baseline aarch64 NEON (no dot product), exact.
 *
 * A is zero-extended to int16 once per row strip (prep_a) and B is packed as int16, one row of
 * the panel per k (kr = 1, K padded to 8 with zeros). smlal by lane multiplies 4 int16 columns
 * of B by one int16 element of A and widens the products into int32 accumulators: every
 * product (|255 * 128|) and every sum (K <= QE_MAX_K) is exact.
 *
 * Tile: 4 rows x 16 columns: 16 accumulators, 8 k of each A row in one register (their lanes
 * feed 8 successive k), 2 B registers per k.
 */
#include "qgemm_neon_common.h"

enum { KR = 1, K_PAD = 8 };

/* A rows -> int16 rows of K rounded up to 8 (zeros past K); returns the row stride in bytes. */
static size_t prep_a_neon(const uint8_t *a, size_t lda, size_t rows, size_t K, void *dst) {
    const size_t kp = QE_ROUND_UP(K, K_PAD), stride = kp * sizeof(int16_t);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = a + r * lda;
        int16_t *d = (int16_t *)((char *)dst + r * stride);
        size_t k = 0;
        for (; k + 8 <= K; k += 8) vst1q_s16(d + k, vreinterpretq_s16_u16(vmovl_u8(vld1_u8(src + k))));
        for (; k < K; k++) d[k] = src[k];
        for (; k < kp; k++) d[k] = 0;
    }
    return stride;
}

#define QE_DECLARE_ROW(r)   \
    QE_NEON_DECLARE_ACC(r)  \
    __attribute__((unused)) const int16_t *a##r = (const int16_t *)((const char *)t->a + (r < mr ? r : 0) * t->lda); \
    __attribute__((unused)) int16x8_t x##r;
#define QE_LOAD_A(r) if (r < mr) x##r = vld1q_s16(a##r + k);
/* One k (lane `l` of the 8 loaded from each row) times the 16 columns of B row b0|b1. */
#define QE_MLA_ROW(r, l)                                                            \
    if (r < mr) {                                                                   \
        if (nv > 0) c##r##0 = vmlal_laneq_s16(c##r##0, vget_low_s16(b0), x##r, l);  \
        if (nv > 1) c##r##1 = vmlal_high_laneq_s16(c##r##1, b0, x##r, l);           \
        if (nv > 2) c##r##2 = vmlal_laneq_s16(c##r##2, vget_low_s16(b1), x##r, l);  \
        if (nv > 3) c##r##3 = vmlal_high_laneq_s16(c##r##3, b1, x##r, l);           \
    }
/* Load one row of the panel (4 * nv int16, never more) and multiply it into every row. */
#define QE_MLA_K(l)                                                                            \
    do {                                                                                       \
        const int16x8_t b0 = nv > 1 ? vld1q_s16(b) : vcombine_s16(vld1_s16(b), vdup_n_s16(0)); \
        const int16x8_t b1 = nv > 3   ? vld1q_s16(b + 8)                                       \
                             : nv > 2 ? vcombine_s16(vld1_s16(b + 8), vdup_n_s16(0))           \
                                      : vdupq_n_s16(0);                                        \
        b += 4 * nv;                                                                           \
        QE_MLA_ROW(0, l) QE_MLA_ROW(1, l) QE_MLA_ROW(2, l) QE_MLA_ROW(3, l)                    \
    } while (0)

/* The register tile: mr rows x (4 * nv) columns over all of K. */
QE_INLINE void tile_neon(const qe_gemm_tile *t, const int mr, const int nv) {
    QE_NEON_FOR_ROWS(QE_DECLARE_ROW)
    const int16_t *b = t->b;
    const size_t kp = QE_ROUND_UP(t->K, K_PAD);
    for (size_t k = 0; k < kp; k += 8) {
        QE_NEON_FOR_ROWS(QE_LOAD_A)
        QE_MLA_K(0); QE_MLA_K(1); QE_MLA_K(2); QE_MLA_K(3);
        QE_MLA_K(4); QE_MLA_K(5); QE_MLA_K(6); QE_MLA_K(7);
    }
    QE_NEON_STORE_TILE();
}

QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c1__neon, tile_neon, 1)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c1__neon, tile_neon, 2)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c1__neon, tile_neon, 3)
QE_NEON_TILE_ROW(qe_gemm_u8s8_ukernel_, c1__neon, tile_neon, 4)

static const qe_gemm_tile_fn g_tiles[QE_NEON_MR * QE_NEON_NV_MAX] = {
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c1__neon, 1),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c1__neon, 2),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c1__neon, 3),
    QE_NEON_TILE_ENTRIES(qe_gemm_u8s8_ukernel_, c1__neon, 4),
};

const qe_gemm_ukernel qe_gemm_ukernel_neon = {
    .name = "qgemm_u8s8_4x16c1__neon",
    .packed_bytes = qe_gemm_panels_bytes,
    .pack = qe_gemm_pack_panels,
    .run = qe_gemm_run_blocked,
    .mr = QE_NEON_MR,
    .nr = QE_NEON_NR,
    .kr = KR,
    .k_pad = K_PAD,
    .col_align = 4,
    .b_elem = 2,
    .a_bias = 0,
    .nv_max = QE_NEON_NV_MAX,
    .tiles = g_tiles,
    .prep_a = prep_a_neon,
    .prep_a_elem = sizeof(int16_t),
};
