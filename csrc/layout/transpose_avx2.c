/* transpose_avx2.c -- the pixels-to-planes copy (transpose.h) in ymm: bytes in blocks of 16
 * pixels x 32 channels (two 16 x 16 lanes), a 16-channel block in xmm; 4-byte elements in 8 x 8
 * blocks; the rest scalar. */
#include "transpose.h"

void qe_transpose_u8_16x32__avx2(const uint8_t *src, size_t src_stride, size_t pixels,
                                 size_t channels, uint8_t *dst, size_t dst_stride) {
    qe_transpose_u8_blocks(src, src_stride, pixels, channels, dst, dst_stride);
}

/* Pixels [p, p + 8) x channels [c, c + 8) of 4-byte elements: the usual three rounds (unpack
 * pairs of rows, shuffle pairs of pairs, swap 128-bit halves). Shuffles of float lanes move
 * bits only. */
static inline void transpose_x32_block8(const uint32_t *src, size_t ss, size_t p, size_t c,
                                        uint32_t *dst, size_t ds) {
    __m256 r[8], t[8];
    for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps((const float *)(src + (p + k) * ss + c));
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_ps((float *)(dst + (c + k) * ds + p),
                         _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps((float *)(dst + (c + k + 4) * ds + p),
                         _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
    }
}

void qe_transpose_x32_8x8__avx2(const uint32_t *src, size_t src_stride, size_t pixels,
                                size_t channels, uint32_t *dst, size_t dst_stride) {
    QE_ASSERT(src != NULL && dst != NULL);
    QE_ASSERT(channels <= 1 || dst_stride >= pixels);
    const size_t pv = pixels & ~(size_t)7, cv = channels & ~(size_t)7;
    for (size_t p = 0; p < pv; p += 8) {
        for (size_t c = 0; c < cv; c += 8)
            transpose_x32_block8(src, src_stride, p, c, dst, dst_stride);
        qe_transpose_x32_scalar(src, src_stride, p, p + 8, cv, channels, dst, dst_stride);
    }
    qe_transpose_x32_scalar(src, src_stride, pv, pixels, 0, channels, dst, dst_stride);
}
