/* float_avx2.c -- csrc/float/float_ops.h compiled with the avx2 flags (see that file). */
#include "../qe_internal.h"
#include "float_ops.h"

void qe_softmax_rows__avx2(size_t rows, size_t cols, const float *x, float *y, int log_form) {
    qe_softmax_rows(rows, cols, x, y, log_form);
}

void qe_layernorm_rows__avx2(size_t rows, size_t cols, const float *x, const float *gamma,
                             const float *beta, float eps, float *y) {
    qe_layernorm_rows(rows, cols, x, gamma, beta, eps, y);
}

void qe_scalar_rows__avx2(size_t n, const float *x, int op, float c, float *y) {
    qe_scalar_rows(n, x, op, c, y);
}

void qe_lrn_channels_last__avx2(size_t pixels, size_t C, const float *x, float *y,
                                const qe_lrn_params *p) {
    qe_lrn_channels_last(pixels, C, x, y, p);
}

void qe_lrn_planes__avx2(size_t C, size_t n, size_t ld, const float *x, float *y,
                         const qe_lrn_params *p) {
    qe_lrn_planes(C, n, ld, x, y, p);
}
