/*
 * eltwise_neon.c -- element-wise kernels for aarch64 Advanced SIMD: 16 uint8 (4 x 4 float32
 * lanes) per step; a 256-entry lookup is four 64-byte tbl/tbx steps. A partial last vector is
 * staged through a stack buffer (nothing outside [0, n) is touched; y may alias an input).
 */
#include <string.h>

#include "../eltwise/requant_simd.h"
#include "eltwise.h"

static inline void widen16(uint8x16_t v, int32_t zp, int32x4_t *out) {
    const int16x8_t lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
    const int16x8_t hi = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(v)));
    const int32x4_t z = vdupq_n_s32(zp);
    out[0] = vsubq_s32(vmovl_s16(vget_low_s16(lo)), z);
    out[1] = vsubq_s32(vmovl_s16(vget_high_s16(lo)), z);
    out[2] = vsubq_s32(vmovl_s16(vget_low_s16(hi)), z);
    out[3] = vsubq_s32(vmovl_s16(vget_high_s16(hi)), z);
}

static inline uint8x16_t requant16(const float32x4_t *v, const qe_binary_params *p) {
    const float32x4_t lo = vdupq_n_f32((float)(p->qmin - p->y_zp));
    const float32x4_t hi = vdupq_n_f32((float)(p->qmax - p->y_zp));
    const int32x4_t zp = vdupq_n_s32(p->y_zp);
    return qe_pack16_u8_neon(qe_requant_ps_neon(v[0], lo, hi, zp), qe_requant_ps_neon(v[1], lo, hi, zp),
                             qe_requant_ps_neon(v[2], lo, hi, zp), qe_requant_ps_neon(v[3], lo, hi, zp));
}

static inline uint8x16_t add16(const uint8_t *a, const uint8_t *b, const qe_binary_params *p) {
    int32x4_t ia[4], ib[4];
    float32x4_t v[4];
    widen16(vld1q_u8(a), p->a_zp, ia);
    widen16(vld1q_u8(b), p->b_zp, ib);
    for (int i = 0; i < 4; i++)
        v[i] = vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(ia[i]), p->a_mult),
                         vmulq_n_f32(vcvtq_f32_s32(ib[i]), p->b_mult));
    return requant16(v, p);
}

static inline uint8x16_t mul16(const uint8_t *a, const uint8_t *b, const qe_binary_params *p) {
    int32x4_t ia[4], ib[4];
    float32x4_t v[4];
    widen16(vld1q_u8(a), p->a_zp, ia);
    widen16(vld1q_u8(b), p->b_zp, ib);
    for (int i = 0; i < 4; i++) v[i] = vmulq_n_f32(vcvtq_f32_s32(vmulq_s32(ia[i], ib[i])), p->a_mult);
    return requant16(v, p);
}

#define QE_BINARY_NEON(name, op16)                                                              \
    static void name(size_t n, const uint8_t *a, const uint8_t *b, const qe_binary_params *p,   \
                     uint8_t *y) {                                                              \
        size_t i = 0;                                                                           \
        for (; i + 16 <= n; i += 16) vst1q_u8(y + i, op16(a + i, b + i, p));                    \
        if (i < n) {                                                                            \
            uint8_t ta[16] = {0}, tb[16] = {0}, ty[16];                                          \
            memcpy(ta, a + i, n - i);                                                           \
            memcpy(tb, b + i, n - i);                                                           \
            vst1q_u8(ty, op16(ta, tb, p));                                                      \
            memcpy(y + i, ty, n - i);                                                           \
        }                                                                                       \
    }
QE_BINARY_NEON(add_neon, add16)
QE_BINARY_NEON(mul_neon, mul16)

static inline uint8x16_t lut16(uint8x16_t v, const uint8x16x4_t *t) {
    const uint8x16_t step = vdupq_n_u8(64);
    uint8x16_t r = vqtbl4q_u8(t[0], v); /* indices >= 64 give 0, then tbx fills them in */
    v = vsubq_u8(v, step);
    r = vqtbx4q_u8(r, t[1], v);
    v = vsubq_u8(v, step);
    r = vqtbx4q_u8(r, t[2], v);
    v = vsubq_u8(v, step);
    return vqtbx4q_u8(r, t[3], v);
}

static void lut_neon(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                     const uint8_t *table, uint8_t *y, size_t ldy) {
    uint8x16x4_t t[4];
    for (int i = 0; i < 4; i++) t[i] = vld1q_u8_x4(table + 64 * i);
    for (size_t r = 0; r < rows; r++, x += ldx, y += ldy) {
        size_t i = 0;
        for (; i + 16 <= cols; i += 16) vst1q_u8(y + i, lut16(vld1q_u8(x + i), t));
        if (i < cols) {
            uint8_t tb[16] = {0};
            memcpy(tb, x + i, cols - i);
            vst1q_u8(tb, lut16(vld1q_u8(tb), t));
            memcpy(y + i, tb, cols - i);
        }
    }
}

/* Quantize and dequantize: 4 lanes per step, the scalar reference for a tail. */
static void quantize_neon(size_t n, const float *x, const float *scale, const int32_t *zp,
                          int per_elem, int32_t qmin, int32_t qmax, uint8_t *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t s = per_elem ? vld1q_f32(scale + i) : vdupq_n_f32(scale[0]);
        const int32x4_t z = per_elem ? vld1q_s32(zp + i) : vdupq_n_s32(zp[0]);
        float32x4_t v = vdivq_f32(vld1q_f32(x + i), s);
        v = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), vceqq_f32(v, v))); /* NaN->0 */
        const float32x4_t lo = vcvtq_f32_s32(vsubq_s32(vdupq_n_s32(qmin), z));
        const float32x4_t hi = vcvtq_f32_s32(vsubq_s32(vdupq_n_s32(qmax), z));
        int32_t q[4];
        vst1q_s32(q, qe_requant_ps_neon(v, lo, hi, z));
        for (int k = 0; k < 4; k++) y[i + k] = (uint8_t)q[k];
    }
    qe_eltwise_ref.quantize(n - i, x + i, per_elem ? scale + i : scale, per_elem ? zp + i : zp,
                            per_elem, qmin, qmax, y + i);
}

static void dequantize8_neon(size_t n, const uint8_t *x, int is_signed, const float *scale,
                             const int32_t *zp, int per_elem, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t s = per_elem ? vld1q_f32(scale + i) : vdupq_n_f32(scale[0]);
        const int32x4_t z = per_elem ? vld1q_s32(zp + i) : vdupq_n_s32(zp[0]);
        int32_t v[4];
        for (int k = 0; k < 4; k++) v[k] = is_signed ? (int8_t)x[i + k] : x[i + k];
        vst1q_f32(y + i, vmulq_f32(vcvtq_f32_s32(vsubq_s32(vld1q_s32(v), z)), s));
    }
    qe_eltwise_ref.dequantize8(n - i, x + i, is_signed, per_elem ? scale + i : scale,
                               per_elem ? zp + i : zp, per_elem, y + i);
}

static void dequantize32_neon(size_t n, const int32_t *x, const float *scale, int per_elem,
                              float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t s = per_elem ? vld1q_f32(scale + i) : vdupq_n_f32(scale[0]);
        vst1q_f32(y + i, vmulq_f32(vcvtq_f32_s32(vld1q_s32(x + i)), s));
    }
    qe_eltwise_ref.dequantize32(n - i, x + i, per_elem ? scale + i : scale, per_elem, y + i);
}

const qe_eltwise_kernels qe_eltwise_neon = {
    .add = add_neon,
    .mul = mul_neon,
    .lut = lut_neon,
    .quantize = quantize_neon,
    .dequantize8 = dequantize8_neon,
    .dequantize32 = dequantize32_neon,
};
