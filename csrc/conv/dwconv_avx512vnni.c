/*
 * dwconv_avx512vnni.c -- depthwise u8 x s8 (as int16 pairs) kernel, up to 64 channels at a time.
 *
 * Per tile of 16 channels and pair of taps: the 16 bytes of each tap are interleaved
 * (punpck{l,h}bw), widened to 32 int16 and multiplied with the packed weight pairs by one
 * vpdpwssd into 16 int32 accumulators. Products are exact (|x * w| <= 255 * 255) and the
 * accumulation wraps like the reference. Four tiles share a tap loop for instruction-level
 * parallelism; a partial last tile uses masked loads (no byte past the channel count is read).
 */
#include "../eltwise/requant_simd.h"
#include "conv.h"

/* The output pipeline of 16 channels [c, c+16) under mask m. */
static inline void dw_output_avx512(const qe_output *o, __m512i acc, size_t c, __mmask16 m,
                                    void *dst) {
    if (o->kind == QE_OUT_I32) {
        _mm512_mask_storeu_epi32(dst, m, acc);
        return;
    }
    const __m512 s = o->per_channel ? _mm512_maskz_loadu_ps(m, o->scale + c)
                                    : _mm512_set1_ps(o->scale[0]);
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
    if (o->kind == QE_OUT_F32) {
        if (o->fbias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, o->fbias + c));
        _mm512_mask_storeu_ps(dst, m, v);
        return;
    }
    const __m512i q = qe_requant_ps_avx512(v, _mm512_set1_ps((float)(o->qmin - o->zero_point)),
                                           _mm512_set1_ps((float)(o->qmax - o->zero_point)),
                                           _mm512_set1_epi32(o->zero_point));
    _mm512_mask_cvtepi32_storeu_epi8(dst, m, q);
}

/* NT tiles (1..4) starting at channel c; the mask applies to the last tile. */
static inline __attribute__((always_inline)) void dw_tiles_avx512(
    const qe_dw_params *p, const uint8_t *const *tp, size_t c, int nt, __mmask16 last,
    char *dst, size_t es) {
    const size_t np = p->npairs;
    const int16_t *w = p->w + (c / QE_DW_TILE) * np * 2 * QE_DW_TILE;
    __m512i acc[4];
    __mmask16 m[4];
    for (int i = 0; i < nt; i++) {
        m[i] = i == nt - 1 ? last : (__mmask16)0xFFFF;
        acc[i] = _mm512_loadu_si512(p->init + c + 16 * i); /* init has round_up(C, 16) entries */
    }
    for (size_t j = 0; j < np; j++) {
        const uint8_t *a = tp[2 * j] + c, *b = tp[2 * j + 1] + c;
        for (int i = 0; i < nt; i++) {
            const __m128i va = _mm_maskz_loadu_epi8(m[i], a + 16 * i);
            const __m128i vb = _mm_maskz_loadu_epi8(m[i], b + 16 * i);
            const __m256i ab = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_unpacklo_epi8(va, vb)), _mm_unpackhi_epi8(va, vb), 1);
            const __m512i wv = _mm512_loadu_si512(w + ((size_t)i * np + j) * 2 * QE_DW_TILE);
            acc[i] = _mm512_dpwssd_epi32(acc[i], _mm512_cvtepu8_epi16(ab), wv);
        }
    }
    for (int i = 0; i < nt; i++)
        dw_output_avx512(p->out, acc[i], c + 16 * i, m[i], dst + (c + 16 * i) * es);
}

void qe_dwconv_u8s8_up64__avx512vnni(const qe_dw_params *p, size_t pixels,
                                     const uint8_t *const *taps, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->npairs > 0);
    const size_t C = p->channels, T2 = 2 * p->npairs, es = qe_output_elem_size(p->out->kind);
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = taps + px * T2;
        char *dst = (char *)y + px * p->ldy * es;
        size_t c = 0;
        for (; c + 64 <= C; c += 64) dw_tiles_avx512(p, tp, c, 4, 0xFFFF, dst, es);
        for (; c + 16 <= C; c += 16) dw_tiles_avx512(p, tp, c, 1, 0xFFFF, dst, es);
        if (c < C) dw_tiles_avx512(p, tp, c, 1, (__mmask16)((1u << (C - c)) - 1), dst, es);
    }
}
