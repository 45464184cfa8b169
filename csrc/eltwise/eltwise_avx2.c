/*
 * eltwise_avx2.c -- element-wise kernels with AVX2: 16 uint8 (2 x 8 float32 lanes) per step.
 * A partial last vector is staged through a zeroed stack buffer, so nothing outside [0, n) is
 * read or written and y may alias an input.
 */
#include <string.h>

#include "../eltwise/requant_simd.h"
#include "eltwise.h"

/* 16 uint8 -> two vectors of 8 int32 minus zp. */
static inline void widen16(const uint8_t *p, __m256i zp, __m256i *lo, __m256i *hi) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    *lo = _mm256_sub_epi32(_mm256_cvtepu8_epi32(v), zp);
    *hi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(v, v)), zp);
}

typedef struct {
    __m256i azp, bzp, yzp;
    __m256 am, bm, lo, hi;
} binary_consts;

static inline binary_consts binary_setup(const qe_binary_params *p) {
    return (binary_consts){
        .azp = _mm256_set1_epi32(p->a_zp), .bzp = _mm256_set1_epi32(p->b_zp),
        .yzp = _mm256_set1_epi32(p->y_zp), .am = _mm256_set1_ps(p->a_mult),
        .bm = _mm256_set1_ps(p->b_mult), .lo = _mm256_set1_ps((float)(p->qmin - p->y_zp)),
        .hi = _mm256_set1_ps((float)(p->qmax - p->y_zp))};
}

static inline __m128i add16(const uint8_t *a, const uint8_t *b, const binary_consts *k) {
    __m256i a0, a1, b0, b1;
    widen16(a, k->azp, &a0, &a1);
    widen16(b, k->bzp, &b0, &b1);
    const __m256 v0 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), k->am),
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(b0), k->bm));
    const __m256 v1 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a1), k->am),
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(b1), k->bm));
    return qe_pack16_u8_avx2(qe_requant_ps_avx2(v0, k->lo, k->hi, k->yzp),
                             qe_requant_ps_avx2(v1, k->lo, k->hi, k->yzp));
}

static inline __m128i mul16(const uint8_t *a, const uint8_t *b, const binary_consts *k) {
    __m256i a0, a1, b0, b1;
    widen16(a, k->azp, &a0, &a1);
    widen16(b, k->bzp, &b0, &b1);
    const __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(a0, b0)), k->am);
    const __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(a1, b1)), k->am);
    return qe_pack16_u8_avx2(qe_requant_ps_avx2(v0, k->lo, k->hi, k->yzp),
                             qe_requant_ps_avx2(v1, k->lo, k->hi, k->yzp));
}

#define QE_BINARY_AVX2(name, op16)                                                              \
    static void name(size_t n, const uint8_t *a, const uint8_t *b, const qe_binary_params *p,   \
                     uint8_t *y) {                                                              \
        const binary_consts k = binary_setup(p);                                                \
        size_t i = 0;                                                                           \
        for (; i + 16 <= n; i += 16) _mm_storeu_si128((__m128i *)(y + i), op16(a + i, b + i, &k)); \
        if (i < n) { /* the tail through buffers */                                             \
            uint8_t ta[16] = {0}, tb[16] = {0}, ty[16];                                          \
            memcpy(ta, a + i, n - i);                                                           \
            memcpy(tb, b + i, n - i);                                                           \
            _mm_storeu_si128((__m128i *)ty, op16(ta, tb, &k));                                  \
            memcpy(y + i, ty, n - i);                                                           \
        }                                                                                       \
    }
QE_BINARY_AVX2(add_avx2, add16)
QE_BINARY_AVX2(mul_avx2, mul16)

/* ---- table lookup: 16 vpshufb slices combined by prefix XOR (see eltwise_avx512vnni.c) ---- */
static inline __m256i lut32(__m256i v, const __m256i *d) {
    const __m256i step = _mm256_set1_epi8(16);
    __m256i lo = v, hi = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
    __m256i r = _mm256_xor_si256(_mm256_shuffle_epi8(d[0], lo), _mm256_shuffle_epi8(d[8], hi));
    for (int s = 1; s < 8; s++) {
        lo = _mm256_subs_epi8(lo, step);
        hi = _mm256_subs_epi8(hi, step);
        r = _mm256_xor_si256(r, _mm256_xor_si256(_mm256_shuffle_epi8(d[s], lo),
                                                 _mm256_shuffle_epi8(d[8 + s], hi)));
    }
    return r;
}

static void lut_avx2(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                     const uint8_t *table, uint8_t *y, size_t ldy) {
    __m256i d[16];
    for (int i = 0; i < 16; i++) {
        __m128i s = _mm_loadu_si128((const __m128i *)(table + 16 * i));
        if (i % 8) s = _mm_xor_si128(s, _mm_loadu_si128((const __m128i *)(table + 16 * (i - 1))));
        d[i] = _mm256_broadcastsi128_si256(s);
    }
    for (size_t r = 0; r < rows; r++, x += ldx, y += ldy) {
        size_t i = 0;
        for (; i + 32 <= cols; i += 32)
            _mm256_storeu_si256((__m256i *)(y + i),
                                lut32(_mm256_loadu_si256((const __m256i *)(x + i)), d));
        if (i < cols) {
            uint8_t t[32] = {0};
            memcpy(t, x + i, cols - i);
            _mm256_storeu_si256((__m256i *)t, lut32(_mm256_loadu_si256((const __m256i *)t), d));
            memcpy(y + i, t, cols - i);
        }
    }
}

/* ---- quantize / dequantize: 8 lanes per step, tails through buffers ------------------------- */
static inline __m256i quantize8(const float *x, __m256 s, __m256i z, __m256i qmin, __m256i qmax) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x), s);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN -> 0 */
    const __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(qmin, z));
    const __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(qmax, z));
    /* keep the low byte: the uint8 or int8 bits of a value inside [qmin, qmax] */
    return _mm256_and_si256(qe_requant_ps_avx2(v, lo, hi, z), _mm256_set1_epi32(0xFF));
}

static void quantize_avx2(size_t n, const float *x, const float *scale, const int32_t *zp,
                          int per_elem, int32_t qmin, int32_t qmax, uint8_t *y) {
    const __m256i vqmin = _mm256_set1_epi32(qmin), vqmax = _mm256_set1_epi32(qmax);
    const __m256 s1 = _mm256_set1_ps(scale[0]);
    const __m256i z1 = _mm256_set1_epi32(zp[0]);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 s0 = per_elem ? _mm256_loadu_ps(scale + i) : s1;
        const __m256 s8 = per_elem ? _mm256_loadu_ps(scale + i + 8) : s1;
        const __m256i z0 = per_elem ? _mm256_loadu_si256((const __m256i *)(zp + i)) : z1;
        const __m256i z8 = per_elem ? _mm256_loadu_si256((const __m256i *)(zp + i + 8)) : z1;
        _mm_storeu_si128((__m128i *)(y + i),
                         qe_pack16_u8_avx2(quantize8(x + i, s0, z0, vqmin, vqmax),
                                           quantize8(x + i + 8, s8, z8, vqmin, vqmax)));
    }
    if (i < n) {
        const size_t r = n - i;
        float tx[16] = {0}, ts[16];
        int32_t tz[16] = {0};
        uint8_t ty[16];
        memcpy(tx, x + i, r * sizeof(float));
        for (int k = 0; k < 16; k++) ts[k] = scale[0];
        if (per_elem) {
            memcpy(ts, scale + i, r * sizeof(float));
            memcpy(tz, zp + i, r * sizeof(int32_t));
        }
        const __m256i zl = per_elem ? _mm256_loadu_si256((const __m256i *)tz) : z1;
        const __m256i zh = per_elem ? _mm256_loadu_si256((const __m256i *)(tz + 8)) : z1;
        _mm_storeu_si128((__m128i *)ty,
                         qe_pack16_u8_avx2(quantize8(tx, _mm256_loadu_ps(ts), zl, vqmin, vqmax),
                                           quantize8(tx + 8, _mm256_loadu_ps(ts + 8), zh, vqmin, vqmax)));
        memcpy(y + i, ty, r);
    }
}

static inline __m256 dequantize8x8(const uint8_t *x, int is_signed, __m256 s, __m256i z) {
    const __m128i b = _mm_loadl_epi64((const __m128i *)x);
    const __m256i v = is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, z)), s);
}

static void dequantize8_avx2(size_t n, const uint8_t *x, int is_signed, const float *scale,
                             const int32_t *zp, int per_elem, float *y) {
    const __m256 s1 = _mm256_set1_ps(scale[0]);
    const __m256i z1 = _mm256_set1_epi32(zp[0]);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 s = per_elem ? _mm256_loadu_ps(scale + i) : s1;
        const __m256i z = per_elem ? _mm256_loadu_si256((const __m256i *)(zp + i)) : z1;
        _mm256_storeu_ps(y + i, dequantize8x8(x + i, is_signed, s, z));
    }
    if (i < n) {
        const size_t r = n - i;
        uint8_t tx[8] = {0};
        float ts[8] = {0}, ty[8];
        int32_t tz[8] = {0};
        memcpy(tx, x + i, r);
        if (per_elem) {
            memcpy(ts, scale + i, r * sizeof(float));
            memcpy(tz, zp + i, r * sizeof(int32_t));
        }
        const __m256 s = per_elem ? _mm256_loadu_ps(ts) : s1;
        const __m256i z = per_elem ? _mm256_loadu_si256((const __m256i *)tz) : z1;
        _mm256_storeu_ps(ty, dequantize8x8(tx, is_signed, s, z));
        memcpy(y + i, ty, r * sizeof(float));
    }
}

static void dequantize32_avx2(size_t n, const int32_t *x, const float *scale, int per_elem,
                              float *y) {
    const __m256 s1 = _mm256_set1_ps(scale[0]);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 s = per_elem ? _mm256_loadu_ps(scale + i) : s1;
        _mm256_storeu_ps(y + i, _mm256_mul_ps(
                                    _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x + i))), s));
    }
    for (; i < n; i++) y[i] = (float)x[i] * scale[per_elem ? i : 0]; /* the reference formula */
}

const qe_eltwise_kernels qe_eltwise_avx2 = {
    .add = add_avx2,
    .mul = mul_avx2,
    .lut = lut_avx2,
    .quantize = quantize_avx2,
    .dequantize8 = dequantize8_avx2,
    .dequantize32 = dequantize32_avx2,
};
