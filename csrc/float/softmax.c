/*
 * softmax.c -- the float ops left in quantized models (classifier, detector and attention
 * heads): softmax / log-softmax and layer normalization over contiguous rows, and arithmetic
 * with a scalar constant (attention's 1 / sqrt(d)). The code is
 * float_ops.h; this file is its portable reference and the dispatch to the per-ISA builds of
 * the same source (float_avx2.c, float_avx512vnni.c), which give the same bits. Rows are split
 * over the thread pool in fixed chunks when there are many.
 */
#include "../qe_internal.h"
#include "float_ops.h"

typedef void (*softmax_fn)(size_t rows, size_t cols, const float *x, float *y, int log_form);
typedef void (*layernorm_fn)(size_t rows, size_t cols, const float *x, const float *gamma,
                             const float *beta, float eps, float *y);

static void softmax_ref(size_t rows, size_t cols, const float *x, float *y, int log_form) {
    qe_softmax_rows(rows, cols, x, y, log_form);
}

static void layernorm_ref(size_t rows, size_t cols, const float *x, const float *gamma,
                          const float *beta, float eps, float *y) {
    qe_layernorm_rows(rows, cols, x, gamma, beta, eps, y);
}

typedef void (*scalar_fn)(size_t n, const float *x, int op, float c, float *y);

static void scalar_ref(size_t n, const float *x, int op, float c, float *y) {
    qe_scalar_rows(n, x, op, c, y);
}

#if defined(QE_BUILD_X86)
void qe_scalar_rows__avx2(size_t, const float *, int, float, float *);
void qe_scalar_rows__avx512vnni(size_t, const float *, int, float, float *);
void qe_softmax_rows__avx2(size_t, size_t, const float *, float *, int);
void qe_softmax_rows__avx512vnni(size_t, size_t, const float *, float *, int);
void qe_layernorm_rows__avx2(size_t, size_t, const float *, const float *, const float *, float,
                             float *);
void qe_layernorm_rows__avx512vnni(size_t, size_t, const float *, const float *, const float *,
                                   float, float *);
#endif

static const softmax_fn g_softmax[QE_ISA_COUNT] = {
    [QE_ISA_REF] = softmax_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_softmax_rows__avx2,
    [QE_ISA_AVX512VNNI] = qe_softmax_rows__avx512vnni,
#endif
};

static const layernorm_fn g_layernorm[QE_ISA_COUNT] = {
    [QE_ISA_REF] = layernorm_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_layernorm_rows__avx2,
    [QE_ISA_AVX512VNNI] = qe_layernorm_rows__avx512vnni,
#endif
};

static const scalar_fn g_scalar[QE_ISA_COUNT] = {
    [QE_ISA_REF] = scalar_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_scalar_rows__avx2,
    [QE_ISA_AVX512VNNI] = qe_scalar_rows__avx512vnni,
#endif
};

/* Row jobs: a split among the threads from QE_FLOAT_SPLIT_ELEMS elements on, in a number of
 * tasks that is a multiple of the thread count, each of about QE_FLOAT_TASK_ELEMS or more (rows
 * are independent, so no split changes a result). Below 16K elements these ran on one thread:
 * OCR's LayerNormalizations (80 x 128) and last Softmax (80 x 97) on 2 threads. */
enum { QE_FLOAT_SPLIT_ELEMS = 4096, QE_FLOAT_TASK_ELEMS = 8192, QE_FLOAT_SERIAL_ELEMS = 1 << 14 };

typedef struct {
    size_t rows, cols, rows_per_task;
    const float *x, *gamma, *beta;
    float *y;
    float eps;
    int log_form;
    softmax_fn softmax;
    layernorm_fn layernorm;
} float_job;

static void float_rows(const float_job *j, size_t r0, size_t n) {
    if (j->softmax)
        j->softmax(n, j->cols, j->x + r0 * j->cols, j->y + r0 * j->cols, j->log_form);
    else
        j->layernorm(n, j->cols, j->x + r0 * j->cols, j->gamma, j->beta, j->eps,
                     j->y + r0 * j->cols);
}

static void float_task(void *ctx, size_t task, int thread_index) {
    const float_job *j = ctx;
    const size_t r0 = task * j->rows_per_task;
    float_rows(j, r0, QE_MIN(j->rows_per_task, j->rows - r0));
}

static void float_run(float_job *j) {
    const size_t threads = (size_t)qe_effective_threads(), elems = j->rows * j->cols;
    if (threads == 1 || j->rows == 1 || elems < QE_FLOAT_SPLIT_ELEMS) {
        float_rows(j, 0, j->rows);
        return;
    }
    const size_t tasks = QE_MIN(j->rows, threads * QE_DIV_UP(elems, threads * QE_FLOAT_TASK_ELEMS));
    j->rows_per_task = QE_DIV_UP(j->rows, tasks);
    qe_parallel_for(QE_DIV_UP(j->rows, j->rows_per_task), float_task, j);
}

int qe_softmax_f32(size_t rows, size_t cols, const float *x, float *y, int log_form) {
    if (!x || !y || cols == 0) return QE_ERR_ARG;
    if (rows == 0) return QE_OK;
    float_job j = {.rows = rows, .cols = cols, .x = x, .y = y, .log_form = log_form != 0,
                   .softmax = QE_PICK(g_softmax, qe_get_isa())};
    float_run(&j);
    return QE_OK;
}

int qe_layernorm_f32(size_t rows, size_t cols, const float *x, const float *gamma,
                     const float *beta, float eps, float *y) {
    if (!x || !y || !gamma || cols == 0 || !(eps >= 0.0f)) return QE_ERR_ARG;
    if (rows == 0) return QE_OK;
    float_job j = {.rows = rows, .cols = cols, .x = x, .gamma = gamma, .beta = beta, .y = y,
                   .eps = eps, .layernorm = QE_PICK(g_layernorm, qe_get_isa())};
    float_run(&j);
    return QE_OK;
}

/* ---- arithmetic with a scalar: chunks of QE_FLOAT_SERIAL_ELEMS over the thread pool --------- */
typedef struct {
    size_t n;
    const float *x;
    float *y;
    int op;
    float c;
    scalar_fn fn;
} scalar_job;

static void scalar_task(void *ctx, size_t task, int thread_index) {
    const scalar_job *j = ctx;
    const size_t i0 = task * QE_FLOAT_SERIAL_ELEMS;
    j->fn(QE_MIN(QE_FLOAT_SERIAL_ELEMS, j->n - i0), j->x + i0, j->op, j->c, j->y + i0);
}

int qe_scalar_f32(size_t n, const float *x, qe_scalar_op op, float c, float *y) {
    if (!x || !y || (int)op < (int)QE_SCALAR_MUL || (int)op > (int)QE_SCALAR_RDIV)
        return QE_ERR_ARG;
    scalar_job j = {.n = n, .x = x, .y = y, .op = (int)op, .c = c,
                    .fn = QE_PICK(g_scalar, qe_get_isa())};
    if (n <= QE_FLOAT_SERIAL_ELEMS)
        j.fn(n, x, j.op, c, y);
    else
        qe_parallel_for(QE_DIV_UP(n, QE_FLOAT_SERIAL_ELEMS), scalar_task, &j);
    return QE_OK;
}
