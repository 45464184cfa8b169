/*
 * pool_avx2.c -- pooling kernels with AVX2. Max: 32 (or 16) channels per vpmaxub. Average: 16
 * channels widened to uint16 and summed exactly for up to 256 taps, then flushed to int32.
 * The last partial vector is recomputed as the vector ending at the channel count (an overlap
 * rewrites identical bytes); fewer channels than one vector go to the reference.
 */
#include "../eltwise/requant_simd.h"
#include "pool.h"

static inline __m256i max32(size_t ntaps, const uint8_t *const *taps, size_t c) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(taps[0] + c));
    for (size_t t = 1; t < ntaps; t++)
        v = _mm256_max_epu8(v, _mm256_loadu_si256((const __m256i *)(taps[t] + c)));
    return v;
}

static inline __m128i max16(size_t ntaps, const uint8_t *const *taps, size_t c) {
    __m128i v = _mm_loadu_si128((const __m128i *)(taps[0] + c));
    for (size_t t = 1; t < ntaps; t++)
        v = _mm_max_epu8(v, _mm_loadu_si128((const __m128i *)(taps[t] + c)));
    return v;
}

void qe_maxpool_u8_c32__avx2(size_t pixels, size_t channels, size_t ntaps,
                             const uint8_t *const *taps, uint8_t *y) {
    QE_ASSERT(taps && y && ntaps > 0);
    if (channels < 16) {
        qe_maxpool_u8_ref(pixels, channels, ntaps, taps, y);
        return;
    }
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels) {
        if (channels < 32) {
            _mm_storeu_si128((__m128i *)y, max16(ntaps, taps, 0));
            _mm_storeu_si128((__m128i *)(y + channels - 16), max16(ntaps, taps, channels - 16));
            continue;
        }
        size_t c = 0;
        for (; c + 32 <= channels; c += 32) _mm256_storeu_si256((__m256i *)(y + c), max32(ntaps, taps, c));
        if (c < channels)
            _mm256_storeu_si256((__m256i *)(y + channels - 32), max32(ntaps, taps, channels - 32));
    }
}

/* The max over a pooled column's window of the 32 (16) channels at c. */
static inline __m256i colmax32(const uint8_t *const *cols, size_t ncols, size_t r0, size_t r1,
                               size_t channels, size_t c) {
    __m256i v = _mm256_setzero_si256();
    for (size_t k = 0; k < ncols; k++)
        for (size_t r = r0; r < r1; r++)
            v = _mm256_max_epu8(v, _mm256_loadu_si256((const __m256i *)(cols[k] + r * channels + c)));
    return v;
}

static inline __m128i colmax16(const uint8_t *const *cols, size_t ncols, size_t r0, size_t r1,
                               size_t channels, size_t c) {
    __m128i v = _mm_setzero_si128();
    for (size_t k = 0; k < ncols; k++)
        for (size_t r = r0; r < r1; r++)
            v = _mm_max_epu8(v, _mm_loadu_si128((const __m128i *)(cols[k] + r * channels + c)));
    return v;
}

void qe_maxpool_column_u8_c32__avx2(size_t out_rows, size_t channels, const uint8_t *const *cols,
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
        if (channels < 32) { /* two 16-byte vectors, the second ending at the channel count */
            _mm_storeu_si128((__m128i *)y, colmax16(cols, ncols, r0, r1, channels, 0));
            _mm_storeu_si128((__m128i *)(y + channels - 16),
                             colmax16(cols, ncols, r0, r1, channels, channels - 16));
            continue;
        }
        size_t c = 0;
        for (; c + 32 <= channels; c += 32)
            _mm256_storeu_si256((__m256i *)(y + c), colmax32(cols, ncols, r0, r1, channels, c));
        if (c < channels)
            _mm256_storeu_si256((__m256i *)(y + channels - 32),
                                colmax32(cols, ncols, r0, r1, channels, channels - 32));
    }
}

/* Exact int32 sums of 16 channels: acc[0] channels 0-7, acc[1] 8-15. */
static inline void flush16(__m256i s16, __m256i *acc) {
    acc[0] = _mm256_add_epi32(acc[0], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(s16)));
    acc[1] = _mm256_add_epi32(acc[1], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(s16, 1)));
}

static inline void store16(const __m256i *acc, float mult, const qe_pool_requant *rq, uint8_t *y) {
    const __m256 lo = _mm256_set1_ps((float)(rq->qmin - rq->zp));
    const __m256 hi = _mm256_set1_ps((float)(rq->qmax - rq->zp));
    const __m256i zp = _mm256_set1_epi32(rq->zp), sub = _mm256_set1_epi32(rq->sub);
    const __m256 mv = _mm256_set1_ps(mult);
    const __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[0], sub)), mv);
    const __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[1], sub)), mv);
    _mm_storeu_si128((__m128i *)y, qe_pack16_u8_avx2(qe_requant_ps_avx2(v0, lo, hi, zp),
                                                     qe_requant_ps_avx2(v1, lo, hi, zp)));
}

/* Sum 16 channels at c over n rows: row i at base[i] + c, or at x + i * ldx + c. */
static inline void sum16(size_t n, const uint8_t *const *base, const uint8_t *x, size_t ldx,
                         size_t c, __m256i *acc) {
    acc[0] = acc[1] = _mm256_setzero_si256();
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const size_t i1 = QE_MIN(n, i0 + 256);
        __m256i s16 = _mm256_setzero_si256();
        for (size_t i = i0; i < i1; i++) {
            const uint8_t *p = (base ? base[i] : x + i * ldx) + c;
            s16 = _mm256_add_epi16(s16, _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)));
        }
        flush16(s16, acc);
    }
}

void qe_avgpool_u8_c16__avx2(size_t pixels, size_t channels, size_t ntaps,
                             const uint8_t *const *taps, const float *mult,
                             const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(taps && mult && rq && y && ntaps > 0 && ntaps <= 65536);
    if (channels < 16) {
        qe_avgpool_u8_ref(pixels, channels, ntaps, taps, mult, rq, y);
        return;
    }
    __m256i acc[2];
    for (size_t px = 0; px < pixels; px++, taps += ntaps, y += channels) {
        size_t c = 0;
        for (; c + 16 <= channels; c += 16) {
            sum16(ntaps, taps, NULL, 0, c, acc);
            store16(acc, mult[px], rq, y + c);
        }
        if (c < channels) {
            sum16(ntaps, taps, NULL, 0, channels - 16, acc);
            store16(acc, mult[px], rq, y + channels - 16);
        }
    }
}

void qe_gavgpool_u8_c16__avx2(size_t rows, size_t channels, const uint8_t *x, size_t ldx,
                              float mult, const qe_pool_requant *rq, uint8_t *y) {
    QE_ASSERT(x && rq && y && rows > 0 && rows <= ((size_t)1 << 23));
    if (channels < 16) {
        qe_gavgpool_u8_ref(rows, channels, x, ldx, mult, rq, y);
        return;
    }
    __m256i acc[2];
    size_t c = 0;
    for (; c + 16 <= channels; c += 16) {
        sum16(rows, NULL, x, ldx, c, acc);
        store16(acc, mult, rq, y + c);
    }
    if (c < channels) {
        sum16(rows, NULL, x, ldx, channels - 16, acc);
        store16(acc, mult, rq, y + channels - 16);
    }
}
