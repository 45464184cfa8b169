/*
 * transpose.h -- pixels to planes: dst[c * dst_stride + p] = src[p * src_stride + c] for
 * p < pixels, c < channels, uint8. The NHWC -> NCHW relayout of a
 * quantized tensor (a model's uint8 output, or the codes before a float table at a graph
 * output), which the generic tiled permute moves one byte per loop step (2 bytes per ns).
 *
 * The vector paths transpose 16 x 16 byte blocks inside each 128-bit lane with four rounds of
 * unpacks (bytes, words, dwords, qwords), pairing register i with register i + 8 in every
 * round: register index and byte position then trade their bits, the row bits coming out
 * reversed, so the 16 source pixels are loaded in bit-reversed order and every output register
 * holds one channel's 16 pixels in order. A zmm does four such blocks side by side (64
 * channels of 16 pixels), a ymm two. Pixels and channels past the last whole block take the
 * scalar loop. Pure data movement: every path writes the same bytes.
 */
#ifndef QE_LAYOUT_TRANSPOSE_H
#define QE_LAYOUT_TRANSPOSE_H

#include "../qe_internal.h"

typedef void (*qe_transpose_u8_fn)(const uint8_t *src, size_t src_stride, size_t pixels,
                                   size_t channels, uint8_t *dst, size_t dst_stride);

void qe_transpose_u8_ref(const uint8_t *src, size_t src_stride, size_t pixels,
                         size_t channels, uint8_t *dst, size_t dst_stride);
#if defined(QE_BUILD_X86)
void qe_transpose_u8_16x32__avx2(const uint8_t *src, size_t src_stride, size_t pixels,
                                 size_t channels, uint8_t *dst, size_t dst_stride);
void qe_transpose_u8_16x64__avx512vnni(const uint8_t *src, size_t src_stride, size_t pixels,
                                       size_t channels, uint8_t *dst, size_t dst_stride);
#endif

/* The same copy of 4-byte elements (float32, int32: a convolution's float output put in NCHW
 * order), strides in elements. The generic tiled permute gathers them one at a time (about 3
 * cycles each). */
typedef void (*qe_transpose_x32_fn)(const uint32_t *src, size_t src_stride, size_t pixels,
                                    size_t channels, uint32_t *dst, size_t dst_stride);

void qe_transpose_x32_ref(const uint32_t *src, size_t src_stride, size_t pixels,
                          size_t channels, uint32_t *dst, size_t dst_stride);
#if defined(QE_BUILD_X86)
/* 8 x 8 blocks in ymm; the AVX-512 path takes it too (a wider block moves the same bytes and
 * the stores, not the shuffles, bound it). */
void qe_transpose_x32_8x8__avx2(const uint32_t *src, size_t src_stride, size_t pixels,
                                size_t channels, uint32_t *dst, size_t dst_stride);
#endif

static inline void qe_transpose_x32_scalar(const uint32_t *src, size_t src_stride, size_t p0,
                                           size_t p1, size_t c0, size_t c1, uint32_t *dst,
                                           size_t dst_stride) {
    for (size_t c = c0; c < c1; c++)
        for (size_t p = p0; p < p1; p++) dst[c * dst_stride + p] = src[p * src_stride + c];
}

/* The scalar copy of pixels [p0, p1) x channels [c0, c1): the reference, and every vector
 * path's remainders. */
static inline void qe_transpose_u8_scalar(const uint8_t *src, size_t src_stride, size_t p0,
                                          size_t p1, size_t c0, size_t c1, uint8_t *dst,
                                          size_t dst_stride) {
    for (size_t c = c0; c < c1; c++)
        for (size_t p = p0; p < p1; p++) dst[c * dst_stride + p] = src[p * src_stride + c];
}

/* The source pixel loaded into register k of a 16 x 16 block: k with its 4 bits reversed. */
#define QE_TRANSPOSE_ROW(k) \
    ((((k) & 1) << 3) | (((k) & 2) << 1) | (((k) & 4) >> 1) | (((k) & 8) >> 3))

/* Four unpack rounds over v[0..15] (P: _mm_, _mm256_, _mm512_): afterwards v[c] holds, in each
 * 128-bit lane, channel c of that lane's 16 channels for the 16 pixels in order. */
#define QE_TRANSPOSE_16X16_LANES(P, T, v)                                                        \
    do {                                                                                        \
        T t_[16];                                                                               \
        for (int i_ = 0; i_ < 8; i_++) {                                                        \
            t_[2 * i_] = P##unpacklo_epi8(v[i_], v[i_ + 8]);                                    \
            t_[2 * i_ + 1] = P##unpackhi_epi8(v[i_], v[i_ + 8]);                                \
        }                                                                                       \
        for (int i_ = 0; i_ < 8; i_++) {                                                        \
            v[2 * i_] = P##unpacklo_epi16(t_[i_], t_[i_ + 8]);                                  \
            v[2 * i_ + 1] = P##unpackhi_epi16(t_[i_], t_[i_ + 8]);                              \
        }                                                                                       \
        for (int i_ = 0; i_ < 8; i_++) {                                                        \
            t_[2 * i_] = P##unpacklo_epi32(v[i_], v[i_ + 8]);                                   \
            t_[2 * i_ + 1] = P##unpackhi_epi32(v[i_], v[i_ + 8]);                               \
        }                                                                                       \
        for (int i_ = 0; i_ < 8; i_++) {                                                        \
            v[2 * i_] = P##unpacklo_epi64(t_[i_], t_[i_ + 8]);                                  \
            v[2 * i_ + 1] = P##unpackhi_epi64(t_[i_], t_[i_ + 8]);                              \
        }                                                                                       \
    } while (0)

#if defined(__AVX2__)
#include <immintrin.h>

/* Pixels [p, p + 16) x channels [c, c + 16) through xmm registers. */
static inline void qe_transpose_u8_block16(const uint8_t *src, size_t ss, size_t p, size_t c,
                                           uint8_t *dst, size_t ds) {
    __m128i v[16];
    for (int k = 0; k < 16; k++)
        v[k] = _mm_loadu_si128((const __m128i *)(src + (p + QE_TRANSPOSE_ROW(k)) * ss + c));
    QE_TRANSPOSE_16X16_LANES(_mm_, __m128i, v);
    for (int k = 0; k < 16; k++) _mm_storeu_si128((__m128i *)(dst + (c + k) * ds + p), v[k]);
}

/* Pixels [p, p + 16) x channels [c, c + 32) through ymm registers (two lanes). */
static inline void qe_transpose_u8_block32(const uint8_t *src, size_t ss, size_t p, size_t c,
                                           uint8_t *dst, size_t ds) {
    __m256i v[16];
    for (int k = 0; k < 16; k++)
        v[k] = _mm256_loadu_si256((const __m256i *)(src + (p + QE_TRANSPOSE_ROW(k)) * ss + c));
    QE_TRANSPOSE_16X16_LANES(_mm256_, __m256i, v);
    for (int k = 0; k < 16; k++) {
        _mm_storeu_si128((__m128i *)(dst + (c + k) * ds + p), _mm256_castsi256_si128(v[k]));
        _mm_storeu_si128((__m128i *)(dst + (c + 16 + k) * ds + p),
                         _mm256_extracti128_si256(v[k], 1));
    }
}

#if defined(__AVX512F__)
/* Pixels [p, p + 16) x channels [c, c + 64) through zmm registers (four lanes). */
static inline void qe_transpose_u8_block64(const uint8_t *src, size_t ss, size_t p, size_t c,
                                           uint8_t *dst, size_t ds) {
    __m512i v[16];
    for (int k = 0; k < 16; k++)
        v[k] = _mm512_loadu_si512(src + (p + QE_TRANSPOSE_ROW(k)) * ss + c);
    QE_TRANSPOSE_16X16_LANES(_mm512_, __m512i, v);
    for (int k = 0; k < 16; k++) {
        _mm_storeu_si128((__m128i *)(dst + (c + k) * ds + p), _mm512_castsi512_si128(v[k]));
        _mm_storeu_si128((__m128i *)(dst + (c + 16 + k) * ds + p),
                         _mm512_extracti32x4_epi32(v[k], 1));
        _mm_storeu_si128((__m128i *)(dst + (c + 32 + k) * ds + p),
                         _mm512_extracti32x4_epi32(v[k], 2));
        _mm_storeu_si128((__m128i *)(dst + (c + 48 + k) * ds + p),
                         _mm512_extracti32x4_epi32(v[k], 3));
    }
}
#endif

/* The body of the vector paths: per 16 pixels, blocks of 64 channels (AVX-512 only), 32 and
 * 16, then the channels past them; the pixels past the last 16 scalar. */
static inline void qe_transpose_u8_blocks(const uint8_t *src, size_t ss, size_t pixels,
                                          size_t channels, uint8_t *dst, size_t ds) {
    QE_ASSERT(src != NULL && dst != NULL);
    QE_ASSERT(channels <= 1 || ds >= pixels);
    const size_t pv = pixels & ~(size_t)15;
    for (size_t p = 0; p < pv; p += 16) {
        size_t c = 0;
#if defined(__AVX512F__)
        for (; c + 64 <= channels; c += 64) qe_transpose_u8_block64(src, ss, p, c, dst, ds);
#endif
        for (; c + 32 <= channels; c += 32) qe_transpose_u8_block32(src, ss, p, c, dst, ds);
        if (c + 16 <= channels) {
            qe_transpose_u8_block16(src, ss, p, c, dst, ds);
            c += 16;
        }
        qe_transpose_u8_scalar(src, ss, p, p + 16, c, channels, dst, ds);
    }
    qe_transpose_u8_scalar(src, ss, pv, pixels, 0, channels, dst, ds);
}
#endif

#endif
