/*
 * qgemm_neon_common.h -- what the two aarch64 GEMM families (qgemm_neon.c, qgemm_neondot.c)
 * share: the tile shape (4 rows x 16 columns, 16 int32x4 accumulators named c<row><vector>)
 * and the fused output pipeline. Include only from those files.
 */
#ifndef QE_QGEMM_NEON_COMMON_H
#define QE_QGEMM_NEON_COMMON_H

#include <arm_neon.h>
#include <string.h>

#include "qgemm.h"

enum { QE_NEON_MR = 4, QE_NEON_NR = 16, QE_NEON_NV_MAX = 4 };

#define QE_INLINE static inline __attribute__((always_inline))

/* Accumulators are named variables, not an array (GCC keeps arrays of vectors in memory);
 * rows >= mr and vectors >= nv compile out (both are constants in every instantiation). */
#define QE_NEON_FOR_ROWS(X) X(0) X(1) X(2) X(3)
#define QE_NEON_DECLARE_ACC(r)                                          \
    __attribute__((unused)) int32x4_t c##r##0 = vdupq_n_s32(0), c##r##1 = c##r##0, \
                                      c##r##2 = c##r##0, c##r##3 = c##r##0;

/* The output pipeline of 4 accumulators (epilogue columns col..col+3), storing lanes [lo, hi).
 * Same operations, same order as qe_output_row_ref: vcvtq_f32_s32 and vcvtnq_s32_f32 round to
 * nearest-even like the reference's conversions and lrintf; no fused multiply-add. */
QE_INLINE void qe_neon_store_vec(const qe_gemm_epilogue *ep, const qe_out_kind kind, size_t col,
                                 int32x4_t acc, int32_t rowterm, int lo, int hi, void *dst) {
    acc = vaddq_s32(acc, vld1q_s32(ep->colterm + col));
    if (ep->nbzp) acc = vmlaq_s32(acc, vdupq_n_s32(rowterm), vld1q_s32(ep->nbzp + col));
    const size_t es = kind == QE_OUT_U8 ? 1 : 4;
    union {
        int32x4_t i;
        float32x4_t f;
        uint8_t u8[16];
    } out;
    if (kind == QE_OUT_I32) {
        out.i = acc;
    } else if (kind == QE_OUT_F32) {
        float32x4_t v = vmulq_f32(vcvtq_f32_s32(acc), vld1q_f32(ep->scale + col));
        if (ep->fbias) v = vaddq_f32(v, vld1q_f32(ep->fbias + col));
        out.f = v;
    } else {
        float32x4_t v = vmulq_f32(vcvtq_f32_s32(acc), vld1q_f32(ep->scale + col));
        v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(ep->lo)), vdupq_n_f32(ep->hi));
        const int32x4_t q = vaddq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(ep->zp)); /* in [0, 255] */
        const uint16x4_t h = vqmovun_s32(q);
        vst1_u8(out.u8, vqmovn_u16(vcombine_u16(h, h)));
    }
    if (lo == 0 && hi == 4 && kind != QE_OUT_U8)
        vst1q_s32((int32_t *)dst, out.i);
    else
        memcpy((char *)dst + lo * es, out.u8 + lo * es, (size_t)(hi - lo) * es);
}

#define QE_NEON_STORE_VEC(r, v)                                                             \
    if (nv > v) {                                                                           \
        const int lo = (int)QE_MAX(t->col_lo, (size_t)(4 * v)) - 4 * v;                      \
        const int hi = (int)QE_MIN(t->col_hi, (size_t)(4 * v + 4)) - 4 * v;                  \
        if (lo < hi)                                                                        \
            qe_neon_store_vec(ep, kind, t->ep_col + 4 * v, c##r##v, rowterm, lo, hi,        \
                              row + 4 * v * es);                                            \
    }
#define QE_NEON_STORE_ROW(r)                                                          \
    if (r < mr) {                                                                     \
        const int32_t rowterm = ep->nbzp ? ep->rowterm[t->row0 + r] : 0;              \
        char *row = (char *)t->c + r * t->ldc * es;                                   \
        QE_NEON_STORE_VEC(r, 0) QE_NEON_STORE_VEC(r, 1) QE_NEON_STORE_VEC(r, 2)       \
        QE_NEON_STORE_VEC(r, 3)                                                       \
    }
#define QE_NEON_STORE_KIND(k)                          \
    case k: {                                          \
        const qe_out_kind kind = k;                    \
        const size_t es = k == QE_OUT_U8 ? 1 : 4;      \
        QE_NEON_FOR_ROWS(QE_NEON_STORE_ROW)            \
        break;                                         \
    }
/* The output pipeline of a whole tile, one expansion per output kind. */
#define QE_NEON_STORE_TILE()                    \
    do {                                        \
        const qe_gemm_epilogue *ep = t->ep;     \
        switch (ep->kind) {                     \
            QE_NEON_STORE_KIND(QE_OUT_I32)      \
            QE_NEON_STORE_KIND(QE_OUT_F32)      \
            QE_NEON_STORE_KIND(QE_OUT_U8)       \
        }                                       \
    } while (0)

/* The tile table of a family: functions pre<rows>x<cols>sfx, listed as
 * tiles[(rows - 1) * 4 + nv - 1]. */
#define QE_NEON_TILE(pre, sfx, impl, mr, cols, nv) \
    static void pre##mr##x##cols##sfx(const qe_gemm_tile *t) { impl(t, mr, nv); }
#define QE_NEON_TILE_ROW(pre, sfx, impl, mr)                                                \
    QE_NEON_TILE(pre, sfx, impl, mr, 4, 1) QE_NEON_TILE(pre, sfx, impl, mr, 8, 2)           \
    QE_NEON_TILE(pre, sfx, impl, mr, 12, 3) QE_NEON_TILE(pre, sfx, impl, mr, 16, 4)
#define QE_NEON_TILE_ENTRIES(pre, sfx, mr) \
    pre##mr##x4##sfx, pre##mr##x8##sfx, pre##mr##x12##sfx, pre##mr##x16##sfx

#endif
