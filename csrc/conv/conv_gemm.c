/*
 * conv_gemm.c -- convolution through the GEMM: the 1x1 (no im2col) and im2col drivers.
 *
 * The output pixels (batch * out_h * out_w of them) are the GEMM's M rows. One
 * qe_parallel_for runs tasks (group, block of rows, block of columns); an im2col task builds
 * its block of rows in per-thread scratch (slot 2) and calls qe_gemm_u8s8_serial on it, so no
 * im2col buffer larger than a block ever exists. Where the GEMM family can read A in
 * segments (qe_gemm_run_segmented), strips of pixels whose windows lie inside the input skip
 * the copy: each kernel row of the window is a run of kernel_w * C input bytes, and a strip's
 * rows are stride_w * C bytes apart (conv_rows_in_place). Every output element is computed by
 * exact integer arithmetic and one fixed float formula, so the split cannot change the result.
 */
#include <string.h>

#include "../eltwise/eltwise.h"
#include "conv.h"

enum {
    QE_IM2COL_BLOCK_BYTES = 384 * 1024, /* one A block: well inside L2; late ResNet layers
                                          * (M = 49, K = 4608) in one block stream B once */
    QE_POINTWISE_BLOCK_BYTES = 256 * 1024,
    QE_MIN_BLOCK_ROWS = 16,
    QE_MAX_BLOCK_ROWS = 1024,
    QE_MIN_BLOCK_COLS = 64,
    QE_MIN_SPLIT_STRIPS = 4, /* a row block split for threads keeps >= 4 tiles of mr rows */
    QE_SMALL_B_BYTES = 256 * 1024, /* a B this small is split by rows whatever M (see below) */
};

typedef struct {
    const qe_conv_packed *p;
    const qe_conv_shape *s;
    const uint8_t *x;
    int32_t x_zp;
    const int32_t *w_zp;
    const qe_output *out;
    const uint8_t *lut;            /* NULL, or the table each task applies to its outputs */
    char *y;
    size_t ldy, es;                /* output pixel stride (elements), element size */
    size_t M, mr, strips, row_blocks;  /* rows: M in strips of mr, cut into row_blocks */
    size_t nr, panels, col_blocks;      /* columns: cout_g in panels of nr, into col_blocks */
    size_t lda;                    /* im2col row stride */
    int segmented;                 /* interior strips may be read in place (conv_rows_in_place) */
    /* Interior windows (every tap inside the input) of a contiguous kernel row (one group,
     * dilation_w 1): output rows [oh_lo, oh_hi) x columns [ow_lo, ow_hi); their kernel rows are
     * copied `copy` (16 or 32) bytes at a time when the run is no longer (0: exact copies). */
    size_t oh_lo, oh_hi, ow_lo, ow_hi, copy;
    const uint8_t *x_end;          /* one past the input */
} conv_gemm_job;

/* The im2col rows of `count` interior windows side by side (output pixels (n, oh, ow ..
 * ow + count - 1)): kernel_h runs of kernel_w * C bytes each, a window stride_w * C bytes after
 * the previous. Each run is copied with one fixed-size copy of j->copy bytes: it runs over into
 * the next run's place, which the next copy overwrites, and the last one into the row's slack
 * past K (lda >= K + 32). Windows whose last copy would read past the input take exact copies.
 * Stems (C = 3) have runs of 9 or 21 bytes, where this halves the im2col time; one call per
 * run of windows (not per row) keeps the loop down to the copies. */
static void im2col_interior(const conv_gemm_job *j, size_t n, size_t oh, size_t ow, size_t count,
                            uint8_t *row) {
    const qe_conv_shape *s = j->s;
    const size_t C = s->in_c, run = s->kernel_w * C, step = s->dilation_h * s->in_w * C;
    const size_t kh = s->kernel_h, adv = s->stride_w * C, lda = j->lda;
    const uint8_t *src = j->x + ((n * s->in_h + oh * s->stride_h - s->pad_top) * s->in_w +
                                 ow * s->stride_w - s->pad_left) * C;
    size_t i = 0;
#define QE_IM2COL_FIXED(COPY, KH)                                                               \
    for (; i < count && src + ((KH) - 1) * step + (COPY) <= j->x_end; i++, src += adv, row += lda) \
        for (size_t ki = 0; ki < (KH); ki++) memcpy(row + ki * run, src + ki * step, (COPY));
    /* the stems' shapes (7x7 and 3x3 on 3 channels) with the kernel rows unrolled */
    if (j->copy == 32 && kh == 7)
        QE_IM2COL_FIXED(32, 7)
    else if (j->copy == 16 && kh == 3)
        QE_IM2COL_FIXED(16, 3)
    else if (j->copy == 16)
        QE_IM2COL_FIXED(16, kh)
    else if (j->copy == 32)
        QE_IM2COL_FIXED(32, kh)
#undef QE_IM2COL_FIXED
    for (; i < count; i++, src += adv, row += lda)
        for (size_t ki = 0; ki < kh; ki++) qe_copy_run(row + ki * run, src + ki * step, run);
}

/* The im2col row of a window that reaches outside the input (or of a grouped or dilated
 * convolution): taps outside read x_zp. */
static void im2col_border(const conv_gemm_job *j, size_t g, size_t n, size_t oh, size_t ow,
                          uint8_t *row) {
    const qe_conv_shape *s = j->s;
    const size_t cin_g = j->p->cin_g, C = s->in_c, kw = s->kernel_w;
    const ptrdiff_t iw0 = (ptrdiff_t)(ow * s->stride_w) - (ptrdiff_t)s->pad_left;
    /* valid kj: 0 <= iw0 + kj * dw < in_w */
    size_t kj_lo = 0, kj_hi = kw;
    while (kj_lo < kw && iw0 + (ptrdiff_t)(kj_lo * s->dilation_w) < 0) kj_lo++;
    while (kj_hi > kj_lo && iw0 + (ptrdiff_t)((kj_hi - 1) * s->dilation_w) >= (ptrdiff_t)s->in_w)
        kj_hi--;
    const int contiguous = s->groups == 1 && s->dilation_w == 1; /* taps of a kernel row abut */
    const uint8_t zp = (uint8_t)j->x_zp;
    for (size_t ki = 0; ki < s->kernel_h; ki++) {
        uint8_t *dst = row + ki * kw * cin_g;
        const ptrdiff_t ih = (ptrdiff_t)(oh * s->stride_h + ki * s->dilation_h) - (ptrdiff_t)s->pad_top;
        if (ih < 0 || ih >= (ptrdiff_t)s->in_h || kj_lo >= kj_hi) {
            qe_fill_run(dst, zp, kw * cin_g);
            continue;
        }
        const uint8_t *src = j->x + ((n * s->in_h + (size_t)ih) * s->in_w) * C + g * cin_g;
        qe_fill_run(dst, zp, kj_lo * cin_g);
        if (contiguous) {
            qe_copy_run(dst + kj_lo * cin_g, src + (size_t)(iw0 + (ptrdiff_t)kj_lo) * C,
                     (kj_hi - kj_lo) * C);
        } else {
            for (size_t kj = kj_lo; kj < kj_hi; kj++)
                qe_copy_run(dst + kj * cin_g,
                         src + (size_t)(iw0 + (ptrdiff_t)(kj * s->dilation_w)) * C, cin_g);
        }
        qe_fill_run(dst + kj_hi * cin_g, zp, (kw - kj_hi) * cin_g);
    }
}

/* Fill one im2col row: the K = kernel_h * kernel_w * cin_g values of output pixel (n, oh, ow)
 * for group g, in (ki, kj, ci) order. */
static inline void im2col_row(const conv_gemm_job *j, size_t g, size_t n, size_t oh, size_t ow,
                              uint8_t *row) {
    if (oh >= j->oh_lo && oh < j->oh_hi && ow >= j->ow_lo && ow < j->ow_hi)
        im2col_interior(j, n, oh, ow, 1, row); /* only set for one group, dilation_w 1 */
    else
        im2col_border(j, g, n, oh, ow, row);
}

/* The output pixel (n, oh, ow) of GEMM row m, and the walk along the rows: `count` pixels on
 * within one output row (count <= out_w - ow), to the next row or image at its end. */
typedef struct {
    size_t n, oh, ow;
} pixel_pos;

static inline pixel_pos pixel_at(const qe_conv_shape *s, size_t m) {
    const size_t row = qe_udiv(m, s->out_w);
    return (pixel_pos){.n = qe_udiv(row, s->out_h), .oh = qe_umod(row, s->out_h),
                       .ow = m - row * s->out_w};
}

static inline void pixel_advance(const qe_conv_shape *s, pixel_pos *q, size_t count) {
    q->ow += count;
    if (q->ow == s->out_w) {
        q->ow = 0;
        if (++q->oh == s->out_h) {
            q->oh = 0;
            q->n++;
        }
    }
}

/* Rows [m0, m0 + rows) of an im2col block, columns [n0, n1), with interior strips read in
 * place: a strip is mr pixels of one output row whose windows lie inside the input; the other
 * pixels (borders, leftovers) are copied by im2col into a compact buffer, multiplied into
 * scratch and their outputs moved to their rows. Same results as the all-im2col path. */
static void conv_rows_in_place(const conv_gemm_job *j, size_t m0, size_t rows, size_t n0,
                               size_t n1, const qe_output *o, char *c) {
    const qe_conv_packed *p = j->p;
    const qe_conv_shape *s = j->s;
    const size_t mr = p->gemm[0]->uk->mr, kh = s->kernel_h, kw = s->kernel_w, C = s->in_c;
    const size_t es = j->es, max_strips = qe_udiv(rows, mr);
    /* slot 3: segment pointers, strips' first rows, the other rows' indices and outputs */
    const size_t seg_bytes = QE_ROUND_UP(max_strips * kh * sizeof(uint8_t *), 64);
    const size_t row0_bytes = QE_ROUND_UP(max_strips * sizeof(size_t), 64);
    const size_t other_bytes = QE_ROUND_UP(rows * sizeof(size_t), 64);
    char *buf = qe_scratch(3, seg_bytes + row0_bytes + other_bytes + rows * n1 * es);
    uint8_t *a = qe_scratch(2, rows * j->lda);
    QE_ASSERT(buf != NULL && a != NULL);
    const uint8_t **seg = (const uint8_t **)buf;
    size_t *row0 = (size_t *)(buf + seg_bytes);
    size_t *other = (size_t *)(buf + seg_bytes + row0_bytes);
    char *tmp = buf + seg_bytes + row0_bytes + other_bytes; /* other rows' outputs, ldc n1 */
    pixel_pos q = pixel_at(s, m0);
    size_t strips = 0, others = 0;
    for (size_t r = 0; r < rows;) {
        size_t step = 1; /* a strip: mr pixels of one row, every window inside the input */
        if (q.oh >= j->oh_lo && q.oh < j->oh_hi && r + mr <= rows && q.ow >= j->ow_lo &&
            q.ow + mr <= j->ow_hi) {
            const size_t ih0 = q.oh * s->stride_h - s->pad_top;
            const size_t iw0 = q.ow * s->stride_w - s->pad_left;
            for (size_t ki = 0; ki < kh; ki++)
                seg[strips * kh + ki] =
                    j->x + ((q.n * s->in_h + ih0 + ki * s->dilation_h) * s->in_w + iw0) * C;
            row0[strips++] = r;
            step = mr;
        } else {
            im2col_row(j, 0, q.n, q.oh, q.ow, a + others * j->lda);
            other[others++] = r;
        }
        r += step;
        pixel_advance(s, &q, step);
    }
    const qe_gemm_seg_a sa = {.strips = strips, .seg = seg, .nseg = kh, .seg_len = kw * C,
                              .seg_lda = s->stride_w * C, .row0 = row0, .rows = others, .a = a,
                              .lda = j->lda, .c_rows = tmp, .ldc_rows = n1};
    qe_gemm_run_segmented(p->gemm[0], &sa, j->x_zp, o, n0, n1, c, j->ldy);
    for (size_t i = 0; i < others; i++)
        memcpy(c + (other[i] * j->ldy + n0) * es, tmp + (i * n1 + n0) * es, (n1 - n0) * es);
}

/* The rows of one task through im2col in the thread's scratch, then the GEMM. */
static void im2col_block(const conv_gemm_job *j, size_t g, size_t m0, size_t rows, size_t n0,
                         size_t n1, const int32_t *bzp, const qe_output *o, void *c) {
    const qe_conv_packed *p = j->p;
    uint8_t *a = qe_scratch(2, rows * j->lda);
    QE_ASSERT(a != NULL);
    const qe_conv_shape *s = j->s;
    pixel_pos q = pixel_at(s, m0);
    for (size_t r = 0; r < rows;) {
        size_t count = 1; /* rows filled: a run of interior windows, or one other */
        if (q.oh >= j->oh_lo && q.oh < j->oh_hi && q.ow >= j->ow_lo && q.ow < j->ow_hi) {
            count = QE_MIN(j->ow_hi - q.ow, rows - r);
            im2col_interior(j, q.n, q.oh, q.ow, count, a + r * j->lda);
        } else {
            im2col_border(j, g, q.n, q.oh, q.ow, a + r * j->lda);
        }
        r += count;
        pixel_advance(s, &q, count);
    }
    qe_gemm_u8s8_serial(p->gemm[g], rows, a, j->lda, j->x_zp, bzp, o, n0, n1, c, j->ldy);
}

static void conv_gemm_task(void *ctx, size_t task, int thread_index) {
    const conv_gemm_job *j = ctx;
    const qe_conv_packed *p = j->p;
    const size_t cb = qe_umod(task, j->col_blocks),
                 rb = qe_umod(qe_udiv(task, j->col_blocks), j->row_blocks);
    const size_t g = qe_udiv(task, j->col_blocks * j->row_blocks);
    /* row block rb: its share of the strips; column block cb: its share of the panels */
    const size_t m0 = qe_share_start(j->strips, j->row_blocks, rb) * j->mr;
    const size_t rows = QE_MIN(qe_share_start(j->strips, j->row_blocks, rb + 1) * j->mr, j->M) - m0;
    const size_t n0 = qe_share_start(j->panels, j->col_blocks, cb) * j->nr;
    const size_t n1 = QE_MIN(qe_share_start(j->panels, j->col_blocks, cb + 1) * j->nr, p->cout_g);
    const size_t c0 = g * p->cout_g;
    const qe_output o = qe_output_from_channel(j->out, c0);
    const int32_t *bzp = j->w_zp ? j->w_zp + c0 : NULL;
    void *c = j->y + (m0 * j->ldy + c0) * j->es;
    if (p->method == QE_CONV_1X1) {
        const uint8_t *a = j->x + m0 * j->s->in_c + g * p->cin_g;
        qe_gemm_u8s8_serial(p->gemm[g], rows, a, j->s->in_c, j->x_zp, bzp, &o, n0, n1, c, j->ldy);
    } else if (j->segmented &&
               qe_gemm_segments_ok(p->gemm[0], j->s->kernel_w * j->s->in_c, n0, n1)) {
        conv_rows_in_place(j, m0, rows, n0, n1, &o, c);
    } else {
        im2col_block(j, g, m0, rows, n0, n1, bzp, &o, c);
    }
    if (j->lut) qe_lut_rows_inplace(rows, n1 - n0, (uint8_t *)c + n0, j->ldy, j->lut);
}

int qe_conv_run_gemm(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                     int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                     const uint8_t *lut, void *y, size_t ldy) {
    if (qe_conv_colstrip_ok(p, s)) return qe_conv_run_colstrip(p, s, x, x_zp, w_zp, out, lut, y, ldy);
    conv_gemm_job j = {.p = p, .s = s, .x = x, .x_zp = x_zp, .w_zp = w_zp, .out = out, .lut = lut,
                       .y = y, .ldy = ldy, .es = qe_output_elem_size(out->kind)};
    j.M = s->batch * s->out_h * s->out_w;
    /* in-place interior strips: one group, taps of a kernel row adjacent, symmetric weights,
     * and a window of several taps (a strided 1x1's im2col is one short copy per pixel, cheaper
     * than a tile over a one-segment A) */
    j.segmented = p->method != QE_CONV_1X1 && s->groups == 1 && s->dilation_w == 1 && !w_zp &&
                  s->kernel_w <= s->in_w && s->kernel_h * s->kernel_w > 1;
    size_t block_bytes;
    if (p->method == QE_CONV_1X1) {
        j.lda = s->in_c;
        block_bytes = QE_POINTWISE_BLOCK_BYTES;
    } else {
        j.lda = QE_ROUND_UP(p->K, 32) + 32; /* + the slack of im2col_interior's copies */
        block_bytes = QE_IM2COL_BLOCK_BYTES;
        if (s->groups == 1 && s->dilation_w == 1) {
            const size_t run = s->kernel_w * s->in_c;
            j.copy = run <= 16 ? 16 : run <= 32 ? 32 : 0;
            qe_window_interior(s->in_h, s->pad_top, s->kernel_h, s->dilation_h, s->stride_h,
                               s->out_h, &j.oh_lo, &j.oh_hi);
            qe_window_interior(s->in_w, s->pad_left, s->kernel_w, 1, s->stride_w, s->out_w,
                               &j.ow_lo, &j.ow_hi);
            j.x_end = x + s->batch * s->in_h * s->in_w * s->in_c;
        }
    }
    const size_t mr = qe_gemm_packed_tile_m(p->gemm[0]);
    size_t br = qe_udiv(block_bytes, j.lda);
    br = QE_MAX(QE_MIN_BLOCK_ROWS, QE_MIN(QE_MAX_BLOCK_ROWS, br / 16 * 16));
    j.row_blocks = QE_DIV_UP(j.M, br);
    /* Blocks of whole tiles (no short tile inside the image), shared out by qe_share_start:
     * blocks of one size and a short last one had given the first of 2 threads 408 rows of 784
     * and the second 376 (the second waited). */
    j.mr = mr;
    j.strips = QE_DIV_UP(j.M, mr);
    j.nr = qe_gemm_packed_tile_n(p->gemm[0]);
    j.panels = QE_DIV_UP(p->cout_g, j.nr);
    j.row_blocks = QE_MIN(j.row_blocks, j.strips);
    j.col_blocks = 1;
    /* Too few tasks for the threads (small maps: late layers, or M = 196 with N = 96): split
     * the dimension whose split re-reads the smaller operand. Another row block streams B
     * (K x N) again; another column block reads A (M x K) again and rebuilds its im2col. Row
     * blocks stay at least QE_MIN_SPLIT_STRIPS tiles tall; column blocks 64 columns wide. A B
     * of at most QE_SMALL_B_BYTES (it stays in L2) is split by rows into blocks as small as one
     * tile, whatever M (MobileNetV2's 1x1 convs on 7 x 7 maps, M = 49, N = 160, had split
     * their 2.5 panels of columns 2:0.5 between two threads; 2 threads: 42 -> 35 us), unless
     * M < N and its panels share out more evenly than the strips (M = 49, N = 960: 8 of 15
     * panels per thread against 5 of 9 strips, and each thread reads half of B, not all).
     * One thread never splits, and neither does a job too small to pay for another thread
     * (the estimate of gemm_partition, qgemm.c: 64 multiply-adds per cycle plus the stream of
     * B; im2col's copy at 32 bytes per cycle). No split changes a result. */
    const double cycles = (double)s->groups * (double)p->cout_g * (double)p->K *
                              ((double)j.M / 64.0 + 1.0 / 32.0) +
                          (p->method == QE_CONV_1X1 ? 0.0 : (double)s->groups * j.M * p->K / 32.0);
    const size_t threads = (size_t)qe_threads_for_cycles(cycles);
    const size_t want = 4 * threads;
    const int small_b = p->K * p->cout_g <= QE_SMALL_B_BYTES;
    const int cols_even = j.M < p->cout_g && QE_DIV_UP(j.panels, threads) * j.strips <
                                                 QE_DIV_UP(j.strips, threads) * j.panels;
    if (threads > 1 && (j.M >= p->cout_g || (small_b && !cols_even)) &&
        j.row_blocks * s->groups < want) {
        const size_t tiles = small_b ? 1 : QE_MIN_SPLIT_STRIPS;
        const size_t most = QE_MAX(1, qe_udiv(j.M, tiles * mr));
        j.row_blocks = QE_MAX(j.row_blocks, QE_MIN(most, QE_DIV_UP(want, s->groups)));
    }
    if (threads > 1 && j.row_blocks * s->groups < want) {
        const size_t most = QE_MIN(j.panels, QE_MAX(1, qe_udiv(p->cout_g, QE_MIN_BLOCK_COLS)));
        /* im2col: one column block per thread, since each rebuilds the whole A (ResNet-18's
         * last stage: 226 KB per block) and a block of several panels prefetches its next
         * panels (qe_gemm_run_blocked); 8 blocks of one panel had those convs at 1.5x on 2
         * threads, 2 blocks at 1.7x */
        const size_t col_want = p->method == QE_CONV_IM2COL ? threads : want;
        j.col_blocks = QE_MIN(QE_DIV_UP(col_want, j.row_blocks * s->groups), most);
    }
    /* Whole rounds: a few tasks that the threads do not divide leave a thread idle in the last
     * round (ResNet-18's last stage at batch 8: 5 row blocks on 2 threads, 3 rounds of work in
     * the time of 2.5). Another block only streams B (rows) or rebuilds A (columns) once more,
     * so the split dimension takes the next count, up to twice as many, that the threads
     * divide. */
    const int by_cols = j.col_blocks > 1;
    size_t *blocks = by_cols ? &j.col_blocks : &j.row_blocks;
    const size_t per_block = s->groups * (by_cols ? j.row_blocks : j.col_blocks);
    if (threads > 1 && *blocks > 1 && per_block * *blocks < 4 * want) {
        const size_t most = QE_MIN(2 * *blocks, by_cols ? j.panels : j.strips);
        size_t b = *blocks;
        while (b < most && qe_umod(per_block * b, threads)) b++;
        if (qe_umod(per_block * b, threads) == 0) *blocks = b;
    }
    qe_parallel_for_threads(s->groups * j.row_blocks * j.col_blocks, (int)threads, conv_gemm_task,
                            &j);
    return QE_OK;
}
