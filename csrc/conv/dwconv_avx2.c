/*
 * dwconv_avx2.c -- depthwise u8 x s8 (as int16 pairs) kernel, up to 32 channels at a time.
 *
 * Per tile of 16 channels and pair of taps: the bytes of the two taps are interleaved
 * (punpck{l,h}bw), widened to int16 and multiplied with the packed weight pairs by vpmaddwd
 * (exact: |x * w| <= 255 * 255, a pair sum fits int32), added into 2 x 8 int32 accumulators.
 * A partial last tile copies its bytes to a zeroed buffer (never reading past the channel
 * count) and finishes with the reference output pipeline.
 */
#include <string.h>

#include "../eltwise/requant_simd.h"
#include "conv.h"

/* Accumulate one pair of taps into acc[0] (channels 0..7 of the tile) and acc[1] (8..15). */
static inline void dw_pair_avx2(const uint8_t *a, const uint8_t *b, const int16_t *w,
                                __m256i *acc) {
    const __m128i va = _mm_loadu_si128((const __m128i *)a);
    const __m128i vb = _mm_loadu_si128((const __m128i *)b);
    const __m256i x0 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(va, vb));
    const __m256i x1 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(va, vb));
    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)w)));
    acc[1] = _mm256_add_epi32(acc[1],
                              _mm256_madd_epi16(x1, _mm256_loadu_si256((const __m256i *)(w + 16))));
}

/* The output pipeline with its constants in registers, loaded once per call (stores through
 * the output pointer would otherwise force reloads of every qe_output field). */
typedef struct {
    qe_out_kind kind;
    int per_channel;
    const float *scale, *fbias;
    __m256 s1, lo, hi;
    __m256i zp;
} dw_out_avx2;

static inline dw_out_avx2 dw_out_setup(const qe_output *o) {
    dw_out_avx2 d = {.kind = o->kind, .per_channel = o->per_channel, .scale = o->scale,
                     .fbias = o->fbias};
    d.s1 = _mm256_set1_ps(o->kind == QE_OUT_I32 ? 0.0f : o->scale[0]);
    d.lo = _mm256_set1_ps((float)(o->qmin - o->zero_point));
    d.hi = _mm256_set1_ps((float)(o->qmax - o->zero_point));
    d.zp = _mm256_set1_epi32(o->zero_point);
    return d;
}

/* The output pipeline of 16 full channels [c, c+16). */
static inline void dw_output_avx2(const dw_out_avx2 *o, const __m256i *acc, size_t c, char *dst) {
    if (o->kind == QE_OUT_I32) {
        _mm256_storeu_si256((__m256i *)dst, acc[0]);
        _mm256_storeu_si256((__m256i *)(dst + 32), acc[1]);
        return;
    }
    const __m256 s0 = o->per_channel ? _mm256_loadu_ps(o->scale + c) : o->s1;
    const __m256 s1 = o->per_channel ? _mm256_loadu_ps(o->scale + c + 8) : o->s1;
    __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[0]), s0);
    __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[1]), s1);
    if (o->kind == QE_OUT_F32) {
        if (o->fbias) {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(o->fbias + c));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(o->fbias + c + 8));
        }
        _mm256_storeu_ps((float *)dst, v0);
        _mm256_storeu_ps((float *)dst + 8, v1);
        return;
    }
    _mm_storeu_si128((__m128i *)dst, qe_pack16_u8_avx2(qe_requant_ps_avx2(v0, o->lo, o->hi, o->zp),
                                                       qe_requant_ps_avx2(v1, o->lo, o->hi, o->zp)));
}

/* NT (1 or 2) full tiles starting at channel c. */
static inline __attribute__((always_inline)) void dw_tiles_avx2(const qe_dw_params *p,
                                                               const dw_out_avx2 *out,
                                                               const uint8_t *const *tp, size_t off,
                                                               size_t c, int nt, char *dst,
                                                               size_t es) {
    const size_t np = qe_dw_npairs(p);
    const int16_t *w = (const int16_t *)p->w + (c / QE_DW_TILE) * np * 2 * QE_DW_TILE;
    __m256i acc[4];
    for (int i = 0; i < 2 * nt; i++) acc[i] = _mm256_loadu_si256((const __m256i *)(p->init + c + 8 * i));
    for (size_t j = 0; j < np; j++) {
        const uint8_t *a = tp[2 * j] + off + c;
        const uint8_t *b = tp[2 * j + 1] + off + c;
        for (int i = 0; i < nt; i++)
            dw_pair_avx2(a + 16 * i, b + 16 * i, w + ((size_t)i * np + j) * 2 * QE_DW_TILE,
                         acc + 2 * i);
    }
    for (int i = 0; i < nt; i++)
        dw_output_avx2(out, acc + 2 * i, c + 16 * i, dst + (c + 16 * i) * es);
}

/* The last rem < 16 channels starting at c. */
static void dw_partial_tile_avx2(const qe_dw_params *p, const uint8_t *const *tp, size_t off,
                                 size_t c, size_t rem, char *dst, size_t es) {
    const size_t np = qe_dw_npairs(p);
    const int16_t *w = (const int16_t *)p->w + (c / QE_DW_TILE) * np * 2 * QE_DW_TILE;
    __m256i acc[2] = {_mm256_loadu_si256((const __m256i *)(p->init + c)),
                      _mm256_loadu_si256((const __m256i *)(p->init + c + 8))};
    uint8_t a[16] = {0}, b[16] = {0};
    for (size_t j = 0; j < np; j++) {
        memcpy(a, tp[2 * j] + off + c, rem);
        memcpy(b, tp[2 * j + 1] + off + c, rem);
        dw_pair_avx2(a, b, w + j * 2 * QE_DW_TILE, acc);
    }
    int32_t out[16];
    _mm256_storeu_si256((__m256i *)out, acc[0]);
    _mm256_storeu_si256((__m256i *)(out + 8), acc[1]);
    qe_output_row_ref(p->out, out, c, rem, dst + c * es);
}

void qe_dwconv_u8s8_up32__avx2(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               size_t step, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->ntaps > 0 &&
              p->tap_stride == QE_ROUND_UP(p->ntaps, 2));
    const size_t C = p->channels, T2 = p->tap_stride, es = qe_output_elem_size(p->out->kind);
    const dw_out_avx2 out = dw_out_setup(p->out);
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = step ? taps : taps + px * T2;
        const size_t off = px * step;
        char *dst = (char *)y + px * p->ldy * es;
        size_t c = 0;
        for (; c + 32 <= C; c += 32) dw_tiles_avx2(p, &out, tp, off, c, 2, dst, es);
        for (; c + 16 <= C; c += 16) dw_tiles_avx2(p, &out, tp, off, c, 1, dst, es);
        if (c < C) dw_partial_tile_avx2(p, tp, off, c, C - c, dst, es);
    }
}

const qe_dw_ukernel qe_dw_avx2 = {
    .kernel = qe_dwconv_u8s8_up32__avx2, .layout = QE_DW_PAIRS_S16, .tile = QE_DW_TILE};
