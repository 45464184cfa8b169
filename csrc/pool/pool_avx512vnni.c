/*
 * pool_avx512vnni.c -- pooling kernels with AVX-512 BW (compiled with the VNNI path's flags; no
 * VNNI instruction is needed). Max: 64 channels per vpmaxub. Average: 32 channels widened to
 * uint16 and summed exactly for up to 256 taps (256 * 255 < 2^16), then flushed to int32.
 * Partial vectors use masked loads and stores: no byte past the channel count is touched.
 */
#include "../eltwise/requant_simd.h"
#include "pool.h"

static inline __mmask64 mask64(size_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1; }

void qe_maxpool_u8_c64__avx512(size_t pixels, size_t channels, size_t ntaps,
                               const uint8_t *const *taps, uint8_t *y) {
    QE_ASSERT(taps && y && ntaps > 0);
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels)
        for (size_t c = 0; c < channels; c += 64) {
            const __mmask64 m = mask64(channels - c);
            __m512i v = _mm512_maskz_loadu_epi8(m, taps[0] + c);
            for (size_t t = 1; t < ntaps; t++)
                v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, taps[t] + c));
            qe_store_u8x64_avx512(y + c, v, m);
        }
}

void qe_maxpool_column_u8_c64__avx512(size_t out_rows, size_t channels,
                                      const uint8_t *const *cols, size_t ncols, size_t rows,
                                      size_t kernel, size_t stride, size_t pad, uint8_t *y,
                                      size_t ldy) {
    QE_ASSERT(y && (cols || ncols == 0));
    for (size_t i = 0; i < out_rows; i++, y += ldy) {
        size_t r0, r1;
        qe_pool_window_rows(i, kernel, stride, pad, rows, &r0, &r1);
        const size_t off = r0 * channels;
        for (size_t c = 0; c < channels; c += 64) {
            const __mmask64 m = mask64(channels - c);
            __m512i v = _mm512_setzero_si512();
            if (ncols == 3 && r1 - r0 == 3) { /* 3 x 3 windows inside the map: most of them */
                for (size_t k = 0; k < 3; k++) {
                    const uint8_t *a = cols[k] + off + c;
                    v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, a));
                    v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, a + channels));
                    v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, a + 2 * channels));
                }
            } else {
                for (size_t k = 0; k < ncols; k++)
                    for (size_t r = r0; r < r1; r++)
                        v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(m, cols[k] + r * channels + c));
            }
            qe_store_u8x64_avx512(y + c, v, m);
        }
    }
}

/* Add the uint16 partial sums of 32 channels into two int32 vectors (channels 0-15, 16-31). */
static inline void flush16(__m512i s16, __m512i *acc) {
    acc[0] = _mm512_add_epi32(acc[0], _mm512_cvtepu16_epi32(_mm512_castsi512_si256(s16)));
    acc[1] = _mm512_add_epi32(acc[1], _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(s16, 1)));
}

/* The requantization constants, in registers once per call. */
typedef struct {
    __m512 lo, hi;
    __m512i zp, sub;
} avg_consts;

static inline avg_consts avg_setup(const qe_pool_requant *rq) {
    return (avg_consts){.lo = _mm512_set1_ps((float)(rq->qmin - rq->zp)),
                        .hi = _mm512_set1_ps((float)(rq->qmax - rq->zp)),
                        .zp = _mm512_set1_epi32(rq->zp), .sub = _mm512_set1_epi32(rq->sub)};
}

static inline __m512i avg_requant(__m512i acc, __m512 mult, const avg_consts *k) {
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, k->sub)), mult);
    return qe_requant_ps_avx512(v, k->lo, k->hi, k->zp);
}

/* Requantize 32 sums into y under the 32-bit mask m. */
static inline void store32(const __m512i *acc, __m512 mult, const avg_consts *k, __mmask32 m,
                           uint8_t *y) {
    for (int i = 0; i < 2; i++)
        qe_store_u8x16_avx512(y + 16 * i, avg_requant(acc[i], mult, k), (__mmask16)(m >> (16 * i)));
}

void qe_avgpool_u8_c32__avx512(size_t pixels, size_t channels, size_t ntaps,
                               const uint8_t *const *taps, const float *mult,
                               const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(taps && mult && rq && y && ntaps > 0 && ntaps <= 65536);
    const avg_consts k = avg_setup(rq);
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels) {
        const __m512 mv = _mm512_set1_ps(mult[px]);
        size_t c = 0;
        for (; c + 64 <= channels; c += 64) { /* a full cache line of every tap */
            __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                              _mm512_setzero_si512(), _mm512_setzero_si512()};
            for (size_t t0 = 0; t0 < ntaps; t0 += 256) {
                const size_t t1 = QE_MIN(ntaps, t0 + 256);
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                for (size_t t = t0; t < t1; t++) {
                    const __m512i v = _mm512_loadu_si512(taps[t] + c);
                    s0 = _mm512_add_epi16(s0, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(v)));
                    s1 = _mm512_add_epi16(s1, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(v, 1)));
                }
                flush16(s0, acc);
                flush16(s1, acc + 2);
            }
            _mm512_storeu_si512(y + c, qe_pack64_u8_avx512(avg_requant(acc[0], mv, &k),
                                                           avg_requant(acc[1], mv, &k),
                                                           avg_requant(acc[2], mv, &k),
                                                           avg_requant(acc[3], mv, &k)));
        }
        for (; c < channels; c += 32) {
            const size_t rem = channels - c;
            const __mmask32 m = rem >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << rem) - 1;
            __m512i acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
            for (size_t t0 = 0; t0 < ntaps; t0 += 256) {
                const size_t t1 = QE_MIN(ntaps, t0 + 256);
                __m512i s16 = _mm512_setzero_si512();
                for (size_t t = t0; t < t1; t++)
                    s16 = _mm512_add_epi16(
                        s16, _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, taps[t] + c)));
                flush16(s16, acc);
            }
            store32(acc, mv, &k, m, y + c);
        }
    }
}

void qe_gavgpool_u8_c32__avx512(size_t rows, size_t channels, const uint8_t *x, size_t ldx,
                                float mult, const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(x && rq && y && rows > 0 && rows <= ((size_t)1 << 23));
    const avg_consts k = avg_setup(rq);
    const __m512 mv = _mm512_set1_ps(mult);
    size_t c = 0;
    /* 64 channels (a cache line of each row) per pass */
    for (; c + 64 <= channels; c += 64) {
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (size_t r0 = 0; r0 < rows; r0 += 256) {
            const size_t r1 = QE_MIN(rows, r0 + 256);
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (size_t r = r0; r < r1; r++) {
                const __m512i v = _mm512_loadu_si512(x + r * ldx + c);
                s0 = _mm512_add_epi16(s0, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(v)));
                s1 = _mm512_add_epi16(s1, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(v, 1)));
            }
            flush16(s0, acc);
            flush16(s1, acc + 2);
        }
        _mm512_storeu_si512(y + c, qe_pack64_u8_avx512(avg_requant(acc[0], mv, &k),
                                                       avg_requant(acc[1], mv, &k),
                                                       avg_requant(acc[2], mv, &k),
                                                       avg_requant(acc[3], mv, &k)));
    }
    for (; c < channels; c += 32) {
        const size_t rem = channels - c;
        const __mmask32 m = rem >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << rem) - 1;
        __m512i acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (size_t r0 = 0; r0 < rows; r0 += 256) {
            const size_t r1 = QE_MIN(rows, r0 + 256);
            __m512i s16 = _mm512_setzero_si512();
            for (size_t r = r0; r < r1; r++)
                s16 = _mm512_add_epi16(
                    s16, _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, x + r * ldx + c)));
            flush16(s16, acc);
        }
        store32(acc, mv, &k, m, y + c);
    }
}
