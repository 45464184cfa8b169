/*
 * eltwise_ref.c -- the portable reference element-wise kernels: the definition every SIMD
 * path equals.
 */
#include "eltwise.h"

static void add_ref(size_t n, const uint8_t *a, const uint8_t *b, const qe_binary_params *p,
                    uint8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = qe_add_one(a[i], b[i], p);
}

static void mul_ref(size_t n, const uint8_t *a, const uint8_t *b, const qe_binary_params *p,
                    uint8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = qe_mul_one(a[i], b[i], p);
}

static void lut_ref(size_t rows, size_t cols, const uint8_t *x, size_t ldx,
                    const uint8_t *table, uint8_t *y, size_t ldy) {
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < cols; i++) y[r * ldy + i] = table[x[r * ldx + i]];
}

static void quantize_ref(size_t n, const float *x, const float *scale, const int32_t *zp,
                         int per_elem, int32_t qmin, int32_t qmax, uint8_t *y) {
    for (size_t i = 0; i < n; i++) {
        const size_t c = per_elem ? i : 0;
        y[i] = qe_quantize_one(x[i], scale[c], zp[c], qmin, qmax);
    }
}

static void dequantize8_ref(size_t n, const uint8_t *x, int is_signed, const float *scale,
                            const int32_t *zp, int per_elem, float *y) {
    for (size_t i = 0; i < n; i++) {
        const size_t c = per_elem ? i : 0;
        const int32_t v = is_signed ? (int32_t)(int8_t)x[i] : (int32_t)x[i];
        y[i] = (float)(v - zp[c]) * scale[c];
    }
}

static void dequantize32_ref(size_t n, const int32_t *x, const float *scale, int per_elem,
                             float *y) {
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i] * scale[per_elem ? i : 0];
}

const qe_eltwise_kernels qe_eltwise_ref = {
    .add = add_ref,
    .mul = mul_ref,
    .lut = lut_ref,
    .quantize = quantize_ref,
    .dequantize8 = dequantize8_ref,
    .dequantize32 = dequantize32_ref,
};
