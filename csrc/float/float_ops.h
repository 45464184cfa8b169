/* float_ops.h -- the float kernels of csrc/float/, written once and compiled per ISA.
 *
 * softmax.c (the portable reference), softmax_avx2.c and softmax_avx512vnni.c include this file
 * with their own compiler flags: the source is the same IEEE float32 operations in the same
 * order (no FMA contraction, no reassociation: reductions stay sequential), so every path gives
 * the same bits while the wider ones vectorize the element-wise loops.
 */
#ifndef QE_FLOAT_OPS_H
#define QE_FLOAT_OPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x without libm, branch-free so a loop of it vectorizes. Cody-Waite reduction
 * x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial of e^r (relative error < 2 ulp), scaled by
 * 2^n through the exponent bits. x below -87.3 gives 0, above 88.7 +inf. */
static inline float qe_expf_poly(float x) {
    const float hi = 88.72283f, lo = -87.33654f;
    float xc = x < hi ? x : hi;
    xc = xc > lo ? xc : lo;
    const float n = rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f; /* ln2 split in two: n * the high part is exact */
    r = r - n * -2.12194440e-4f;
    /* e^r = 1 + r + r^2 q(r), q of degree 5 in Estrin's form: pairs, then powers of r^2 --
     * half the chain of dependent operations of Horner's (the loop is latency bound) */
    const float r2 = r * r;
    const float q01 = 1.6666665459e-1f * r + 5.0000001201e-1f;
    const float q23 = 8.3334519073e-3f * r + 4.1665795894e-2f;
    const float q45 = 1.9875691500e-4f * r + 1.3981999507e-3f;
    const float q = (q45 * r2 + q23) * r2 + q01;
    float p = q * r2 + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < lo ? 0.0f : y;
    y = x > hi ? INFINITY : y;
    return y;
}

/* Sums and maxima in 8 explicit lanes combined in a fixed order: the source fixes the order of
 * every addition, so a vectorized build and the scalar reference agree bit for bit. The lanes
 * are a GCC/Clang vector of 8 floats: one ymm register where the build has AVX (a float[8]
 * array GCC turned into scalar adds and shuffles: 1 cycle per element in LayerNormalization),
 * lane-wise scalar or SSE operations elsewhere -- the same IEEE operations either way. */
enum { QE_LANES = 8 };
#if defined(__GNUC__) && !defined(__clang__)
/* No push/pop: GCC reports -Wpsabi when it expands the functions, past the end of this
 * header, so the setting has to stay for the including file (the per-ISA float files). */
#pragma GCC diagnostic ignored "-Wpsabi" /* static inline only: no call crosses an ABI */
#endif
typedef float qe_lanes __attribute__((vector_size(QE_LANES * sizeof(float))));
typedef int32_t qe_lanes_i __attribute__((vector_size(QE_LANES * sizeof(int32_t))));

static inline qe_lanes qe_lanes_load(const float *v) {
    qe_lanes x;
    memcpy(&x, v, sizeof x);
    return x;
}

static inline float qe_lanes_combine(qe_lanes a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* acc[l] = v[l] > acc[l] ? v[l] : acc[l], as a bit select (C has no ?: on vectors) */
static inline qe_lanes qe_lanes_max(qe_lanes acc, qe_lanes v) {
    const qe_lanes_i take = (qe_lanes_i)(v > acc);
    return (qe_lanes)(((qe_lanes_i)v & take) | ((qe_lanes_i)acc & ~take));
}

static inline float qe_sum_lanes(const float *v, size_t n) {
    qe_lanes acc = {0};
    size_t i = 0;
    for (; i + QE_LANES <= n; i += QE_LANES) acc += qe_lanes_load(v + i);
    for (size_t l = 0; i < n; i++, l++) acc[l] += v[i];
    return qe_lanes_combine(acc);
}

static inline float qe_max_lanes(const float *v, size_t n) {
    qe_lanes acc;
    for (size_t l = 0; l < QE_LANES; l++) acc[l] = v[0];
    size_t i = 0;
    for (; i + QE_LANES <= n; i += QE_LANES) acc = qe_lanes_max(acc, qe_lanes_load(v + i));
    for (size_t l = 0; i < n; i++, l++) acc[l] = v[i] > acc[l] ? v[i] : acc[l];
    float m = acc[0];
    for (size_t l = 1; l < QE_LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* Softmax (log_form 0) or log-softmax (1) of `rows` rows of `cols` values. Rows go in blocks
 * of QE_SOFTMAX_BLOCK, each phase (maxima, exponentials, sums, scaling) over the whole block:
 * one row's phases form a chain of dependent latencies (a short attention row of 80 values
 * took ~250 cycles that way), while the block's rows are independent and overlap. Every value
 * is computed by the same operations as row by row. */
enum { QE_SOFTMAX_BLOCK = 8 };
static inline void qe_softmax_rows(size_t rows, size_t cols, const float *x, float *y,
                                   int log_form) {
    float mx[QE_SOFTMAX_BLOCK], sum[QE_SOFTMAX_BLOCK];
    for (size_t r0 = 0; r0 < rows; r0 += QE_SOFTMAX_BLOCK) {
        const size_t nb = rows - r0 < QE_SOFTMAX_BLOCK ? rows - r0 : QE_SOFTMAX_BLOCK;
        const float *xb = x + r0 * cols;
        float *yb = y + r0 * cols;
        for (size_t b = 0; b < nb; b++) mx[b] = qe_max_lanes(xb + b * cols, cols);
        for (size_t b = 0; b < nb; b++) {
            const float *xr = xb + b * cols;
            float *yr = yb + b * cols;
            const float m = mx[b];
            for (size_t c = 0; c < cols; c++) yr[c] = qe_expf_poly(xr[c] - m); /* vectorizes */
        }
        for (size_t b = 0; b < nb; b++) sum[b] = qe_sum_lanes(yb + b * cols, cols);
        for (size_t b = 0; b < nb; b++) {
            const float *xr = xb + b * cols;
            float *yr = yb + b * cols;
            if (log_form) {
                const float lse = logf(sum[b]), m = mx[b];
                for (size_t c = 0; c < cols; c++) yr[c] = (xr[c] - m) - lse;
            } else {
                const float inv = 1.0f / sum[b];
                for (size_t c = 0; c < cols; c++) yr[c] = yr[c] * inv;
            }
        }
    }
}

/* Layer normalization of `rows` rows of `cols` values: mean and variance per row (two passes,
 * sums in lanes), y = (x - mean) * (1 / sqrt(var + eps)) * gamma + beta (beta may be NULL). */
static inline void qe_layernorm_rows(size_t rows, size_t cols, const float *x, const float *gamma,
                                     const float *beta, float eps, float *y) {
    const float inv_n = 1.0f / (float)cols;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        const float mean = qe_sum_lanes(xr, cols) * inv_n;
        qe_lanes acc = {0}; /* sum of squared deviations, in lanes */
        size_t c = 0;
        for (; c + QE_LANES <= cols; c += QE_LANES) {
            const qe_lanes d = qe_lanes_load(xr + c) - mean;
            acc += d * d;
        }
        for (size_t l = 0; c < cols; c++, l++) {
            const float d = xr[c] - mean;
            acc[l] += d * d;
        }
        const float sq = qe_lanes_combine(acc);
        const float rstd = 1.0f / sqrtf(sq * inv_n + eps);
        if (beta)
            for (size_t k = 0; k < cols; k++) yr[k] = (xr[k] - mean) * rstd * gamma[k] + beta[k];
        else
            for (size_t k = 0; k < cols; k++) yr[k] = (xr[k] - mean) * rstd * gamma[k];
    }
}

/* y = x (op) c (qe_scalar_f32): a loop per op, so each vectorizes. */
static inline void qe_scalar_rows(size_t n, const float *x, int op, float c, float *y) {
    switch (op) {
    case QE_SCALAR_MUL: for (size_t i = 0; i < n; i++) y[i] = x[i] * c; break;
    case QE_SCALAR_ADD: for (size_t i = 0; i < n; i++) y[i] = x[i] + c; break;
    case QE_SCALAR_SUB: for (size_t i = 0; i < n; i++) y[i] = x[i] - c; break;
    case QE_SCALAR_RSUB: for (size_t i = 0; i < n; i++) y[i] = c - x[i]; break;
    case QE_SCALAR_DIV: for (size_t i = 0; i < n; i++) y[i] = x[i] / c; break;
    default: for (size_t i = 0; i < n; i++) y[i] = c / x[i]; break;
    }
}

#endif
