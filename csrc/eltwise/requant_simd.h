/*
 * requant_simd.h -- the vector form of qe_requant_one (qe_internal.h), shared by the conv, pool
 * and element-wise kernels of each ISA. Included only by per-ISA files: each section exists
 * when that file's flags enable it.
 *
 * The scalar definition: v = float(acc) * mult; clamp v to [qmin - zp, qmax - zp] (integers, so
 * clamping before rounding equals clamping after); round half to even; add zp. The vector
 * instructions below do exactly these float32 operations (cvtps2dq / fcvtns round half to even
 * in the default rounding mode, which qengine never changes).
 */
#ifndef QE_REQUANT_SIMD_H
#define QE_REQUANT_SIMD_H

#include "../qe_internal.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

/* The uint8 pipeline of four vectors of float(acc) * scale at any x86 width (P: _mm_, _mm256_,
 * _mm512_), packed per 128-bit lane: lane j of the result holds lane j of v0, v1, v2, v3 in that
 * order (4 values each at 128 bits). hi = qmax - zp (float), zp16 = zp (int16 lanes), lo8 = qmin
 * (uint8 lanes). Only the top is clamped in float (it also keeps cvtps2dq in range); the signed
 * pack, the saturating int16 add of zp and the unsigned pack clamp below at 0, and the byte max
 * applies qmin. The same bits as qe_requant_one for every input: lo - zp is an integer, so
 * clamping below after rounding equals clamping before; +-inf go to qmax / qmin as there
 * (v < -2^31 converts to INT_MIN, which the packs take to 0). 14 instructions for 4 vectors
 * instead of 19 (and no 4 x vpmovdb). */
#define QE_REQUANT_PACK_U8_INLANE(P, v0, v1, v2, v3, hi, zp16, lo8)                              \
    P##max_epu8(                                                                                \
        P##packus_epi16(                                                                        \
            P##adds_epi16(P##packs_epi32(P##cvtps_epi32(P##min_ps(hi, v0)),                     \
                                         P##cvtps_epi32(P##min_ps(hi, v1))),                    \
                          zp16),                                                                \
            P##adds_epi16(P##packs_epi32(P##cvtps_epi32(P##min_ps(hi, v2)),                     \
                                         P##cvtps_epi32(P##min_ps(hi, v3))),                    \
                          zp16)),                                                               \
        lo8)

/* The same pipeline without the float clamp at the top, for outputs whose qmax is 255 and
 * whose every scale is below 1 (the caller checks both, qe_gemm_epilogue.hi_free): then
 * |float(acc) * scale| < 2^31 (float(acc) is at most 2^31 in magnitude), so cvtps2dq never
 * overflows to INT_MIN; a value above qmax - zp rounds to an integer above it, which the signed
 * pack, the saturating add of zp and the unsigned pack take to 255 = qmax -- the value the
 * clamp gives; every other value takes the path above unchanged. 10 instructions for 4
 * vectors. */
#define QE_REQUANT_PACK_U8_INLANE_NOHI(P, v0, v1, v2, v3, zp16, lo8)                              \
    P##max_epu8(P##packus_epi16(P##adds_epi16(P##packs_epi32(P##cvtps_epi32(v0),                 \
                                                             P##cvtps_epi32(v1)),                \
                                              zp16),                                             \
                                P##adds_epi16(P##packs_epi32(P##cvtps_epi32(v2),                 \
                                                             P##cvtps_epi32(v3)),                \
                                              zp16)),                                            \
                lo8)

#if defined(__AVX2__)
/* clamp(v) -> rint -> + zp (int32 lanes in [qmin, qmax]). */
static inline __m256i qe_requant_ps_avx2(__m256 v, __m256 lo, __m256 hi, __m256i zp) {
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
}

/* 16 int32 lanes already in [0, 255] (a: elements 0..7, b: 8..15) -> 16 bytes in order. */
static inline __m128i qe_pack16_u8_avx2(__m256i a, __m256i b) {
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
static inline __m512i qe_requant_ps_avx512(__m512 v, __m512 lo, __m512 hi, __m512i zp) {
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
}

/* Stores under a mask only when the mask is partial: masked stores (and vpmovdb to memory) are
 * slow on AMD Zen 4, while full vectors take plain stores. The low byte of each int32 lane is
 * stored, which is the uint8 or int8 value of a lane inside [qmin, qmax]. */
static inline void qe_store_u8x16_avx512(void *dst, __m512i q, __mmask16 m) {
    const __m128i b = _mm512_cvtepi32_epi8(q);
    if (m == 0xFFFF)
        _mm_storeu_si128((__m128i *)dst, b);
    else
        _mm_mask_storeu_epi8(dst, m, b);
}

static inline void qe_store_ps_avx512(void *dst, __m512 v, __mmask16 m) {
    if (m == 0xFFFF)
        _mm512_storeu_ps(dst, v);
    else
        _mm512_mask_storeu_ps(dst, m, v);
}

static inline void qe_store_epi32_avx512(void *dst, __m512i v, __mmask16 m) {
    if (m == 0xFFFF)
        _mm512_storeu_si512(dst, v);
    else
        _mm512_mask_storeu_epi32(dst, m, v);
}

/* 64 bytes packed per 128-bit lane from four vectors q0..q3 of 16 (the in-lane packs: byte lane
 * L holds [q0, q1, q2, q3] dwords L) -> element order: element dword 4k + L sits at 4L + k. */
static inline __m512i qe_unlane64_avx512(__m512i b) {
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(idx, b);
}

/* 4 x 16 int32 lanes already in [0, 255] (elements 0-15, 16-31, ...) -> 64 bytes in order:
 * two in-lane saturating packs (exact here) and one dword transpose, instead of 4 vpmovdb. */
static inline __m512i qe_pack64_u8_avx512(__m512i q0, __m512i q1, __m512i q2, __m512i q3) {
    return qe_unlane64_avx512(
        _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3)));
}

/* The same for int8 results in [-128, 127]. */
static inline __m512i qe_pack64_s8_avx512(__m512i q0, __m512i q1, __m512i q2, __m512i q3) {
    return qe_unlane64_avx512(
        _mm512_packs_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3)));
}

static inline void qe_store_u8x64_avx512(void *dst, __m512i v, __mmask64 m) {
    if (m == ~(__mmask64)0)
        _mm512_storeu_si512(dst, v);
    else
        _mm512_mask_storeu_epi8(dst, m, v);
}
#endif

#if defined(__ARM_NEON) && defined(__aarch64__)
static inline int32x4_t qe_requant_ps_neon(float32x4_t v, float32x4_t lo, float32x4_t hi,
                                           int32x4_t zp) {
    v = vminq_f32(vmaxq_f32(v, lo), hi);
    return vaddq_s32(vcvtnq_s32_f32(v), zp);
}

/* 16 int32 lanes already in [0, 255] -> 16 bytes in order. */
static inline uint8x16_t qe_pack16_u8_neon(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    const uint16x8_t lo = vcombine_u16(vqmovun_s32(a), vqmovun_s32(b));
    const uint16x8_t hi = vcombine_u16(vqmovun_s32(c), vqmovun_s32(d));
    return vcombine_u8(vqmovn_u16(lo), vqmovn_u16(hi));
}
#endif

#endif
