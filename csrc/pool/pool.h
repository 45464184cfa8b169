/*
 * pool.h -- inside NHWC uint8 pooling: the per-ISA kernel interface.
 *
 * As in the depthwise convolution, the driver (pool.c) gives each output pixel one input
 * pointer per window tap; taps outside the input point at a row that cannot change the result:
 * zeros for max (0 never beats a real tap, and an all-padding window gives 0 as documented),
 * x_zp for average (x_zp - x_zp adds nothing). The per-pixel divisor of the average is folded
 * into a per-pixel multiplier computed by the driver, so kernels are border-free.
 */
#ifndef QE_POOL_H
#define QE_POOL_H

#include "../qe_internal.h"

typedef struct {
    int32_t sub;         /* subtracted from the raw sum: taps * x_zp (or hw * x_zp) */
    int32_t zp, qmin, qmax;
} qe_pool_requant;

/* y[px][c] = max_t taps[px * ntaps + t][c], pixel stride `channels`. */
typedef void (*qe_maxpool_fn)(size_t pixels, size_t channels, size_t ntaps,
                              const uint8_t *const *taps, uint8_t *y);
/* acc = sum_t taps[px * ntaps + t][c] - rq->sub;
 * y[px][c] = clamp(rint(float(acc) * mult[px]) + zp, qmin, qmax) (clamp on the float, as
 * qe_requant_one). ntaps <= 2^16. */
typedef void (*qe_avgpool_fn)(size_t pixels, size_t channels, size_t ntaps,
                              const uint8_t *const *taps, const float *mult,
                              const qe_pool_requant *rq, uint8_t *y);
/* The same over `rows` rows x[r * ldx + c], c < channels, into y[c] with one multiplier;
 * rows <= 2^23. */
typedef void (*qe_gavgpool_fn)(size_t rows, size_t channels, const uint8_t *x, size_t ldx,
                               float mult, const qe_pool_requant *rq, uint8_t *y);

/* One output column of a max pool over a map stored by columns (the pool fused into a
 * convolution, conv_colstrip.c): for i < out_rows and c < channels,
 *   y[i * ldy + c] = max of cols[k][r * channels + c] over k < ncols and the rows r of
 *                    [i * stride - pad, i * stride - pad + kernel) inside [0, rows),
 * 0 where that window holds no row (or ncols == 0), as qe_maxpool_u8 gives it. */
typedef void (*qe_maxpool_column_fn)(size_t out_rows, size_t channels,
                                     const uint8_t *const *cols, size_t ncols, size_t rows,
                                     size_t kernel, size_t stride, size_t pad, uint8_t *y,
                                     size_t ldy);
/* The pooled-column kernel of an ISA (the reference where it has none). */
qe_maxpool_column_fn qe_maxpool_column_for(qe_isa isa);

/* The rows [*r0, *r1) of pooled row i's window inside [0, rows). */
static inline void qe_pool_window_rows(size_t i, size_t kernel, size_t stride, size_t pad,
                                       size_t rows, size_t *r0, size_t *r1) {
    const ptrdiff_t a = (ptrdiff_t)(i * stride) - (ptrdiff_t)pad;
    *r0 = (size_t)QE_MAX(a, 0);
    *r1 = (size_t)QE_MAX(QE_MIN(a + (ptrdiff_t)kernel, (ptrdiff_t)rows), (ptrdiff_t)*r0);
}

void qe_maxpool_u8_ref(size_t, size_t, size_t, const uint8_t *const *, uint8_t *);
void qe_maxpool_column_u8_ref(size_t, size_t, const uint8_t *const *, size_t, size_t, size_t,
                              size_t, size_t, uint8_t *, size_t);
void qe_avgpool_u8_ref(size_t, size_t, size_t, const uint8_t *const *, const float *,
                       const qe_pool_requant *, uint8_t *);
void qe_gavgpool_u8_ref(size_t, size_t, const uint8_t *, size_t, float, const qe_pool_requant *,
                        uint8_t *);
#if defined(QE_BUILD_X86)
void qe_maxpool_u8_c32__avx2(size_t, size_t, size_t, const uint8_t *const *, uint8_t *);
void qe_maxpool_column_u8_c32__avx2(size_t, size_t, const uint8_t *const *, size_t, size_t,
                                    size_t, size_t, size_t, uint8_t *, size_t);
void qe_maxpool_column_u8_c64__avx512(size_t, size_t, const uint8_t *const *, size_t, size_t,
                                      size_t, size_t, size_t, uint8_t *, size_t);
void qe_avgpool_u8_c16__avx2(size_t, size_t, size_t, const uint8_t *const *, const float *,
                             const qe_pool_requant *, uint8_t *);
void qe_gavgpool_u8_c16__avx2(size_t, size_t, const uint8_t *, size_t, float,
                              const qe_pool_requant *, uint8_t *);
void qe_maxpool_u8_c64__avx512(size_t, size_t, size_t, const uint8_t *const *, uint8_t *);
void qe_avgpool_u8_c32__avx512(size_t, size_t, size_t, const uint8_t *const *, const float *,
                               const qe_pool_requant *, uint8_t *);
void qe_gavgpool_u8_c32__avx512(size_t, size_t, const uint8_t *, size_t, float,
                                const qe_pool_requant *, uint8_t *);
#endif
#if defined(QE_BUILD_ARM64)
void qe_maxpool_u8_c16__neon(size_t, size_t, size_t, const uint8_t *const *, uint8_t *);
void qe_maxpool_column_u8_c16__neon(size_t, size_t, const uint8_t *const *, size_t, size_t,
                                    size_t, size_t, size_t, uint8_t *, size_t);
void qe_avgpool_u8_c16__neon(size_t, size_t, size_t, const uint8_t *const *, const float *,
                             const qe_pool_requant *, uint8_t *);
void qe_gavgpool_u8_c16__neon(size_t, size_t, const uint8_t *, size_t, float,
                              const qe_pool_requant *, uint8_t *);
#endif

#endif
