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
