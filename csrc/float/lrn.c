/*
 * lrn.c -- local response normalization across channels (ONNX LRN) in float32: the portable
 * reference of float_ops.h's qe_lrn_* and the dispatch to their per-ISA builds (float_avx2.c,
 * float_avx512vnni.c), which give the same bits. Images and blocks of pixels are split over the
 * thread pool; every output is computed alone, so no split changes a result.
 */
#include "../qe_internal.h"
#include "float_ops.h"

typedef void (*lrn_channels_last_fn)(size_t pixels, size_t C, const float *x, float *y,
                                     const qe_lrn_params *p);
typedef void (*lrn_planes_fn)(size_t C, size_t n, size_t ld, const float *x, float *y,
                              const qe_lrn_params *p);

static void lrn_channels_last_ref(size_t pixels, size_t C, const float *x, float *y,
                                  const qe_lrn_params *p) {
    qe_lrn_channels_last(pixels, C, x, y, p);
}

static void lrn_planes_ref(size_t C, size_t n, size_t ld, const float *x, float *y,
                           const qe_lrn_params *p) {
    qe_lrn_planes(C, n, ld, x, y, p);
}

#if defined(QE_BUILD_X86)
void qe_lrn_channels_last__avx2(size_t, size_t, const float *, float *, const qe_lrn_params *);
void qe_lrn_channels_last__avx512vnni(size_t, size_t, const float *, float *,
                                      const qe_lrn_params *);
void qe_lrn_planes__avx2(size_t, size_t, size_t, const float *, float *, const qe_lrn_params *);
void qe_lrn_planes__avx512vnni(size_t, size_t, size_t, const float *, float *,
                               const qe_lrn_params *);
#endif

static const lrn_channels_last_fn g_lrn_channels_last[QE_ISA_COUNT] = {
    [QE_ISA_REF] = lrn_channels_last_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_lrn_channels_last__avx2,
    [QE_ISA_AVX512VNNI] = qe_lrn_channels_last__avx512vnni,
#endif
};

static const lrn_planes_fn g_lrn_planes[QE_ISA_COUNT] = {
    [QE_ISA_REF] = lrn_planes_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_lrn_planes__avx2,
    [QE_ISA_AVX512VNNI] = qe_lrn_planes__avx512vnni,
#endif
};

/* Pixels per task: about 16K values (a few tens of microseconds). */
enum { QE_LRN_TASK_VALUES = 1 << 14 };

typedef struct {
    size_t C, pixels, block, blocks; /* per image: `blocks` blocks of `block` pixels */
    int channels_last;
    const float *x;
    float *y;
    qe_lrn_params p;
    lrn_channels_last_fn channels_last_fn;
    lrn_planes_fn planes_fn;
} lrn_job;

static void lrn_task(void *ctx, size_t task, int thread_index) {
    const lrn_job *j = ctx;
    const size_t n = qe_udiv(task, j->blocks), b = task - n * j->blocks;
    const size_t q0 = b * j->block, count = QE_MIN(j->block, j->pixels - q0);
    const size_t image = n * j->C * j->pixels;
    if (j->channels_last)
        j->channels_last_fn(count, j->C, j->x + image + q0 * j->C, j->y + image + q0 * j->C,
                            &j->p);
    else
        j->planes_fn(j->C, count, j->pixels, j->x + image + q0, j->y + image + q0, &j->p);
}

int qe_lrn_f32(size_t batch, size_t channels, size_t pixels, int channels_last, const float *x,
               float *y, size_t size, float alpha_over_size, float bias, float beta) {
    if (!x || !y || x == y || channels == 0 || size == 0 || size > QE_MAX_DIM)
        return QE_ERR_ARG;
    if (batch == 0 || pixels == 0) return QE_OK;
    const qe_isa isa = qe_get_isa();
    lrn_job j = {.C = channels, .pixels = pixels, .channels_last = channels_last != 0, .x = x,
                 .y = y, .p = {.size = size, .lo = (size - 1) / 2, .alpha_n = alpha_over_size,
                               .bias = bias, .beta = beta},
                 .channels_last_fn = QE_PICK(g_lrn_channels_last, isa),
                 .planes_fn = QE_PICK(g_lrn_planes, isa)};
    j.block = QE_MAX(1, QE_MIN(pixels, QE_LRN_TASK_VALUES / channels));
    j.blocks = QE_DIV_UP(pixels, j.block);
    qe_parallel_for(batch * j.blocks, lrn_task, &j);
    return QE_OK;
}
