/*
 * output.h -- the output pipeline (gemmlowp's name for it): int32 accumulators -> the output
 * type, with bias, per-channel scale, zero point and the fused-activation clamp.
 * The reference here is the definition; SIMD kernels fuse the same steps into their tiles and
 * must produce the same bits.
 */
#ifndef QE_OUTPUT_H
#define QE_OUTPUT_H

#include "qe_internal.h"

/* Store `count` accumulators of one output row. acc[j] belongs to column n0 + j; `dst` points at
 * column n0 of the output row. Adds out->bias[n] (int32, wrapping) first. */
void qe_output_row_ref(const qe_output *out, const int32_t *acc, size_t n0, size_t count, void *dst);

/* The output pipeline of the channels from c0 on: per-channel arrays start at c0 (a group of a
 * grouped convolution, or a block of channels that one task computes). */
static inline qe_output qe_output_from_channel(const qe_output *out, size_t c0) {
    qe_output o = *out;
    if (o.bias) o.bias += c0;
    if (o.fbias) o.fbias += c0;
    if (o.per_channel && o.scale) o.scale += c0;
    return o;
}

/* Element size in bytes of an output kind. */
static inline size_t qe_output_elem_size(qe_out_kind k) { return k == QE_OUT_U8 ? 1 : 4; }

/* int32 addition that wraps modulo 2^32 (the accumulator's defined behaviour, as in hardware). */
static inline int32_t qe_add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t qe_mul_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }

#endif
