/*
 * interleave.h -- planes to pixels: dst[p * C + c] = src[c * plane_stride + p] for p < pixels,
 * c < C, uint8. The NCHW -> NHWC relayout of a quantized image with few channels (the input of
 * nearly every vision model: C = 3), where the generic permute copy moves one byte per loop
 * step. The body below is compiled once per ISA file (interleave*.c) with a fixed C for the
 * common channel counts, which the compiler turns into shuffles. Pure data movement: every
 * path writes the same bytes.
 */
#ifndef QE_LAYOUT_INTERLEAVE_H
#define QE_LAYOUT_INTERLEAVE_H

#include "../qe_internal.h"

/* The channel counts that take this path (qe_permute_copy). */
enum { QE_INTERLEAVE_MAX_CHANNELS = 16 };

typedef void (*qe_interleave_u8_fn)(const uint8_t *src, size_t plane_stride, size_t pixels,
                                    size_t channels, uint8_t *dst);

void qe_interleave_u8_ref(const uint8_t *src, size_t plane_stride, size_t pixels,
                          size_t channels, uint8_t *dst);
#if defined(QE_BUILD_X86)
void qe_interleave_u8__avx2(const uint8_t *src, size_t plane_stride, size_t pixels,
                            size_t channels, uint8_t *dst);
void qe_interleave_u8__avx512vnni(const uint8_t *src, size_t plane_stride, size_t pixels,
                                  size_t channels, uint8_t *dst);
#endif
#if defined(QE_BUILD_ARM64)
void qe_interleave_u8__neon(const uint8_t *src, size_t plane_stride, size_t pixels,
                            size_t channels, uint8_t *dst);
#endif

/* One fixed channel count: the loops the vectorizer turns into byte shuffles. */
#define QE_INTERLEAVE_FIXED(C)                                                                   \
    static void interleave_##C(const uint8_t *restrict src, size_t stride, size_t pixels,        \
                               uint8_t *restrict dst) {                                          \
        for (size_t p = 0; p < pixels; p++)                                                      \
            for (size_t c = 0; c < (C); c++) dst[p * (C) + c] = src[c * stride + p];             \
    }

/* The body of qe_interleave_u8<suffix>: C = 1..4 and 8 fixed, any other count generic. */
#define QE_DEFINE_INTERLEAVE(NAME)                                                               \
    QE_INTERLEAVE_FIXED(2)                                                                       \
    QE_INTERLEAVE_FIXED(3)                                                                       \
    QE_INTERLEAVE_FIXED(4)                                                                       \
    QE_INTERLEAVE_FIXED(8)                                                                       \
    void NAME(const uint8_t *src, size_t plane_stride, size_t pixels, size_t channels,           \
              uint8_t *dst) {                                                                    \
        QE_ASSERT(src != NULL && dst != NULL && channels >= 1);                                  \
        QE_ASSERT(channels == 1 || plane_stride >= pixels);                                      \
        switch (channels) {                                                                      \
        case 1: memcpy(dst, src, pixels); return;                                                \
        case 2: interleave_2(src, plane_stride, pixels, dst); return;                            \
        case 3: interleave_3(src, plane_stride, pixels, dst); return;                            \
        case 4: interleave_4(src, plane_stride, pixels, dst); return;                            \
        case 8: interleave_8(src, plane_stride, pixels, dst); return;                            \
        default:                                                                                 \
            for (size_t p = 0; p < pixels; p++)                                                  \
                for (size_t c = 0; c < channels; c++)                                            \
                    dst[p * channels + c] = src[c * plane_stride + p];                           \
        }                                                                                        \
    }

#endif
