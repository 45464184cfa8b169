/*
 * pool_neon.c -- pooling kernels for aarch64 Advanced SIMD, 16 channels per vector. Average
 * sums are exact in uint16 for up to 256 taps (uaddw), then flushed to int32. The last partial
 * vector is recomputed as the vector ending at the channel count; fewer than 16 channels go to
 * the reference.
 */
#include "../eltwise/requant_simd.h"
#include "pool.h"

void qe_maxpool_u8_c16__neon(size_t pixels, size_t channels, size_t ntaps,
                             const uint8_t *const *taps, uint8_t *y) {
    QE_ASSERT(taps && y && ntaps > 0);
    if (channels < 16) {
        qe_maxpool_u8_ref(pixels, channels, ntaps, taps, y);
        return;
    }
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels)
        for (size_t c0 = 0; c0 < channels; c0 += 16) {
            const size_t c = QE_MIN(c0, channels - 16);
            uint8x16_t v = vld1q_u8(taps[0] + c);
            for (size_t t = 1; t < ntaps; t++) v = vmaxq_u8(v, vld1q_u8(taps[t] + c));
            vst1q_u8(y + c, v);
        }
}

void qe_maxpool_column_u8_c16__neon(size_t out_rows, size_t channels, const uint8_t *const *cols,
                                    size_t ncols, size_t rows, size_t kernel, size_t stride,
                                    size_t pad, uint8_t *y, size_t ldy) {
    QE_ASSERT(y && (cols || ncols == 0));
    if (channels < 16) {
        qe_maxpool_column_u8_ref(out_rows, channels, cols, ncols, rows, kernel, stride, pad, y,
                                 ldy);
        return;
    }
    for (size_t i = 0; i < out_rows; i++, y += ldy) {
        size_t r0, r1;
        qe_pool_window_rows(i, kernel, stride, pad, rows, &r0, &r1);
        for (size_t c0 = 0; c0 < channels; c0 += 16) {
            const size_t c = QE_MIN(c0, channels - 16); /* the last vector ends at channels */
            uint8x16_t v = vdupq_n_u8(0);
            for (size_t k = 0; k < ncols; k++)
                for (size_t r = r0; r < r1; r++)
                    v = vmaxq_u8(v, vld1q_u8(cols[k] + r * channels + c));
            vst1q_u8(y + c, v);
        }
    }
}

/* Sum 16 channels at c over n rows (base[i] + c, or x + i * ldx + c), then requantize. */
static void sum_store16(size_t n, const uint8_t *const *base, const uint8_t *x, size_t ldx,
                        size_t c, float mult, const qe_pool_requant *rq, uint8_t *y) {
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const size_t i1 = QE_MIN(n, i0 + 256);
        uint16x8_t lo = vdupq_n_u16(0), hi = vdupq_n_u16(0);
        for (size_t i = i0; i < i1; i++) {
            const uint8x16_t v = vld1q_u8((base ? base[i] : x + i * ldx) + c);
            lo = vaddw_u8(lo, vget_low_u8(v));
            hi = vaddw_u8(hi, vget_high_u8(v));
        }
        acc[0] = vaddq_s32(acc[0], vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo))));
        acc[1] = vaddq_s32(acc[1], vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(lo))));
        acc[2] = vaddq_s32(acc[2], vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi))));
        acc[3] = vaddq_s32(acc[3], vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(hi))));
    }
    const float32x4_t lo = vdupq_n_f32((float)(rq->qmin - rq->zp));
    const float32x4_t hi = vdupq_n_f32((float)(rq->qmax - rq->zp));
    const int32x4_t zp = vdupq_n_s32(rq->zp), sub = vdupq_n_s32(rq->sub);
    int32x4_t q[4];
    for (int i = 0; i < 4; i++)
        q[i] = qe_requant_ps_neon(vmulq_n_f32(vcvtq_f32_s32(vsubq_s32(acc[i], sub)), mult), lo, hi, zp);
    vst1q_u8(y + c, qe_pack16_u8_neon(q[0], q[1], q[2], q[3]));
}

void qe_avgpool_u8_c16__neon(size_t pixels, size_t channels, size_t ntaps,
                             const uint8_t *const *taps, const float *mult,
                             const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(taps && mult && rq && y && ntaps > 0 && ntaps <= 65536);
    if (channels < 16) {
        qe_avgpool_u8_ref(pixels, channels, ntaps, taps, mult, rq, y);
        return;
    }
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels)
        for (size_t c0 = 0; c0 < channels; c0 += 16)
            sum_store16(ntaps, taps, NULL, 0, QE_MIN(c0, channels - 16), mult[px], rq, y);
}

void qe_gavgpool_u8_c16__neon(size_t rows, size_t channels, const uint8_t *x, size_t ldx,
                              float mult, const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(x && rq && y && rows > 0 && rows <= ((size_t)1 << 23));
    if (channels < 16) {
        qe_gavgpool_u8_ref(rows, channels, x, ldx, mult, rq, y);
        return;
    }
    for (size_t c0 = 0; c0 < channels; c0 += 16)
        sum_store16(rows, NULL, x, ldx, QE_MIN(c0, channels - 16), mult, rq, y);
}
