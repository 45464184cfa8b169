/* transpose_avx2.c -- the pixels-to-planes copy (transpose.h) in ymm: blocks of 16 pixels x 32
 * channels (two 16 x 16 lanes), a 16-channel block in xmm, the rest scalar. */
#include "transpose.h"

void qe_transpose_u8_16x32__avx2(const uint8_t *src, size_t src_stride, size_t pixels,
                                 size_t channels, uint8_t *dst, size_t dst_stride) {
    qe_transpose_u8_blocks(src, src_stride, pixels, channels, dst, dst_stride);
}
