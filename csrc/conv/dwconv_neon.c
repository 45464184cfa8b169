/*
 * dwconv_neon.c -- depthwise u8 x s8 kernel for aarch64 Advanced SIMD, 16 channels at a time.
 *
 * The packed pairs [c][tap] are split back into per-tap vectors by vld2q_s16; inputs are widened
 * to int16 (exact) and multiply-accumulated into 4 x 4 int32 lanes with smlal (products are
 * exact, the accumulation wraps like the reference). A partial last tile copies its bytes to a
 * zeroed buffer and finishes with the reference output pipeline.
 */
#include <string.h>

#include "../eltwise/requant_simd.h"
#include "conv.h"

static inline void dw_tap_neon(uint8x16_t x, int16x8_t w_lo, int16x8_t w_hi, int32x4_t *acc) {
    const int16x8_t x0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(x)));
    const int16x8_t x1 = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(x)));
    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w_lo));
    acc[1] = vmlal_s16(acc[1], vget_high_s16(x0), vget_high_s16(w_lo));
    acc[2] = vmlal_s16(acc[2], vget_low_s16(x1), vget_low_s16(w_hi));
    acc[3] = vmlal_s16(acc[3], vget_high_s16(x1), vget_high_s16(w_hi));
}

static void dw_tile_neon(const qe_dw_params *p, const uint8_t *const *tp, size_t off, size_t c,
                         size_t rem, int32_t *out) {
    const int16_t *w = (const int16_t *)p->w + (c / QE_DW_TILE) * qe_dw_npairs(p) * 2 * QE_DW_TILE;
    int32x4_t acc[4];
    for (int i = 0; i < 4; i++) acc[i] = vld1q_s32(p->init + c + 4 * i);
    uint8_t ba[16] = {0}, bb[16] = {0};
    for (size_t j = 0; j < qe_dw_npairs(p); j++, w += 2 * QE_DW_TILE) {
        uint8x16_t a, b;
        if (rem == 16) {
            a = vld1q_u8(tp[2 * j] + off + c);
            b = vld1q_u8(tp[2 * j + 1] + off + c);
        } else {
            memcpy(ba, tp[2 * j] + off + c, rem);
            memcpy(bb, tp[2 * j + 1] + off + c, rem);
            a = vld1q_u8(ba);
            b = vld1q_u8(bb);
        }
        const int16x8x2_t w_lo = vld2q_s16(w), w_hi = vld2q_s16(w + 16); /* [0]: tap a, [1]: b */
        dw_tap_neon(a, w_lo.val[0], w_hi.val[0], acc);
        dw_tap_neon(b, w_lo.val[1], w_hi.val[1], acc);
    }
    for (int i = 0; i < 4; i++) vst1q_s32(out + 4 * i, acc[i]);
}

/* The output pipeline of 16 full channels [c, c+16). */
static void dw_output_neon(const qe_output *o, const int32_t *acc, size_t c, char *dst) {
    if (o->kind == QE_OUT_I32) {
        memcpy(dst, acc, 16 * sizeof(int32_t));
        return;
    }
    float32x4_t v[4];
    for (int i = 0; i < 4; i++) {
        const float32x4_t s = o->per_channel ? vld1q_f32(o->scale + c + 4 * i) : vdupq_n_f32(o->scale[0]);
        v[i] = vmulq_f32(vcvtq_f32_s32(vld1q_s32(acc + 4 * i)), s);
    }
    if (o->kind == QE_OUT_F32) {
        for (int i = 0; i < 4; i++) {
            if (o->fbias) v[i] = vaddq_f32(v[i], vld1q_f32(o->fbias + c + 4 * i));
            vst1q_f32((float *)dst + 4 * i, v[i]);
        }
        return;
    }
    const float32x4_t lo = vdupq_n_f32((float)(o->qmin - o->zero_point));
    const float32x4_t hi = vdupq_n_f32((float)(o->qmax - o->zero_point));
    const int32x4_t zp = vdupq_n_s32(o->zero_point);
    vst1q_u8((uint8_t *)dst, qe_pack16_u8_neon(qe_requant_ps_neon(v[0], lo, hi, zp),
                                               qe_requant_ps_neon(v[1], lo, hi, zp),
                                               qe_requant_ps_neon(v[2], lo, hi, zp),
                                               qe_requant_ps_neon(v[3], lo, hi, zp)));
}

void qe_dwconv_u8s8_up16__neon(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               size_t step, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->ntaps > 0 &&
              p->tap_stride == QE_ROUND_UP(p->ntaps, 2));
    const size_t C = p->channels, T2 = p->tap_stride, es = qe_output_elem_size(p->out->kind);
    int32_t acc[16];
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = step ? taps : taps + px * T2;
        const size_t off = px * step;
        char *dst = (char *)y + px * p->ldy * es;
        for (size_t c = 0; c < C; c += 16) {
            const size_t rem = QE_MIN(16, C - c);
            dw_tile_neon(p, tp, off, c, rem, acc);
            if (rem == 16)
                dw_output_neon(p->out, acc, c, dst + c * es);
            else
                qe_output_row_ref(p->out, acc, c, rem, dst + c * es);
        }
    }
}

const qe_dw_ukernel qe_dw_neon = {
    .kernel = qe_dwconv_u8s8_up16__neon, .layout = QE_DW_PAIRS_S16, .tile = QE_DW_TILE};
