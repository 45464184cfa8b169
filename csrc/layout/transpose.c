/* transpose.c -- the portable pixels-to-planes copy (transpose.h): the reference path. */
#include "transpose.h"

void qe_transpose_u8_ref(const uint8_t *src, size_t src_stride, size_t pixels,
                         size_t channels, uint8_t *dst, size_t dst_stride) {
    QE_ASSERT(src != NULL && dst != NULL);
    QE_ASSERT(channels <= 1 || dst_stride >= pixels);
    qe_transpose_u8_scalar(src, src_stride, 0, pixels, 0, channels, dst, dst_stride);
}

void qe_transpose_x32_ref(const uint32_t *src, size_t src_stride, size_t pixels,
                          size_t channels, uint32_t *dst, size_t dst_stride) {
    QE_ASSERT(src != NULL && dst != NULL);
    QE_ASSERT(channels <= 1 || dst_stride >= pixels);
    qe_transpose_x32_scalar(src, src_stride, 0, pixels, 0, channels, dst, dst_stride);
}
