/*
 * eltwise.h -- inside the element-wise kernels: the per-ISA kernel table.
 *
 * The drivers (eltwise.c) validate, split the work into fixed chunks over the thread pool, and
 * turn every uint8 -> uint8 map into a 256-entry table built with the reference formula:
 * requantize, and add / mul with a scalar operand, run as qe_lut kernels, bit-identical by
 * construction. What is left for SIMD: binary ops with a vector b, table lookup, quantize and
 * dequantize.
 */
#ifndef QE_ELTWISE_H
#define QE_ELTWISE_H

#include "../qe_internal.h"

/* y[i] = op(a[i], b[i]) for i < n (qe_binary_params semantics). y may equal a or b. */
typedef void (*qe_binary_fn)(size_t n, const uint8_t *a, const uint8_t *b,
                             const qe_binary_params *p, uint8_t *y);
/* y[r][i] = op(a[r][i], b[i]) for rows x cols bytes, a and y rows cols apart, one row b for
 * every row (Mul by a per-channel scale: squeeze-excite); y may equal a. Optional (NULL: the
 * driver runs the qe_binary_fn per row). */
typedef void (*qe_binary_rows_fn)(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b,
                                  const qe_binary_params *p, uint8_t *y);
/* y[r][i] = table[x[r][i]] for rows x cols bytes (row strides ldx, ldy); y may equal x. The
 * table is set up once per call: narrow strided rows (a Concat's 16-channel slices, a conv
 * task's columns) would otherwise pay that setup per row. */
typedef void (*qe_lut_fn)(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                          const uint8_t *table, uint8_t *y, size_t ldy);
/* y[i] = table[x[i]] into float32 for i < n (a float lookup region, qe_lut_u8_f32). Optional
 * (NULL: the driver's portable loop). */
typedef void (*qe_lut_f32_fn)(size_t n, const uint8_t *x, const float *table, float *y);
/* y[i] = clamp(rint(nan0(x[i] / s)) + z, qmin, qmax) stored as a byte (uint8 or int8 bits),
 * with s, z = scale[i], zp[i] when per_elem, else scale[0], zp[0]. */
typedef void (*qe_quantize_fn)(size_t n, const float *x, const float *scale, const int32_t *zp,
                               int per_elem, int32_t qmin, int32_t qmax, uint8_t *y);
/* y[i] = float(x[i] - z) * s; x bytes read as int8 when is_signed, else uint8. */
typedef void (*qe_dequantize8_fn)(size_t n, const uint8_t *x, int is_signed, const float *scale,
                                  const int32_t *zp, int per_elem, float *y);
/* y[i] = float(x[i]) * s. */
typedef void (*qe_dequantize32_fn)(size_t n, const int32_t *x, const float *scale, int per_elem,
                                   float *y);

typedef struct {
    qe_binary_fn add, mul;
    qe_binary_rows_fn mul_rows_bcast, add_rows_bcast; /* optional: a row b over rows of a */
    qe_lut_fn lut;
    qe_lut_f32_fn lut_f32;
    qe_quantize_fn quantize;
    qe_dequantize8_fn dequantize8;
    qe_dequantize32_fn dequantize32;
} qe_eltwise_kernels;

/* The scalar definitions (eltwise_ref.c), also used to build tables and for short tails. */
static inline uint8_t qe_add_one(int32_t a, int32_t b, const qe_binary_params *p) {
    const float v = (float)(a - p->a_zp) * p->a_mult + (float)(b - p->b_zp) * p->b_mult;
    const float lo = (float)(p->qmin - p->y_zp), hi = (float)(p->qmax - p->y_zp);
    return (uint8_t)(qe_rint_f32(v < lo ? lo : (v > hi ? hi : v)) + p->y_zp);
}
static inline uint8_t qe_mul_one(int32_t a, int32_t b, const qe_binary_params *p) {
    return (uint8_t)qe_requant_one((a - p->a_zp) * (b - p->b_zp), p->a_mult, p->y_zp, p->qmin,
                                   p->qmax);
}
static inline uint8_t qe_quantize_one(float x, float scale, int32_t zp, int32_t qmin,
                                      int32_t qmax) {
    float v = x / scale;
    if (v != v) v = 0.0f; /* NaN -> the zero point */
    const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
    v = v < lo ? lo : (v > hi ? hi : v);
    return (uint8_t)(qe_rint_f32(v) + zp);
}

extern const qe_eltwise_kernels qe_eltwise_ref;
#if defined(QE_BUILD_X86)
extern const qe_eltwise_kernels qe_eltwise_avx2;
extern const qe_eltwise_kernels qe_eltwise_avx512;
#endif
/* Test hook: nonzero makes the AVX-512 lookup use vpshufb even when the CPU has VBMI. */
/* y = table[y] over rows x cols bytes (row stride ldy), on the calling thread: a post-op that a
 * kernel's task applies to the outputs it has just written (conv: qe_conv_u8s8_lut). */
void qe_lut_rows_inplace(size_t rows, size_t cols, uint8_t *y, size_t ldy,
                         const uint8_t table[256]);

/* y = add(y, b) over rows x cols uint8 (row stride ldy), b a vector of cols broadcast over the
 * rows: qe_add_u8's channel form in place, on the calling thread -- a post-op that a GEMM's
 * task applies to the rows it has just written (a MatMul's bias Add, qe_gemm_u8s8_add). p is
 * checked by qe_binary_params_ok. */
void qe_add_rows_inplace(size_t rows, size_t cols, uint8_t *y, size_t ldy, const uint8_t *b,
                         const qe_binary_params *p);
int qe_binary_params_ok(const qe_binary_params *p, int is_mul);

extern int qe_lut_no_vbmi;
void qe_lut_disable_vbmi(int off);
#if defined(QE_BUILD_ARM64)
extern const qe_eltwise_kernels qe_eltwise_neon;
#endif

#endif
