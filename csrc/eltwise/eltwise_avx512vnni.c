/*
 * eltwise_avx512vnni.c -- element-wise kernels with AVX-512 F/BW (built with the VNNI path's
 * flags; no VNNI instruction is needed). 16 lanes of float32 per step; a partial last vector
 * uses masked loads and stores, so nothing outside [0, n) is touched and y may alias an input.
 *
 * The table lookup has two forms: vpermi2b (two 128-entry halves, bit 7 selects) when the CPU
 * reports AVX512_VBMI at run time, else 16 vpshufb lookups of 16-entry slices combined by
 * prefix XOR (see lut_pshufb below).
 */
#include "../eltwise/requant_simd.h"
#include "eltwise.h"

static inline __mmask16 mask16(size_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }
static inline __mmask64 mask64(size_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1; }

typedef struct {
    __m512i azp, bzp, yzp, zp16, lo8;
    __m512 am, bm, lo, hi;
    int nohi; /* QE_REQUANT_PACK_U8_INLANE_NOHI serves: qmax = 255 and |v| < 2^30 */
} binary_consts;

static inline binary_consts binary_setup(const qe_binary_params *p) {
    /* |a - a_zp|, |b - b_zp| <= 255: |v| <= 255 * 255 * (a_mult + b_mult) for add and mul */
    const double bound = 65025.0 * ((double)p->a_mult + (double)p->b_mult);
    return (binary_consts){
        .azp = _mm512_set1_epi32(p->a_zp), .bzp = _mm512_set1_epi32(p->b_zp),
        .yzp = _mm512_set1_epi32(p->y_zp), .zp16 = _mm512_set1_epi16((int16_t)p->y_zp),
        .lo8 = _mm512_set1_epi8((char)p->qmin), .am = _mm512_set1_ps(p->a_mult),
        .bm = _mm512_set1_ps(p->b_mult), .lo = _mm512_set1_ps((float)(p->qmin - p->y_zp)),
        .hi = _mm512_set1_ps((float)(p->qmax - p->y_zp)),
        .nohi = p->qmax == 255 && bound < 0x1p30};
}

/* 16 values v before rounding (the float expression of qe_add_one / qe_mul_one). */
static inline __m512 add16(__m128i a, __m128i b, const binary_consts *k) {
    const __m512 fa = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(a), k->azp));
    const __m512 fb = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(b), k->bzp));
    return _mm512_add_ps(_mm512_mul_ps(fa, k->am), _mm512_mul_ps(fb, k->bm));
}

static inline __m512 mul16(__m128i a, __m128i b, const binary_consts *k) {
    const __m512i prod = _mm512_mullo_epi32(_mm512_sub_epi32(_mm512_cvtepu8_epi32(a), k->azp),
                                            _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), k->bzp));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(prod), k->am);
}

/* 16 results as int32 lanes in [qmin, qmax] (the tails). */
static inline __m512i requant16(__m512 v, const binary_consts *k) {
    return qe_requant_ps_avx512(v, k->lo, k->hi, k->yzp);
}

/* 64 results in order: the in-lane packs of requant_simd.h (their clamps and rounding are
 * qe_requant_one's), then one dword permutation back to element order. */
static inline __m512i requant64(__m512 v0, __m512 v1, __m512 v2, __m512 v3,
                                const binary_consts *k) {
    return qe_unlane64_avx512(
        k->nohi ? QE_REQUANT_PACK_U8_INLANE_NOHI(_mm512_, v0, v1, v2, v3, k->zp16, k->lo8)
                : QE_REQUANT_PACK_U8_INLANE(_mm512_, v0, v1, v2, v3, k->hi, k->zp16, k->lo8));
}

/* 64 elements per step with plain loads; the tail in masked steps of 16. */
#define QE_BINARY_AVX512(name, op16)                                                            \
    static void name(size_t n, const uint8_t *a, const uint8_t *b, const qe_binary_params *p,   \
                     uint8_t *y) {                                                              \
        const binary_consts k = binary_setup(p);                                                \
        size_t i = 0;                                                                           \
        for (; i + 64 <= n; i += 64) {                                                          \
            __m512 v[4];                                                                        \
            for (int j = 0; j < 4; j++)                                                         \
                v[j] = op16(_mm_loadu_si128((const __m128i *)(a + i + 16 * j)),                \
                            _mm_loadu_si128((const __m128i *)(b + i + 16 * j)), &k);            \
            _mm512_storeu_si512(y + i, requant64(v[0], v[1], v[2], v[3], &k));                  \
        }                                                                                       \
        for (; i < n; i += 16) {                                                                \
            const __mmask16 m = mask16(n - i);                                                  \
            qe_store_u8x16_avx512(y + i,                                                        \
                                  requant16(op16(_mm_maskz_loadu_epi8(m, a + i),                \
                                                 _mm_maskz_loadu_epi8(m, b + i), &k), &k), m);  \
        }                                                                                       \
    }
QE_BINARY_AVX512(add_avx512, add16)
QE_BINARY_AVX512(mul_avx512, mul16)

/* ---- a row b over rows of a: b's share converted to float once per chunk of columns ---- */
/* Mul: fb = b - b_zp. The float product (a - a_zp) * (b - b_zp) is the integer product exactly
 * (|.| <= 255 * 255 < 2^24), so every result equals mul16's, with 5 instructions per 16
 * elements before the requantization where mul16 takes 8 (vpmulld alone is two). */
static inline __m512 mul_b16(__m512 fb, const binary_consts *k) { return fb; }
static inline __m512 mulf16(__m128i a, const float *fb, const binary_consts *k) {
    const __m512 fa = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(a), k->azp));
    return _mm512_mul_ps(_mm512_mul_ps(fa, _mm512_load_ps(fb)), k->am);
}

/* Add: fb = (b - b_zp) * b_mult, the rounded float add16 computes for b, so a's share plus it is
 * add16's sum bit for bit: 5 instructions per 16 elements instead of 9 (a per-channel bias on
 * NHWC pixels, or any Add of a row broadcast over rows). */
static inline __m512 add_b16(__m512 fb, const binary_consts *k) { return _mm512_mul_ps(fb, k->bm); }
static inline __m512 addf16(__m128i a, const float *fb, const binary_consts *k) {
    const __m512 fa = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(a), k->azp));
    return _mm512_add_ps(_mm512_mul_ps(fa, k->am), _mm512_load_ps(fb));
}

#define QE_BINARY_ROWS_BCAST_AVX512(name, b16, opf16)                                            \
    static void name(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b,               \
                     const qe_binary_params *p, uint8_t *y) {                                    \
        enum { CHUNK = 1024 };                                                                   \
        float fb[CHUNK] __attribute__((aligned(64)));                                            \
        const binary_consts k = binary_setup(p);                                                 \
        for (size_t c0 = 0; c0 < cols; c0 += CHUNK) {                                            \
            const size_t n = QE_MIN(CHUNK, cols - c0);                                           \
            for (size_t i = 0; i < n; i += 16) {                                                 \
                const __mmask16 m = mask16(n - i);                                               \
                const __m512i bi = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, b + c0 + i));    \
                _mm512_store_ps(fb + i, b16(_mm512_maskz_cvtepi32_ps(                            \
                                                m, _mm512_sub_epi32(bi, k.bzp)), &k));           \
            }                                                                                    \
            for (size_t r = 0; r < rows; r++) {                                                  \
                const uint8_t *ar = a + r * cols + c0;                                           \
                uint8_t *yr = y + r * cols + c0;                                                 \
                size_t i = 0;                                                                    \
                for (; i + 64 <= n; i += 64) {                                                   \
                    __m512 v[4];                                                                 \
                    for (int t = 0; t < 4; t++)                                                  \
                        v[t] = opf16(_mm_loadu_si128((const __m128i *)(ar + i + 16 * t)),        \
                                     fb + i + 16 * t, &k);                                       \
                    _mm512_storeu_si512(yr + i, requant64(v[0], v[1], v[2], v[3], &k));          \
                }                                                                                \
                for (; i < n; i += 16) {                                                         \
                    const __mmask16 m = mask16(n - i);                                           \
                    qe_store_u8x16_avx512(                                                       \
                        yr + i, requant16(opf16(_mm_maskz_loadu_epi8(m, ar + i), fb + i, &k), &k), \
                        m);                                                                      \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }
QE_BINARY_ROWS_BCAST_AVX512(mul_rows_bcast_avx512, mul_b16, mulf16)
QE_BINARY_ROWS_BCAST_AVX512(add_rows_bcast_avx512, add_b16, addf16)

/* ---- table lookup ------------------------------------------------------------------------ */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void lut_vbmi(
    size_t rows, size_t cols, const uint8_t *x, size_t ldx, const uint8_t *table, uint8_t *y,
    size_t ldy) {
    const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
    const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
    for (size_t r = 0; r < rows; r++, x += ldx, y += ldy)
        for (size_t i = 0; i < cols; i += 64) {
            const __mmask64 m = mask64(cols - i);
            const __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
            const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1); /* entries 0..127 */
            const __m512i hi = _mm512_permutex2var_epi8(t2, v, t3); /* entries 128..255 */
            qe_store_u8x64_avx512(y + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi),
                                  m);
        }
}

/* Without VBMI: slice i of the table (entries 16i..16i+15) is looked up with vpshufb, which
 * yields 0 when the index byte has bit 7 set. For x < 128, subs_epi8(x, 16i) keeps bit 7 clear
 * (and the low nibble x & 15) exactly when x >= 16i, so the lookups of slices 0..x/16 hit; with
 * slices stored as differences d_i = T_i ^ T_{i-1} their XOR telescopes to T_{x/16}. The upper
 * half does the same on x ^ 0x80, which is negative for x < 128. */
static void lut_pshufb(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                       const uint8_t *table, uint8_t *y, size_t ldy) {
    __m512i d[16];
    for (int i = 0; i < 16; i++) {
        __m128i s = _mm_loadu_si128((const __m128i *)(table + 16 * i));
        if (i % 8) s = _mm_xor_si128(s, _mm_loadu_si128((const __m128i *)(table + 16 * (i - 1))));
        d[i] = _mm512_broadcast_i32x4(s);
    }
    const __m512i step = _mm512_set1_epi8(16), top = _mm512_set1_epi8((char)0x80);
    for (size_t row = 0; row < rows; row++, x += ldx, y += ldy)
        for (size_t i = 0; i < cols; i += 64) {
            const __mmask64 m = mask64(cols - i);
            const __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
            __m512i lo = v, hi = _mm512_xor_si512(v, top);
            __m512i r =
                _mm512_xor_si512(_mm512_shuffle_epi8(d[0], lo), _mm512_shuffle_epi8(d[8], hi));
            for (int s = 1; s < 8; s++) {
                lo = _mm512_subs_epi8(lo, step);
                hi = _mm512_subs_epi8(hi, step);
                r = _mm512_xor_si512(r, _mm512_xor_si512(_mm512_shuffle_epi8(d[s], lo),
                                                         _mm512_shuffle_epi8(d[8 + s], hi)));
            }
            qe_store_u8x64_avx512(y + i, r, m);
        }
}

/* Into float32: 16 codes widened to dwords; each pair of the table's 16 vectors is one
 * two-source permute by the code's low 5 bits (entries 32p .. 32p + 31), and bits 5-7 pick
 * among the 8 results with masked blends. (A gather was slower than a scalar loop on Zen 4.) */
static inline __m512 lut_f32_16(const __m512 t[16], __m512i idx) {
    __m512 r[8];
    for (int p = 0; p < 8; p++) r[p] = _mm512_permutex2var_ps(t[2 * p], idx, t[2 * p + 1]);
    const __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
    const __mmask16 b7 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(128));
    for (int p = 0; p < 4; p++) r[p] = _mm512_mask_blend_ps(b5, r[2 * p], r[2 * p + 1]);
    for (int p = 0; p < 2; p++) r[p] = _mm512_mask_blend_ps(b6, r[2 * p], r[2 * p + 1]);
    return _mm512_mask_blend_ps(b7, r[0], r[1]);
}

static void lut_f32_avx512(size_t n, const uint8_t *x, const float *table, float *y) {
    __m512 t[16];
    for (int v = 0; v < 16; v++) t[v] = _mm512_loadu_ps(table + 16 * v);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm512_storeu_ps(y + i, lut_f32_16(t, idx));
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, lut_f32_16(t, idx));
    }
}

static void lut_avx512(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                       const uint8_t *table, uint8_t *y, size_t ldy) {
    if (!qe_lut_no_vbmi && (qe_cpu_features() & QE_FEAT_AVX512VBMI)) /* a CPU feature, not a path */
        lut_vbmi(rows, cols, x, ldx, table, y, ldy);
    else
        lut_pshufb(rows, cols, x, ldx, table, y, ldy);
}

/* ---- quantize / dequantize ---------------------------------------------------------------- */
static inline __m512i quantize16(__m512 x, __m512 s, __m512i z, __m512 lo, __m512 hi) {
    __m512 v = _mm512_div_ps(x, s);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); /* NaN -> 0 */
    return qe_requant_ps_avx512(v, lo, hi, z);
}

static void quantize_avx512(size_t n, const float *x, const float *scale, const int32_t *zp,
                            int per_elem, int32_t qmin, int32_t qmax, uint8_t *y) {
    const __m512i vqmin = _mm512_set1_epi32(qmin), vqmax = _mm512_set1_epi32(qmax);
    if (!per_elem) {
        const __m512 s = _mm512_set1_ps(scale[0]);
        const __m512i z = _mm512_set1_epi32(zp[0]);
        const __m512 lo = _mm512_set1_ps((float)(qmin - zp[0])), hi = _mm512_set1_ps((float)(qmax - zp[0]));
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            __m512i q[4];
            for (int j = 0; j < 4; j++) q[j] = quantize16(_mm512_loadu_ps(x + i + 16 * j), s, z, lo, hi);
            _mm512_storeu_si512(y + i, qmin < 0 ? qe_pack64_s8_avx512(q[0], q[1], q[2], q[3])
                                                : qe_pack64_u8_avx512(q[0], q[1], q[2], q[3]));
        }
        for (; i + 16 <= n; i += 16)
            _mm_storeu_si128((__m128i *)(y + i),
                             _mm512_cvtepi32_epi8(quantize16(_mm512_loadu_ps(x + i), s, z, lo, hi)));
        if (i < n) {
            const __mmask16 m = mask16(n - i);
            qe_store_u8x16_avx512(y + i, quantize16(_mm512_maskz_loadu_ps(m, x + i), s, z, lo, hi), m);
        }
        return;
    }
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        const __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, scale + i);
        const __m512i z = _mm512_maskz_loadu_epi32(m, zp + i);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(vqmin, z));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(vqmax, z));
        qe_store_u8x16_avx512(y + i, quantize16(_mm512_maskz_loadu_ps(m, x + i), s, z, lo, hi), m);
    }
}

static void dequantize8_avx512(size_t n, const uint8_t *x, int is_signed, const float *scale,
                               const int32_t *zp, int per_elem, float *y) {
    __m512 s = _mm512_set1_ps(scale[0]);
    __m512i z = _mm512_set1_epi32(zp[0]);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        if (per_elem) {
            s = _mm512_maskz_loadu_ps(m, scale + i);
            z = _mm512_maskz_loadu_epi32(m, zp + i);
        }
        const __m128i b = _mm_maskz_loadu_epi8(m, x + i);
        const __m512i v = is_signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
        qe_store_ps_avx512(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, z)), s), m);
    }
}

static void dequantize32_avx512(size_t n, const int32_t *x, const float *scale, int per_elem,
                                float *y) {
    __m512 s = _mm512_set1_ps(scale[0]);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        if (per_elem) s = _mm512_maskz_loadu_ps(m, scale + i);
        qe_store_ps_avx512(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, x + i)), s),
                           m);
    }
}

const qe_eltwise_kernels qe_eltwise_avx512 = {
    .add = add_avx512,
    .mul = mul_avx512,
    .mul_rows_bcast = mul_rows_bcast_avx512,
    .add_rows_bcast = add_rows_bcast_avx512,
    .lut = lut_avx512,
    .lut_f32 = lut_f32_avx512,
    .quantize = quantize_avx512,
    .dequantize8 = dequantize8_avx512,
    .dequantize32 = dequantize32_avx512,
};
