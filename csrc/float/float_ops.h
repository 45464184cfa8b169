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

/* Blocks of rows: the softmax and layer normalization take their rows QE_ROW_BLOCK at a time,
 * and each reduction over the block's rows runs interleaved (qe_reduce_rows): one row's sum or
 * maximum is a chain of dependent operations, ~4 cycles per 8 values, while the block's rows
 * are independent and overlap (an attention row of 80 values took ~250 cycles alone). */
enum { QE_ROW_BLOCK = 8 };

/* What qe_reduce_rows computes per row: the sum, the maximum, or the sum of squared deviations
 * from the row's mean (layer normalization's variance). */
typedef enum { QE_ROW_SUM, QE_ROW_MAX, QE_ROW_SQDEV } qe_row_reduction;

/* The reduction `op` of nb <= QE_ROW_BLOCK contiguous rows of n values into out[b] (mean[b]:
 * the row means, for QE_ROW_SQDEV only). Per row the order is fixed: lane l takes values l,
 * l + 8, ... in turn (a maximum starts from the row's first value, the sums from 0), the last
 * n % 8 values go to lanes 0, 1, ..., then the lanes combine (qe_lanes_combine; maxima left to
 * right). Interleaving the rows changes no row's order, so the result does not depend on the
 * block a row is in. Always inlined with op and, for full blocks, nb constants, so the
 * accumulators stay in registers. */
static inline __attribute__((always_inline)) void qe_reduce_rows_n(const float *v, size_t n,
                                                                   size_t nb,
                                                                   qe_row_reduction op,
                                                                   const float *mean,
                                                                   float *out) {
    qe_lanes acc[QE_ROW_BLOCK];
    for (size_t b = 0; b < nb; b++)
        for (size_t l = 0; l < QE_LANES; l++) acc[b][l] = op == QE_ROW_MAX ? v[b * n] : 0.0f;
    size_t i = 0;
    for (; i + QE_LANES <= n; i += QE_LANES)
        for (size_t b = 0; b < nb; b++) {
            const qe_lanes x = qe_lanes_load(v + b * n + i);
            if (op == QE_ROW_MAX) {
                acc[b] = qe_lanes_max(acc[b], x);
            } else if (op == QE_ROW_SUM) {
                acc[b] += x;
            } else {
                const qe_lanes d = x - mean[b];
                acc[b] += d * d;
            }
        }
    for (size_t b = 0; b < nb; b++) {
        const float *r = v + b * n;
        for (size_t k = i, l = 0; k < n; k++, l++) {
            if (op == QE_ROW_MAX) {
                acc[b][l] = r[k] > acc[b][l] ? r[k] : acc[b][l];
            } else if (op == QE_ROW_SUM) {
                acc[b][l] += r[k];
            } else {
                const float d = r[k] - mean[b];
                acc[b][l] += d * d;
            }
        }
        if (op == QE_ROW_MAX) {
            float m = acc[b][0];
            for (size_t l = 1; l < QE_LANES; l++) m = acc[b][l] > m ? acc[b][l] : m;
            out[b] = m;
        } else {
            out[b] = qe_lanes_combine(acc[b]);
        }
    }
}

static inline __attribute__((always_inline)) void qe_reduce_rows(const float *v, size_t n,
                                                                 size_t nb, qe_row_reduction op,
                                                                 const float *mean, float *out) {
    if (nb == QE_ROW_BLOCK)
        qe_reduce_rows_n(v, n, QE_ROW_BLOCK, op, mean, out);
    else
        qe_reduce_rows_n(v, n, nb, op, mean, out);
}

/* Softmax (log_form 0) or log-softmax (1) of `rows` rows of `cols` values, a block of rows at a
 * time, each phase (maxima, exponentials, sums, scaling) over the whole block. Every value is
 * computed by the same operations as row by row. */
static inline void qe_softmax_rows(size_t rows, size_t cols, const float *x, float *y,
                                   int log_form) {
    float mx[QE_ROW_BLOCK], sum[QE_ROW_BLOCK];
    for (size_t r0 = 0; r0 < rows; r0 += QE_ROW_BLOCK) {
        const size_t nb = rows - r0 < QE_ROW_BLOCK ? rows - r0 : QE_ROW_BLOCK;
        const float *xb = x + r0 * cols;
        float *yb = y + r0 * cols;
        qe_reduce_rows(xb, cols, nb, QE_ROW_MAX, NULL, mx);
        for (size_t b = 0; b < nb; b++) {
            const float *xr = xb + b * cols;
            float *yr = yb + b * cols;
            const float m = mx[b];
            for (size_t c = 0; c < cols; c++) yr[c] = qe_expf_poly(xr[c] - m); /* vectorizes */
        }
        qe_reduce_rows(yb, cols, nb, QE_ROW_SUM, NULL, sum);
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

/* Layer normalization of `rows` rows of `cols` values, a block of rows at a time: mean and
 * variance per row (two passes, sums in lanes), y = (x - mean) * (1 / sqrt(var + eps)) * gamma
 * + beta (beta may be NULL). */
static inline void qe_layernorm_rows(size_t rows, size_t cols, const float *x, const float *gamma,
                                     const float *beta, float eps, float *y) {
    const float inv_n = 1.0f / (float)cols;
    float mean[QE_ROW_BLOCK], sq[QE_ROW_BLOCK];
    for (size_t r0 = 0; r0 < rows; r0 += QE_ROW_BLOCK) {
        const size_t nb = rows - r0 < QE_ROW_BLOCK ? rows - r0 : QE_ROW_BLOCK;
        const float *xb = x + r0 * cols;
        qe_reduce_rows(xb, cols, nb, QE_ROW_SUM, NULL, mean);
        for (size_t b = 0; b < nb; b++) mean[b] *= inv_n;
        qe_reduce_rows(xb, cols, nb, QE_ROW_SQDEV, mean, sq);
        for (size_t b = 0; b < nb; b++) {
            const float *xr = xb + b * cols, m = mean[b];
            float *yr = y + (r0 + b) * cols;
            const float rstd = 1.0f / sqrtf(sq[b] * inv_n + eps);
            if (beta)
                for (size_t k = 0; k < cols; k++) yr[k] = (xr[k] - m) * rstd * gamma[k] + beta[k];
            else
                for (size_t k = 0; k < cols; k++) yr[k] = (xr[k] - m) * rstd * gamma[k];
        }
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

/* ---- local response normalization (qe_lrn_f32) ----------------------------------------------
 * y = x / (bias + alpha_n * sum of the squares over the channel window) ^ beta, the window of
 * channel c being channels [c - lo, c - lo + size) inside [0, C). The squares are summed in
 * window order (the first tap inside the channels first), one IEEE operation each, as numpy's
 * loop over the taps did. beta 0.75 (AlexNet, GoogLeNet, ZFNet), 0.5 and 1 take sqrt, which is
 * correctly rounded on every path: d^0.75 = sqrt(d) * sqrt(sqrt(d)), within 2 ulp of powf; any
 * other beta calls powf (scalar). */
typedef struct {
    size_t size, lo;
    float alpha_n, bias, beta;
} qe_lrn_params;

/* y[i] = x[i] / (bias + alpha_n * y[i]) ^ beta: y holds the window sums on entry. */
static inline void qe_lrn_finish(size_t n, const float *x, float *y, const qe_lrn_params *p) {
    const float a = p->alpha_n, b = p->bias;
    if (p->beta == 0.75f) {
        for (size_t i = 0; i < n; i++) {
            const float r = sqrtf(b + a * y[i]);
            y[i] = x[i] / (r * sqrtf(r));
        }
    } else if (p->beta == 0.5f) {
        for (size_t i = 0; i < n; i++) y[i] = x[i] / sqrtf(b + a * y[i]);
    } else if (p->beta == 1.0f) {
        for (size_t i = 0; i < n; i++) y[i] = x[i] / (b + a * y[i]);
    } else {
        for (size_t i = 0; i < n; i++) y[i] = x[i] / powf(b + a * y[i], p->beta);
    }
}

/* Channels last: `pixels` pixels of C contiguous channels, pixel q at x + q * C. */
static inline void qe_lrn_channels_last(size_t pixels, size_t C, const float *x, float *y,
                                        const qe_lrn_params *p) {
    for (size_t q = 0; q < pixels; q++, x += C, y += C) {
        for (size_t c = 0; c < C; c++) y[c] = 0.0f;
        for (size_t k = 0; k < p->size; k++) { /* tap k reads channel c + k - lo */
            const ptrdiff_t sh = (ptrdiff_t)k - (ptrdiff_t)p->lo;
            const size_t c0 = sh < 0 ? (size_t)-sh : 0;
            const size_t c1 = sh > 0 ? (C > (size_t)sh ? C - (size_t)sh : 0) : C;
            const float *xs = x + (size_t)((ptrdiff_t)c0 + sh); /* channel c0 + sh */
            for (size_t c = c0; c < c1; c++) y[c] += xs[c - c0] * xs[c - c0];
        }
        qe_lrn_finish(C, x, y, p);
    }
}

/* Channel planes: C planes of `n` pixels, plane c at x + c * ld (NCHW, a block of pixels). */
static inline void qe_lrn_planes(size_t C, size_t n, size_t ld, const float *x, float *y,
                                 const qe_lrn_params *p) {
    for (size_t c = 0; c < C; c++) {
        float *yc = y + c * ld;
        for (size_t i = 0; i < n; i++) yc[i] = 0.0f;
        for (size_t k = 0; k < p->size; k++) {
            const ptrdiff_t src = (ptrdiff_t)c + (ptrdiff_t)k - (ptrdiff_t)p->lo;
            if (src < 0 || src >= (ptrdiff_t)C) continue; /* padding: adds +0 */
            const float *xs = x + (size_t)src * ld;
            for (size_t i = 0; i < n; i++) yc[i] += xs[i] * xs[i];
        }
        qe_lrn_finish(n, x + c * ld, yc, p);
    }
}

#endif
