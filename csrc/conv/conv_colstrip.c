/*
 * conv_colstrip.c -- im2col by column strips: convolutions with short kernel rows (the stems:
 * a 7x7 or 3x3 kernel on 3 channels), whose kernel rows are no whole number of k groups and so
 * cannot be read in place (conv_gemm.c, conv_rows_in_place).
 *
 * The strip of output column ow holds, for every input row its windows reach (padding rows
 * included), the kernel_w * C bytes a kernel row reads there: taps in the padding read x_zp.
 * With weights in (ki, kj, ci) order, the im2col row of output pixel (oh, ow) is then the
 * kernel_h strip rows from row oh * stride_h on -- K contiguous bytes -- and the next output
 * row's starts stride_h strip rows further. So the strip is the GEMM's A for its output column
 * as it stands, rows overlapping (lda = stride_h * kernel_w * C < K), and the outputs are
 * out_w pixels apart. A strip has (out_h - 1) * stride_h + kernel_h rows where im2col copies
 * out_h * kernel_h: a 7x7 stride-2 stem copies 3.4x fewer runs, has no border windows (the
 * strip's padding is filled once) and its A stays in L1 while the GEMM reads it.
 */
#include <string.h>

#include "../eltwise/eltwise.h"
#include "../pool/pool.h"
#include "conv.h"

enum {
    QE_COLSTRIP_MAX_RUN = 32,        /* kernel rows of at most 32 bytes: the stems */
    QE_COLSTRIP_MIN_OUT_H = 8,       /* a GEMM of fewer rows per column is mostly its setup */
    QE_COLSTRIP_MIN_K = 64,          /* nor does a short K pay for one GEMM call per column */
    QE_COLSTRIP_MAX_B = 256 * 1024,  /* B stays in L2 across the per-column GEMMs */
    QE_COLSTRIP_SLACK = 64,          /* past the strip: the last row's 32-byte copy */
};

typedef struct {
    const qe_conv_packed *p;
    const qe_conv_shape *s;
    const uint8_t *x, *x_end;
    int32_t x_zp;
    const int32_t *w_zp;
    const qe_output *out;
    const uint8_t *lut;
    char *y;
    size_t ldy, es;
    size_t run;           /* kernel_w * C: the bytes of one strip row */
    size_t rows;          /* strip rows: (out_h - 1) * stride_h + kernel_h */
    size_t ow_lo, ow_hi;  /* output columns whose kernel rows lie inside the input row */
    size_t columns;       /* batch * out_w output columns (pooled: batch * pool->out_w) */
    size_t tasks;
    const qe_pool_shape *pool;  /* NULL, or the max pool fused after (colstrip_pool_task) */
} colstrip_job;

int qe_conv_colstrip_ok(const qe_conv_packed *p, const qe_conv_shape *s) {
    return p->method == QE_CONV_IM2COL && s->groups == 1 && s->dilation_h == 1 &&
           s->kernel_h > s->stride_h && s->kernel_w * s->in_c <= QE_COLSTRIP_MAX_RUN &&
           s->out_h >= QE_COLSTRIP_MIN_OUT_H && p->K >= QE_COLSTRIP_MIN_K &&
           p->K * p->cout_g <= QE_COLSTRIP_MAX_B;
}

/* The strip of output column ow of image n: strip row r is input row r - pad_top. */
static void build_strip(const colstrip_job *j, size_t n, size_t ow, uint8_t *strip) {
    const qe_conv_shape *s = j->s;
    const size_t C = s->in_c, run = j->run, row_bytes = s->in_w * C;
    const uint8_t zp = (uint8_t)j->x_zp;
    /* strip rows [r_lo, r_hi) are input rows; the others are padding */
    const size_t r_lo = QE_MIN(s->pad_top, j->rows);
    const size_t r_hi = QE_MAX(r_lo, QE_MIN(j->rows, s->pad_top + s->in_h));
    const ptrdiff_t iw0 = (ptrdiff_t)(ow * s->stride_w) - (ptrdiff_t)s->pad_left;
    const uint8_t *src = j->x + (n * s->in_h + (r_lo - QE_MIN(r_lo, s->pad_top))) * row_bytes;
    for (size_t r = 0; r < r_lo; r++) qe_fill_run(strip + r * run, zp, run);
    uint8_t *dst = strip + r_lo * run;
    size_t r = r_lo;
    if (ow >= j->ow_lo && ow < j->ow_hi && s->dilation_w == 1) {
        /* the kernel row is `run` contiguous input bytes: one fixed-size copy per row, running
         * over into the next row's place (written next) or the slack, while it stays inside x */
        src += (size_t)iw0 * C;
        if (run <= 16)
            for (; r < r_hi && src + 16 <= j->x_end; r++, src += row_bytes, dst += run)
                memcpy(dst, src, 16);
        else
            for (; r < r_hi && src + 32 <= j->x_end; r++, src += row_bytes, dst += run)
                memcpy(dst, src, 32);
        for (; r < r_hi; r++, src += row_bytes, dst += run) qe_copy_run(dst, src, run);
    } else {
        for (; r < r_hi; r++, src += row_bytes, dst += run)
            for (size_t kj = 0; kj < s->kernel_w; kj++) {
                const ptrdiff_t iw = iw0 + (ptrdiff_t)(kj * s->dilation_w);
                if (iw >= 0 && iw < (ptrdiff_t)s->in_w)
                    qe_copy_run(dst + kj * C, src + (size_t)iw * C, C);
                else
                    qe_fill_run(dst + kj * C, zp, C);
            }
    }
    for (; r < j->rows; r++) qe_fill_run(strip + r * run, zp, run);
}

/* Ask for the next column's output lines, to be written: a column's outputs are out_w pixels
 * apart (7 KB for ResNet's stem), a stride no hardware prefetcher follows, so each line of a
 * cold output would otherwise stall its tile's stores. */
static void prefetch_column(const colstrip_job *j, const char *c, size_t row_bytes) {
    const size_t bytes = j->s->out_c * j->es;
    for (size_t oh = 0; oh < j->s->out_h; oh++, c += row_bytes)
        for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(c + b, 1, 3);
}

/* The lookup table over output columns [ow0, ow1) of image n, every output row: one run of
 * (ow1 - ow0) pixels per row when the pixels abut (ldy == out_c), else one per pixel. */
static void colstrip_lut(const colstrip_job *j, size_t n, size_t ow0, size_t ow1) {
    const qe_conv_shape *s = j->s;
    uint8_t *y0 = (uint8_t *)j->y + (n * s->out_h * s->out_w + ow0) * j->ldy;
    if (j->ldy == s->out_c) {
        qe_lut_rows_inplace(s->out_h, (ow1 - ow0) * s->out_c, y0, s->out_w * j->ldy, j->lut);
        return;
    }
    for (size_t ow = ow0; ow < ow1; ow++)
        qe_lut_rows_inplace(s->out_h, s->out_c, y0 + (ow - ow0) * j->ldy, s->out_w * j->ldy,
                            j->lut);
}

/* Output column ow of image n (and its table) into c, rows ldc elements apart; g is the packed
 * B to use (the quiet copy, or the one whose last block prefetches the next layer's B). */
static void colstrip_column(const colstrip_job *j, const qe_gemm_packed *g, size_t n, size_t ow,
                            uint8_t *strip, char *c, size_t ldc) {
    const qe_conv_shape *s = j->s;
    build_strip(j, n, ow, strip);
    qe_gemm_u8s8_serial(g, s->out_h, strip, s->stride_h * j->run, j->x_zp, j->w_zp, j->out, 0,
                        s->out_c, c, ldc);
}

/* Output columns [q0, q1) of the flattened (image, column) range: each column's strip, then its
 * GEMM of out_h rows (lda = stride_h * run) into outputs out_w pixels apart. */
static void colstrip_task(void *ctx, size_t task, int thread_index) {
    (void)thread_index;
    const colstrip_job *j = ctx;
    const qe_conv_shape *s = j->s;
    const size_t q0 = qe_share_start(j->columns, j->tasks, task);
    const size_t q1 = qe_share_start(j->columns, j->tasks, task + 1);
    uint8_t *strip = qe_scratch(2, j->rows * j->run + QE_COLSTRIP_SLACK);
    QE_ASSERT(strip != NULL);
    /* Only the task's last GEMM prefetches the next layer's weights (qe_gemm_packed.next_data):
     * every call would ask for the same bytes again. */
    qe_gemm_packed quiet = *j->p->gemm[0];
    quiet.next_data = NULL;
    const size_t ldc = s->out_w * j->ldy;
    size_t lut_from = q0; /* columns done but not yet looked up, within one image */
    for (size_t q = q0; q < q1; q++) {
        const size_t n = qe_udiv(q, s->out_w), ow = q - n * s->out_w;
        char *c = j->y + (n * s->out_h * s->out_w + ow) * j->ldy * j->es;
        colstrip_column(j, q + 1 < q1 ? &quiet : j->p->gemm[0], n, ow, strip, c, ldc);
        if (q + 1 < q1) prefetch_column(j, c + j->ldy * j->es, ldc * j->es);
        if (j->lut && (q + 1 == q1 || ow + 1 == s->out_w)) {
            colstrip_lut(j, n, qe_umod(lut_from, s->out_w), ow + 1);
            lut_from = q + 1;
        }
    }
}

/* ---- the fused max pool ------------------------------------------------------------------ */
/* Pooled columns [q0, q1) of the flattened (image, pooled column) range. Each needs the
 * convolution's columns [jp * stride_w - pad_left, + kernel_w) inside [0, out_w): those not yet
 * computed for this image go into ring slot (column % kernel_w) -- a window of kernel_w
 * columns never holds two columns of one slot --, then the ISA's pooled-column kernel takes
 * the maximum over the window's columns and rows. Neighbouring tasks recompute the columns
 * their windows share (one per task for a 3 x 3, stride-2 pool). */
static void colstrip_pool_task(void *ctx, size_t task, int thread_index) {
    (void)thread_index;
    const colstrip_job *j = ctx;
    const qe_conv_shape *s = j->s;
    const qe_pool_shape *ps = j->pool;
    const size_t C = s->out_c, col_bytes = s->out_h * C, ldp = ps->out_w * j->ldy;
    const size_t q0 = qe_share_start(j->columns, j->tasks, task);
    const size_t q1 = qe_share_start(j->columns, j->tasks, task + 1);
    const qe_maxpool_column_fn pool_column = qe_maxpool_column_for(j->p->isa);
    uint8_t *strip = qe_scratch(2, j->rows * j->run + QE_COLSTRIP_SLACK);
    /* slot 3: the window's column pointers, then the ring (each column 64-byte aligned) */
    const size_t ptr_bytes = QE_ROUND_UP(ps->kernel_w * sizeof(uint8_t *), 64);
    const size_t col_stride = QE_ROUND_UP(col_bytes, 64);
    char *slot = qe_scratch(3, ptr_bytes + ps->kernel_w * col_stride);
    QE_ASSERT(strip != NULL && slot != NULL);
    const uint8_t **cols = (const uint8_t **)slot;
    uint8_t *ring = (uint8_t *)slot + ptr_bytes;
    qe_gemm_packed quiet = *j->p->gemm[0];
    quiet.next_data = NULL;
    size_t image = (size_t)-1, next = 0; /* columns [0, next) of `image` are in the ring */
    for (size_t q = q0; q < q1; q++) {
        const size_t n = qe_udiv(q, ps->out_w), jp = q - n * ps->out_w;
        if (n != image) image = n, next = 0;
        size_t lo, hi; /* the window's columns inside the convolution's output */
        qe_pool_window_rows(jp, ps->kernel_w, ps->stride_w, ps->pad_left, s->out_w, &lo, &hi);
        for (size_t ow = QE_MAX(lo, next); ow < hi; ow++) {
            uint8_t *col = ring + qe_umod(ow, ps->kernel_w) * col_stride;
            const int last = q + 1 == q1 && ow + 1 == hi;
            colstrip_column(j, last ? j->p->gemm[0] : &quiet, n, ow, strip, (char *)col, C);
            if (j->lut) qe_lut_rows_inplace(s->out_h, C, col, C, j->lut);
        }
        next = QE_MAX(next, hi);
        for (size_t ow = lo; ow < hi; ow++)
            cols[ow - lo] = ring + qe_umod(ow, ps->kernel_w) * col_stride;
        uint8_t *y = (uint8_t *)j->y + (n * ps->out_h * ps->out_w + jp) * j->ldy;
        if (q + 1 < q1) /* pooled columns are out_w pixels apart, as in colstrip_task */
            for (size_t i = 0; i < ps->out_h; i++)
                for (size_t b = 0; b < C; b += 64) __builtin_prefetch(y + j->ldy + i * ldp + b, 1, 3);
        pool_column(ps->out_h, C, cols, hi - lo, s->out_h, ps->kernel_h, ps->stride_h,
                    ps->pad_top, y, ldp);
    }
}

static void colstrip_setup(colstrip_job *j, const qe_conv_shape *s, const uint8_t *x) {
    j->x_end = x + s->batch * s->in_h * s->in_w * s->in_c;
    j->run = s->kernel_w * s->in_c;
    j->rows = (s->out_h - 1) * s->stride_h + s->kernel_h;
    qe_window_interior(s->in_w, s->pad_left, s->kernel_w, 1, s->stride_w, s->out_w, &j->ow_lo,
                       &j->ow_hi);
}

int qe_conv_run_colstrip(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                         int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                         const uint8_t *lut, void *y, size_t ldy) {
    QE_ASSERT(qe_conv_colstrip_ok(p, s));
    colstrip_job j = {.p = p, .s = s, .x = x, .x_zp = x_zp, .w_zp = w_zp, .out = out, .lut = lut,
                      .y = y, .ldy = ldy, .es = qe_output_elem_size(out->kind)};
    colstrip_setup(&j, s, x);
    j.columns = s->batch * s->out_w;
    /* one task per thread would leave the threads waiting on the slowest; a few each evens
     * them out (a column is out_h GEMM rows: a few microseconds) */
    const size_t threads = (size_t)qe_effective_threads();
    j.tasks = threads == 1 ? 1 : QE_MIN(j.columns, 4 * threads);
    qe_parallel_for(j.tasks, colstrip_task, &j);
    return QE_OK;
}

int qe_conv_run_colstrip_maxpool(const qe_conv_packed *p, const qe_conv_shape *s,
                                 const uint8_t *x, int32_t x_zp, const int32_t *w_zp,
                                 const qe_output *out, const uint8_t *lut,
                                 const qe_pool_shape *pool, uint8_t *y, size_t ldy) {
    QE_ASSERT(qe_conv_colstrip_ok(p, s) && out->kind == QE_OUT_U8 && pool->batch == s->batch &&
              pool->in_h == s->out_h && pool->in_w == s->out_w && pool->channels == s->out_c);
    colstrip_job j = {.p = p, .s = s, .x = x, .x_zp = x_zp, .w_zp = w_zp, .out = out, .lut = lut,
                      .y = (char *)y, .ldy = ldy, .es = 1, .pool = pool};
    colstrip_setup(&j, s, x);
    j.columns = s->batch * pool->out_w;
    /* one task per thread: each task boundary inside an image recomputes the columns the two
     * windows share */
    j.tasks = QE_MIN(j.columns, (size_t)qe_effective_threads());
    qe_parallel_for(j.tasks, colstrip_pool_task, &j);
    return QE_OK;
}
