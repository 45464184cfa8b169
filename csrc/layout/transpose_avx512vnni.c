/* transpose_avx512vnni.c -- the pixels-to-planes copy (transpose.h) in zmm: blocks of 16 pixels
 * x 64 channels (four 16 x 16 lanes), a 32- and a 16-channel block in ymm / xmm, the rest
 * scalar. */
#include "transpose.h"

void qe_transpose_u8_16x64__avx512vnni(const uint8_t *src, size_t src_stride, size_t pixels,
                                       size_t channels, uint8_t *dst, size_t dst_stride) {
    qe_transpose_u8_blocks(src, src_stride, pixels, channels, dst, dst_stride);
}
