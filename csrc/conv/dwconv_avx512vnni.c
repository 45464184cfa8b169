/*
 * dwconv_avx512vnni.c -- depthwise u8 x s8 (as int16 pairs) kernel, 32 channels per tile and up
 * to 64 channels at a time.
 *
 * Per tile of 32 channels and pair of taps: each tap's 32 bytes are widened to int16
 * (vpmovzxbw), the two taps interleaved by vpunpck{l,h}wd, and each half multiplied with its
 * weight pairs by one vpdpwssd: 6 instructions for 64 multiply-adds. The unpacks work inside
 * 128-bit lanes, so the accumulators hold channels in the order qe_dw_lane_channel (the weights
 * are packed in that order); one vpermt2d per 16 channels restores the natural order before the
 * output pipeline. Products are exact (|x * w| <= 255 * 255) and accumulation wraps like the
 * reference. A partial last tile uses masked loads: no byte past the channel count is read.
 */
#include "../eltwise/requant_simd.h"
#include "conv.h"

/* The output pipeline with its constants in registers: loaded once per call, because stores
 * through the output pointer would otherwise force reloads of every qe_output field. */
typedef struct {
    qe_out_kind kind;
    int per_channel;
    const float *scale, *fbias;
    __m512 s1, lo, hi;
    __m512i zp;
} dw_out_avx512;

static inline dw_out_avx512 dw_out_setup(const qe_output *o) {
    dw_out_avx512 d = {.kind = o->kind, .per_channel = o->per_channel, .scale = o->scale,
                       .fbias = o->fbias};
    d.s1 = _mm512_set1_ps(o->kind == QE_OUT_I32 ? 0.0f : o->scale[0]);
    d.lo = _mm512_set1_ps((float)(o->qmin - o->zero_point));
    d.hi = _mm512_set1_ps((float)(o->qmax - o->zero_point));
    d.zp = _mm512_set1_epi32(o->zero_point);
    return d;
}

/* The output pipeline of 16 channels [c, c+16) under mask m. */
static inline void dw_output_avx512(const dw_out_avx512 *o, __m512i acc, size_t c, __mmask16 m,
                                    void *dst) {
    if (o->kind == QE_OUT_I32) {
        qe_store_epi32_avx512(dst, acc, m);
        return;
    }
    const __m512 s = o->per_channel ? _mm512_maskz_loadu_ps(m, o->scale + c) : o->s1;
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
    if (o->kind == QE_OUT_F32) {
        if (o->fbias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, o->fbias + c));
        qe_store_ps_avx512(dst, v, m);
        return;
    }
    qe_store_u8x16_avx512(dst, qe_requant_ps_avx512(v, o->lo, o->hi, o->zp), m);
}

/* NT tiles (1 or 2) of 32 channels starting at channel c; `last` masks the last tile. */
static inline __attribute__((always_inline)) void dw_tiles_avx512(
    const qe_dw_params *p, const dw_out_avx512 *out, const uint8_t *const *tp, size_t c, int nt,
    __mmask32 last, char *dst, size_t es) {
    const size_t np = p->npairs;
    const int16_t *w = p->w + (c / 32) * np * 64;
    __m512i lo[2], hi[2];
    __mmask32 m[2];
    for (int i = 0; i < nt; i++) {
        m[i] = i == nt - 1 ? last : ~(__mmask32)0;
        lo[i] = hi[i] = _mm512_setzero_si512();
    }
    for (size_t j = 0; j < np; j++) {
        const uint8_t *a = tp[2 * j] + c, *b = tp[2 * j + 1] + c;
        for (int i = 0; i < nt; i++) {
            const __m512i va = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m[i], a + 32 * i));
            const __m512i vb = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m[i], b + 32 * i));
            const int16_t *wp = w + ((size_t)i * np + j) * 64;
            lo[i] = _mm512_dpwssd_epi32(lo[i], _mm512_unpacklo_epi16(va, vb), _mm512_loadu_si512(wp));
            hi[i] = _mm512_dpwssd_epi32(hi[i], _mm512_unpackhi_epi16(va, vb), _mm512_loadu_si512(wp + 32));
        }
    }
    /* channels 0-15: lanes q0 of lo, q0 of hi, q1 of lo, q1 of hi; 16-31: the q2, q3 lanes */
    const __m512i idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i idx1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int i = 0; i < nt; i++) {
        const size_t c0 = c + 32 * (size_t)i;
        const __m512i a0 = _mm512_add_epi32(_mm512_permutex2var_epi32(lo[i], idx0, hi[i]),
                                            _mm512_loadu_si512(p->init + c0));
        const __m512i a1 = _mm512_add_epi32(_mm512_permutex2var_epi32(lo[i], idx1, hi[i]),
                                            _mm512_loadu_si512(p->init + c0 + 16));
        dw_output_avx512(out, a0, c0, (__mmask16)m[i], dst + c0 * es);
        if ((__mmask16)(m[i] >> 16))
            dw_output_avx512(out, a1, c0 + 16, (__mmask16)(m[i] >> 16), dst + (c0 + 16) * es);
    }
}

void qe_dwconv_u8s8_up64__avx512vnni(const qe_dw_params *p, size_t pixels,
                                     const uint8_t *const *taps, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->npairs > 0);
    const size_t C = p->channels, T2 = 2 * p->npairs, es = qe_output_elem_size(p->out->kind);
    const dw_out_avx512 out = dw_out_setup(p->out);
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = taps + px * T2;
        char *dst = (char *)y + px * p->ldy * es;
        size_t c = 0;
        for (; c + 64 <= C; c += 64) dw_tiles_avx512(p, &out, tp, c, 2, ~(__mmask32)0, dst, es);
        if (c + 32 <= C) {
            dw_tiles_avx512(p, &out, tp, c, 1, ~(__mmask32)0, dst, es);
            c += 32;
        }
        if (c < C) dw_tiles_avx512(p, &out, tp, c, 1, (__mmask32)(((uint64_t)1 << (C - c)) - 1), dst, es);
    }
}

const qe_dw_ukernel qe_dw_avx512vnni = {
    .kernel = qe_dwconv_u8s8_up64__avx512vnni, .tile = 32, .unpack_order = 1};
