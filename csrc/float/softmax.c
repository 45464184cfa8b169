/*
 * softmax.c -- float32 softmax / log-softmax over the innermost axis, for the float ops left in
 * quantized models (classifier and detector heads). One portable path: plain C with libm's
 * expf/logf, so every ISA gives the same bits; rows are split over the thread pool in fixed
 * chunks when there are many.
 */
#include <math.h>

#include "../qe_internal.h"

enum { QE_SOFTMAX_ROWS_PER_TASK = 64 };

static void softmax_rows_f32(size_t rows, size_t cols, const float *x, float *y, int log_form) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float mx = xr[0];
        for (size_t c = 1; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        float sum = 0.0f;
        if (log_form) {
            for (size_t c = 0; c < cols; c++) sum += expf(xr[c] - mx);
            const float lse = logf(sum);
            for (size_t c = 0; c < cols; c++) yr[c] = (xr[c] - mx) - lse;
        } else {
            for (size_t c = 0; c < cols; c++) {
                const float e = expf(xr[c] - mx);
                yr[c] = e;
                sum += e;
            }
            for (size_t c = 0; c < cols; c++) yr[c] = yr[c] / sum;
        }
    }
}

typedef struct {
    size_t rows, cols;
    const float *x;
    float *y;
    int log_form;
} softmax_job;

static void softmax_task(void *ctx, size_t task, int thread_index) {
    const softmax_job *j = ctx;
    const size_t r0 = task * QE_SOFTMAX_ROWS_PER_TASK;
    const size_t n = QE_MIN(QE_SOFTMAX_ROWS_PER_TASK, j->rows - r0);
    softmax_rows_f32(n, j->cols, j->x + r0 * j->cols, j->y + r0 * j->cols, j->log_form);
}

int qe_softmax_f32(size_t rows, size_t cols, const float *x, float *y, int log_form) {
    if (!x || !y || cols == 0) return QE_ERR_ARG;
    if (rows == 0) return QE_OK;
    softmax_job j = {rows, cols, x, y, log_form != 0};
    if (rows * cols < (1u << 15)) {
        softmax_rows_f32(rows, cols, x, y, j.log_form);
        return QE_OK;
    }
    qe_parallel_for(QE_DIV_UP(rows, QE_SOFTMAX_ROWS_PER_TASK), softmax_task, &j);
    return QE_OK;
}
