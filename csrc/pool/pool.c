/*
 * pool.c -- NHWC uint8 pooling: shape checks and the drivers (indirection rows, per-pixel
 * divisors, threading) around the per-ISA kernels of pool.h.
 */
#include <string.h>

#include "pool.h"

typedef struct {
    qe_maxpool_fn max;
    qe_avgpool_fn avg;
    qe_gavgpool_fn gavg;
    qe_maxpool_column_fn max_column;
} qe_pool_kernels;

/* The kernels of each ISA (a NULL entry: the reference). */
static const qe_pool_kernels g_ref = {qe_maxpool_u8_ref, qe_avgpool_u8_ref, qe_gavgpool_u8_ref,
                                      qe_maxpool_column_u8_ref};
#if defined(QE_BUILD_X86)
static const qe_pool_kernels g_avx2 = {qe_maxpool_u8_c32__avx2, qe_avgpool_u8_c16__avx2,
                                       qe_gavgpool_u8_c16__avx2, qe_maxpool_column_u8_c32__avx2};
static const qe_pool_kernels g_avx512 = {qe_maxpool_u8_c64__avx512, qe_avgpool_u8_c32__avx512,
                                         qe_gavgpool_u8_c32__avx512,
                                         qe_maxpool_column_u8_c64__avx512};
#endif
#if defined(QE_BUILD_ARM64)
static const qe_pool_kernels g_neon = {qe_maxpool_u8_c16__neon, qe_avgpool_u8_c16__neon,
                                       qe_gavgpool_u8_c16__neon, qe_maxpool_column_u8_c16__neon};
#endif
static const qe_pool_kernels *const g_pool_kernels[QE_ISA_COUNT] = {
    [QE_ISA_REF] = &g_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = &g_avx2,
    [QE_ISA_AVX512VNNI] = &g_avx512,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = &g_neon,
    [QE_ISA_NEON_DOTPROD] = &g_neon,
#endif
};

qe_maxpool_column_fn qe_maxpool_column_for(qe_isa isa) {
    return QE_PICK(g_pool_kernels, isa)->max_column;
}

enum { QE_POOL_MAX_TAPS = 1 << 16, QE_GAVG_MAX_HW = 1 << 23, QE_GAVG_CHUNK = 256 };

/* ---- shapes ------------------------------------------------------------------------------- */
/* Accept the floor or the ceil_mode output size along one axis. */
static int pool_axis_ok(size_t in, size_t k, size_t s, size_t d, size_t p0, size_t p1,
                        size_t out) {
    const size_t extent = d * (k - 1) + 1, padded = in + p0 + p1;
    if (padded < extent) return 0;
    const size_t floor_out = qe_udiv(padded - extent, s) + 1;
    size_t ceil_out = QE_DIV_UP(padded - extent, s) + 1;
    if ((ceil_out - 1) * s >= in + p0) ceil_out--; /* would start in the end padding */
    return out == floor_out || out == ceil_out;
}

int qe_pool_shape_check(const qe_pool_shape *s) {
    if (!s) return QE_ERR_ARG;
    const size_t pos[] = {s->batch, s->in_h, s->in_w, s->channels, s->out_h, s->out_w,
                          s->kernel_h, s->kernel_w, s->stride_h, s->stride_w, s->dilation_h,
                          s->dilation_w};
    for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++)
        if (pos[i] == 0 || pos[i] > QE_MAX_DIM) return QE_ERR_ARG;
    if (s->pad_top > QE_MAX_DIM || s->pad_left > QE_MAX_DIM || s->pad_bottom > QE_MAX_DIM ||
        s->pad_right > QE_MAX_DIM || s->kernel_h * s->kernel_w > QE_POOL_MAX_TAPS)
        return QE_ERR_ARG;
    if (!pool_axis_ok(s->in_h, s->kernel_h, s->stride_h, s->dilation_h, s->pad_top,
                      s->pad_bottom, s->out_h) ||
        !pool_axis_ok(s->in_w, s->kernel_w, s->stride_w, s->dilation_w, s->pad_left,
                      s->pad_right, s->out_w))
        return QE_ERR_ARG;
    return QE_OK;
}

static int requant_ok(float mult, int32_t x_zp, int32_t y_zp, int32_t qmin, int32_t qmax) {
    return mult > 0 && mult <= 3.4e38f && x_zp >= 0 && x_zp <= 255 && y_zp >= 0 && y_zp <= 255 &&
           qmin >= 0 && qmin <= qmax && qmax <= 255;
}

/* ---- window drivers ----------------------------------------------------------------------- */
typedef struct {
    const qe_pool_shape *s;
    const uint8_t *x, *pad_row;
    uint8_t *y;
    const qe_pool_kernels *k;
    int avg, count_include_pad;
    uint8_t pad_value;   /* what taps outside the input read: 0 (max) or x_zp (average) */
    float mult, mult_full; /* mult_full: mult / taps, for windows inside the input */
    size_t ow_lo, ow_hi;   /* output columns whose window is inside the input */
    const size_t *tap_off; /* [taps] byte offset of each tap from the window origin */
    qe_pool_requant rq;
    size_t rows, rows_per_task;
} pool_job;

/* Taps of one axis for output index o: count inside the input and inside the padded input. */
static void axis_counts(size_t o, size_t k, size_t s, size_t d, size_t in, size_t p0, size_t p1,
                        size_t *inside, size_t *padded) {
    size_t a = 0, b = 0;
    for (size_t i = 0; i < k; i++) {
        const ptrdiff_t pos = (ptrdiff_t)(o * s + i * d) - (ptrdiff_t)p0;
        a += pos >= 0 && pos < (ptrdiff_t)in;
        b += pos < (ptrdiff_t)(in + p1); /* pos >= -p0 always */
    }
    *inside = a;
    *padded = b;
}

/* Tap pointers (and, for the average, multipliers) of output pixels (n, oh, ow0 .. ow1-1). */
static void pool_row(const pool_job *j, size_t n, size_t oh, size_t ow0, size_t ow1,
                     const uint8_t **ind, float *mult) {
    const qe_pool_shape *s = j->s;
    const size_t T = s->kernel_h * s->kernel_w, C = s->channels;
    size_t in_h = 0, pad_h = 0;
    if (j->avg)
        axis_counts(oh, s->kernel_h, s->stride_h, s->dilation_h, s->in_h, s->pad_top,
                    s->pad_bottom, &in_h, &pad_h);
    const ptrdiff_t ih0 = (ptrdiff_t)(oh * s->stride_h) - (ptrdiff_t)s->pad_top;
    const int rows_inside = ih0 >= 0 && ih0 + (ptrdiff_t)((s->kernel_h - 1) * s->dilation_h) < (ptrdiff_t)s->in_h;
    const qe_window win = {.img = j->x + n * s->in_h * s->in_w * C, .in_h = s->in_h,
                           .in_w = s->in_w, .C = C, .kernel_h = s->kernel_h,
                           .kernel_w = s->kernel_w, .dilation_h = s->dilation_h,
                           .dilation_w = s->dilation_w, .pad = j->pad_row};
    for (size_t ow = ow0; ow < ow1; ow++) {
        const uint8_t **tp = ind + (ow - ow0) * T;
        const ptrdiff_t iw0 = (ptrdiff_t)(ow * s->stride_w) - (ptrdiff_t)s->pad_left;
        if (rows_inside && ow >= j->ow_lo && ow < j->ow_hi) { /* all taps inside the input */
            const uint8_t *base = j->x + ((n * s->in_h + (size_t)ih0) * s->in_w + (size_t)iw0) * C;
            for (size_t t = 0; t < T; t++) tp[t] = base + j->tap_off[t];
            if (j->avg) mult[ow - ow0] = j->mult_full;
            continue;
        }
        qe_window_taps(&win, ih0, iw0, tp);
        if (j->avg) {
            size_t in_w = 0, pad_w = 0;
            axis_counts(ow, s->kernel_w, s->stride_w, s->dilation_w, s->in_w, s->pad_left,
                        s->pad_right, &in_w, &pad_w);
            const size_t count = j->count_include_pad ? pad_h * pad_w : in_h * in_w;
            mult[ow - ow0] = count ? j->mult / (float)count : 0.0f;
        }
    }
}

/* Pointers per indirection chunk: at most 64 KB of them, whatever the row width and window. */
enum { QE_POOL_IND_POINTERS = 8192 };

static void pool_task(void *ctx, size_t task, int thread_index) {
    const pool_job *j = ctx;
    const qe_pool_shape *s = j->s;
    const size_t T = s->kernel_h * s->kernel_w, chunk = QE_MAX(1, qe_udiv(QE_POOL_IND_POINTERS, T));
    const size_t px = QE_MIN(chunk, s->out_w), ind_bytes = QE_ROUND_UP(px * T * sizeof(uint8_t *), 64);
    char *buf = qe_scratch(2, ind_bytes + px * sizeof(float));
    QE_ASSERT(buf != NULL);
    const uint8_t **ind = (const uint8_t **)buf;
    float *mult = (float *)(buf + ind_bytes);
    const size_t r0 = task * j->rows_per_task, r1 = QE_MIN(r0 + j->rows_per_task, j->rows);
    for (size_t r = r0; r < r1; r++)
        for (size_t ow0 = 0; ow0 < s->out_w; ow0 += chunk) {
            const size_t ow1 = QE_MIN(ow0 + chunk, s->out_w);
            pool_row(j, qe_udiv(r, s->out_h), qe_umod(r, s->out_h), ow0, ow1, ind, mult);
            uint8_t *y = j->y + (r * s->out_w + ow0) * s->channels;
            if (j->avg)
                j->k->avg(ow1 - ow0, s->channels, T, ind, mult, &j->rq, y);
            else
                j->k->max(ow1 - ow0, s->channels, T, ind, y);
        }
}

static int pool_run(pool_job *j) {
    const qe_pool_shape *s = j->s;
    const size_t T = s->kernel_h * s->kernel_w;
    /* the padding row (read for up to one vector past the channel count), then tap offsets */
    const size_t row_bytes = QE_ROUND_UP(s->channels, 64) + 64;
    uint8_t *pad_row = qe_scratch(3, row_bytes + T * sizeof(size_t));
    if (!pad_row) return QE_ERR_NOMEM;
    memset(pad_row, j->pad_value, row_bytes);
    j->pad_row = pad_row;
    size_t *tap_off = (size_t *)(pad_row + row_bytes);
    for (size_t ki = 0, t = 0; ki < s->kernel_h; ki++)
        for (size_t kj = 0; kj < s->kernel_w; kj++, t++)
            tap_off[t] = (ki * s->dilation_h * s->in_w + kj * s->dilation_w) * s->channels;
    j->tap_off = tap_off;
    j->mult_full = j->mult / (float)T;
    qe_window_interior(s->in_w, s->pad_left, s->kernel_w, s->dilation_w, s->stride_w, s->out_w,
                       &j->ow_lo, &j->ow_hi);
    j->k = QE_PICK(g_pool_kernels, qe_get_isa());
    j->rows = s->batch * s->out_h;
    /* tasks of about 64K taps, at least 4 per thread; the threads the work pays for at ~32
     * taps per cycle */
    const size_t row_work = s->out_w * s->channels * T + 1;
    const size_t threads = (size_t)qe_threads_for_cycles((double)j->rows * (double)row_work / 32.0);
    size_t rpt = QE_MAX(1, qe_udiv(64 * 1024, row_work));
    rpt = QE_MIN(rpt, QE_MAX(1, qe_udiv(j->rows, 4 * threads)));
    j->rows_per_task = rpt;
    qe_parallel_for_threads(QE_DIV_UP(j->rows, rpt), (int)threads, pool_task, j);
    return QE_OK;
}

int qe_maxpool_u8(const qe_pool_shape *s, const uint8_t *x, uint8_t *y) {
    const int rc = qe_pool_shape_check(s);
    if (rc != QE_OK) return rc;
    if (!x || !y) return QE_ERR_ARG;
    pool_job j = {.s = s, .x = x, .y = y};
    return pool_run(&j);
}

int qe_avgpool_u8(const qe_pool_shape *s, int count_include_pad, const uint8_t *x, int32_t x_zp,
                  float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y) {
    const int rc = qe_pool_shape_check(s);
    if (rc != QE_OK) return rc;
    if (!x || !y || !requant_ok(mult, x_zp, y_zp, qmin, qmax)) return QE_ERR_ARG;
    const int32_t T = (int32_t)(s->kernel_h * s->kernel_w);
    pool_job j = {.s = s, .x = x, .y = y, .avg = 1, .count_include_pad = count_include_pad != 0,
                  .pad_value = (uint8_t)x_zp, .mult = mult,
                  .rq = {.sub = T * x_zp, .zp = y_zp, .qmin = qmin, .qmax = qmax}};
    return pool_run(&j);
}

/* ---- global average ----------------------------------------------------------------------- */
typedef struct {
    const uint8_t *x;
    uint8_t *y;
    size_t hw, channels, chunks; /* channels in shares of 64-channel units */
    float mult;
    qe_pool_requant rq;
    qe_gavgpool_fn kernel;
} gavg_job;

static void gavg_task(void *ctx, size_t task, int thread_index) {
    const gavg_job *j = ctx;
    const size_t n = qe_udiv(task, j->chunks), i = task - n * j->chunks;
    const size_t units = QE_DIV_UP(j->channels, 64);
    const size_t c0 = qe_share_start(units, j->chunks, i) * 64;
    const size_t count = QE_MIN(qe_share_start(units, j->chunks, i + 1) * 64, j->channels) - c0;
    j->kernel(j->hw, count, j->x + n * j->hw * j->channels + c0, j->channels, j->mult, &j->rq,
              j->y + n * j->channels + c0);
}

int qe_global_avgpool_u8(size_t batch, size_t hw, size_t channels, const uint8_t *x, int32_t x_zp,
                         float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y) {
    if (!x || !y || hw == 0 || hw > QE_GAVG_MAX_HW || channels == 0 ||
        !requant_ok(mult, x_zp, y_zp, qmin, qmax))
        return QE_ERR_ARG;
    if (batch == 0) return QE_OK;
    gavg_job j = {.x = x, .y = y, .hw = hw, .channels = channels,
                  .mult = mult / (float)hw,
                  .rq = {.sub = (int32_t)hw * x_zp, .zp = y_zp, .qmin = qmin, .qmax = qmax},
                  .kernel = QE_PICK(g_pool_kernels, qe_get_isa())->gavg};
    /* Channel chunks of about QE_GAVG_CHUNK or more, shares of 64-channel units (a multiple of
     * every vector width); fewer when the batch alone keeps the threads busy. The threads: as
     * many as the work pays for at ~32 bytes per cycle (a squeeze-excitation pool of OCR,
     * 320 x 576, ran slower on 2 threads than on 1). */
    const size_t threads =
        (size_t)qe_threads_for_cycles((double)batch * (double)hw * (double)channels / 32.0);
    j.chunks = QE_MAX(1, QE_MIN(QE_DIV_UP(channels, QE_GAVG_CHUNK),
                                QE_DIV_UP(4 * threads, batch)));
    qe_parallel_for_threads(batch * j.chunks, (int)threads, gavg_task, &j);
    return QE_OK;
}
