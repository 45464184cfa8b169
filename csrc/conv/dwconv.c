/*
 * dwconv.c -- the depthwise driver (per-call preparation, indirection rows, threading), weight
 * packing for every ISA's layout (conv.h), and the portable reference kernel.
 *
 * Like XNNPACK's indirection buffer, each output pixel gets one input pointer per tap; taps in
 * the padding point at a row of x_zp bytes (except whole kernel rows above or below the input:
 * those output rows run a cut of the window, dw_cut). The kernels then never test borders, and
 *   sum_t (x_t - x_zp) * w_t = sum_t x_t * w_t - x_zp * sum_t w_t
 * lets them accumulate raw uint8 inputs: the second term, with the bias, is the per-call `init`.
 */
#include <stdlib.h>
#include <string.h>

#include "../eltwise/eltwise.h"
#include "conv.h"

static void pack_pairs_s16(const qe_dw_ukernel *uk, size_t taps, size_t channels,
                           const int16_t *wt, int16_t *dst) {
    const size_t npairs = QE_DIV_UP(taps, 2), W = uk->tile, tiles = QE_DIV_UP(channels, W);
    for (size_t tile = 0; tile < tiles; tile++)
        for (size_t t = 0; t < taps; t++)
            for (size_t l = 0; l < W; l++) {
                const size_t c = tile * W + (uk->unpack_order ? qe_dw_lane_channel(l) : l);
                if (c < channels)
                    dst[((tile * npairs + t / 2) * W + l) * 2 + t % 2] = wt[t * channels + c];
            }
}

static void pack_quads_s8(size_t taps, size_t channels, const int16_t *wt, int8_t *dst) {
    const size_t nq = QE_DIV_UP(taps, 4);
    int8_t *w3 = qe_dwq_has_triples(taps) ? dst + qe_dwq_quads_bytes(taps, channels) : NULL;
    int8_t *w5 = qe_dwq_has_fives(taps) ? dst + qe_dwq_quads_bytes(taps, channels) : NULL;
    for (size_t c = 0; c < channels; c++) {
        const size_t c0 = c / 64 * 64, W = qe_dwq_block_width(channels, c0), i = c - c0;
        const size_t lane_dword = 4 * (i / 16) + i % 4, k = i % 16 / 4;
        for (size_t t = 0; t < taps; t++) {
            QE_ASSERT(wt[t * channels + c] >= -128 && wt[t * channels + c] <= 127);
            dst[c0 * 4 * nq + (t / 4 * 4 + k) * W + lane_dword * 4 + t % 4] =
                (int8_t)wt[t * channels + c];
            if (w3) /* triple g = t / 3: byte t % 3 of variant 0, byte t % 3 + 1 of variant 1 */
                for (size_t v = 0; v < 2; v++)
                    w3[c0 * 24 + ((t / 3 * 2 + v) * 4 + k) * W + lane_dword * 4 + t % 3 + v] =
                        (int8_t)wt[t * channels + c];
            if (w5) /* row g = t / 5: in output offset j's half h, byte t % 5 + j - 4h */
                for (size_t j = 0; j < 4; j++)
                    for (size_t h = 0; h < 2; h++) {
                        const size_t b = t % 5 + j - 4 * h;
                        if (b < 4) /* (unsigned: a negative b wraps past 4) */
                            w5[c0 * 32 * (taps / 5) + (((t / 5 * 4 + j) * 2 + h) * 4 + k) * W +
                               lane_dword * 4 + b] = (int8_t)wt[t * channels + c];
                    }
        }
    }
}

void qe_dw_taps_by_channel(const int8_t *w, size_t T, size_t C, size_t t0, size_t n,
                           const int32_t *w_zp, int16_t *wt, int32_t *wsum) {
    for (size_t c = 0; c < C; c++) {
        const int32_t zp = w_zp ? w_zp[c] : 0;
        int32_t sum = 0;
        for (size_t t = 0; t < n; t++) {
            const int32_t v = w[c * T + t0 + t] - zp;
            wt[t * C + c] = (int16_t)v;
            sum += v;
        }
        if (wsum) wsum[c] = sum;
    }
}

void qe_dw_pack_weights(const qe_dw_ukernel *uk, size_t taps, size_t channels, const int16_t *wt,
                        void *dst) {
    memset(dst, 0, qe_dw_packed_bytes(uk, taps, channels));
    if (uk->layout == QE_DW_QUADS_S8)
        pack_quads_s8(taps, channels, wt, dst);
    else
        pack_pairs_s16(uk, taps, channels, wt, dst);
}

/* ---- reference kernel --------------------------------------------------------------------- */
enum { QE_DW_REF_CHUNK = 64 };

void qe_dwconv_u8s8_ref(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                        size_t step, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL &&
              p->ntaps > 0 && p->tap_stride == QE_ROUND_UP(p->ntaps, 2));
    const size_t C = p->channels, T2 = p->tap_stride, es = qe_output_elem_size(p->out->kind);
    const int16_t *w = p->w;
    int32_t acc[QE_DW_REF_CHUNK];
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = step ? taps : taps + px * T2;
        const size_t off = px * step;
        char *dst = (char *)y + px * p->ldy * es;
        for (size_t c0 = 0; c0 < C; c0 += QE_DW_REF_CHUNK) {
            const size_t n = QE_MIN(QE_DW_REF_CHUNK, C - c0);
            for (size_t i = 0; i < n; i++) {
                const size_t c = c0 + i, tile = c / QE_DW_TILE, lane = c % QE_DW_TILE;
                int32_t a = p->init[c];
                for (size_t t = 0; t < T2; t++) {
                    const int16_t wv =
                        w[((tile * qe_dw_npairs(p) + t / 2) * QE_DW_TILE + lane) * 2 + t % 2];
                    a = qe_add_wrap(a, (int32_t)tp[t][off + c] * wv);
                }
                acc[i] = a;
            }
            qe_output_row_ref(p->out, acc, c0, n, dst + c0 * es);
        }
    }
}

const qe_dw_ukernel qe_dw_ref = {
    .kernel = qe_dwconv_u8s8_ref, .layout = QE_DW_PAIRS_S16, .tile = QE_DW_TILE};

/* ---- driver ------------------------------------------------------------------------------- */
/* A cut of the window: its kernel rows [first, first + count), the ones inside the input for
 * output rows near the top or bottom edge (the others read only the x_zp row). Those output rows
 * run the kernel on the cut's taps alone, with the cut's weights and init (packed per call), so
 * that no multiply-add is spent on padding: for the 2- and 4-row maps of an OCR backbone with
 * 5 x 5 kernels, 60% and 30% of the window. Exact: a padding tap adds (x_zp - x_zp) * w = 0. */
typedef struct {
    size_t first, count;
    qe_dw_params prm;
} dw_cut;
enum { QE_DW_MAX_CUTS = 8 };   /* distinct cuts per call (more: the whole window for all) */

typedef struct {
    const qe_conv_shape *s;
    const uint8_t *x;
    const uint8_t *zp_row;
    dw_cut cut[1 + QE_DW_MAX_CUTS]; /* [0]: the whole window */
    size_t ncuts;
    const size_t (*cuts)[2];        /* cut i's kernel rows (first, count), for i >= 1 */
    qe_dwconv_fn kernel;
    const uint8_t *lut; /* NULL, or the table each task applies to its outputs */
    char *y;
    size_t es, rows; /* rows: batch * out_h */
    /* the task grid (dw_task): blocks of rows, of columns, and of channels (64 at least) */
    size_t rows_per_task, col_blocks, ch_blocks; /* columns and 64-channel units: shares */
    const qe_dw_ukernel *uk;
    size_t ow_lo, ow_hi;            /* output columns whose window is inside the input */
} dw_job;

/* The input row of the first kernel row of output row oh (negative: in the padding). */
static ptrdiff_t dw_window_top(const qe_conv_shape *s, size_t oh) {
    return (ptrdiff_t)(oh * s->stride_h) - (ptrdiff_t)s->pad_top;
}

/* The kernel rows of output row oh's window that lie inside the input: [*first, +*count). */
static void dw_rows_inside(const qe_conv_shape *s, size_t oh, size_t *first, size_t *count) {
    const ptrdiff_t ih0 = dw_window_top(s, oh);
    *first = *count = 0;
    for (size_t ki = 0; ki < s->kernel_h; ki++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(ki * s->dilation_h);
        if (ih >= 0 && ih < (ptrdiff_t)s->in_h) {
            if (*count == 0) *first = ki;
            ++*count;
        }
    }
}

/* The cut among cuts[1..n] of the kernel rows [first, first + count), or 0 (the whole window). */
static size_t dw_cut_index(const size_t cuts[][2], size_t n, size_t first, size_t count) {
    while (n > 0 && (cuts[n][0] != first || cuts[n][1] != count)) n--;
    return n;
}

/* Tap pointers of output pixels (n, oh, ow0 .. ow1-1) for the kernel rows of `cut`, its
 * tap_stride each, testing every tap against the borders (taps outside read the x_zp row). */
static void dw_indirection(const dw_job *j, const dw_cut *cut, size_t n, size_t oh, size_t ow0,
                           size_t ow1, const uint8_t **ind) {
    const qe_conv_shape *s = j->s;
    const size_t T2 = cut->prm.tap_stride, T = cut->prm.ntaps, C = s->in_c;
    const ptrdiff_t ih0 = dw_window_top(s, oh) + (ptrdiff_t)(cut->first * s->dilation_h);
    const qe_window win = {.img = j->x + n * s->in_h * s->in_w * C, .in_h = s->in_h,
                           .in_w = s->in_w, .C = C, .kernel_h = cut->count,
                           .kernel_w = s->kernel_w, .dilation_h = s->dilation_h,
                           .dilation_w = s->dilation_w, .pad = j->zp_row};
    for (size_t ow = ow0; ow < ow1; ow++) {
        const uint8_t **tp = ind + (ow - ow0) * T2;
        qe_window_taps(&win, ih0, (ptrdiff_t)(ow * s->stride_w) - (ptrdiff_t)s->pad_left, tp);
        for (size_t t = T; t < T2; t++) tp[t] = j->zp_row; /* the dummy taps (weight 0) */
    }
}

/* Pointers per indirection chunk: at most 64 KB of them, whatever the row width and taps. */
enum { QE_DW_IND_POINTERS = 8192 };
/* Columns of one row a task takes at least, when rows are split (the kernel's pixel pairs and
 * 64-channel blocks stay busy). */
enum { QE_DW_MIN_TASK_COLS = 16 };

/* Output pixels (n, oh, ow0 .. ow1-1) through the indirection, in chunks. */
static void dw_run_indirect(const dw_job *j, const dw_cut *cut, size_t r, size_t ow0,
                            size_t ow1, size_t chunk, const uint8_t **ind) {
    const qe_conv_shape *s = j->s;
    for (; ow0 < ow1; ow0 += chunk) {
        const size_t ow_end = QE_MIN(ow0 + chunk, ow1);
        dw_indirection(j, cut, qe_udiv(r, s->out_h), qe_umod(r, s->out_h), ow0, ow_end, ind);
        j->kernel(&cut->prm, ow_end - ow0, ind, 0,
                  j->y + (r * s->out_w + ow0) * cut->prm.ldy * j->es);
    }
}

/* Output row r, columns [c0, c1). The columns [ow_lo, ow_hi) have their window inside the
 * input's width: one set of tap pointers, stepped by stride_w * C per pixel, serves them all
 * (no per-pixel indirection). Kernel rows above or below the input point into the x_zp plane,
 * which steps the same way; only the border columns build per-pixel pointers. */
static void dw_row_span(const dw_job *j, size_t r, size_t c0, size_t c1, size_t chunk,
                        const uint8_t **ind) {
    const qe_conv_shape *s = j->s;
    const size_t n = qe_udiv(r, s->out_h), oh = r - n * s->out_h;
    size_t first, count;
    dw_rows_inside(s, oh, &first, &count);
    const dw_cut *cut = &j->cut[dw_cut_index(j->cuts, j->ncuts - 1, first, count)];
    const size_t T2 = cut->prm.tap_stride, C = s->in_c;
    const size_t lo = QE_MIN(QE_MAX(j->ow_lo, c0), c1), hi = QE_MAX(QE_MIN(j->ow_hi, c1), lo);
    if (lo >= hi) {
        dw_run_indirect(j, cut, r, c0, c1, chunk, ind);
        return;
    }
    dw_run_indirect(j, cut, r, c0, lo, chunk, ind);
    const ptrdiff_t ih0 = dw_window_top(s, oh);
    const size_t iw0 = lo * s->stride_w - s->pad_left;
    size_t t = 0;
    for (size_t ki = cut->first; ki < cut->first + cut->count; ki++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(ki * s->dilation_h);
        const uint8_t *row = ih >= 0 && ih < (ptrdiff_t)s->in_h
                                 ? j->x + ((n * s->in_h + (size_t)ih) * s->in_w + iw0) * C
                                 : j->zp_row; /* the x_zp plane: steps like an input row */
        for (size_t kj = 0; kj < s->kernel_w; kj++, t++) ind[t] = row + kj * s->dilation_w * C;
    }
    for (; t < T2; t++) ind[t] = ind[0]; /* dummy taps (weight 0): any pointer that steps */
    j->kernel(&cut->prm, hi - lo, ind, s->stride_w * C,
              j->y + (r * s->out_w + lo) * cut->prm.ldy * j->es);
    dw_run_indirect(j, cut, r, hi, c1, chunk, ind);
}

/* A task: a block of output rows, or (maps of few rows) a block of columns of one row, for
 * every channel or (maps of few pixels) for a block of channels. */
static void dw_task(void *ctx, size_t task, int thread_index) {
    const dw_job *full = ctx;
    const qe_conv_shape *s = full->s;
    const size_t T2 = full->cut[0].prm.tap_stride; /* the most taps of any cut */
    const size_t chunk = QE_MAX(1, qe_udiv(QE_DW_IND_POINTERS, T2));
    const uint8_t **ind = qe_scratch(2, QE_MIN(chunk, s->out_w) * T2 * sizeof(*ind));
    QE_ASSERT(ind != NULL);
    const size_t cell = qe_udiv(task, full->ch_blocks), chb = task - cell * full->ch_blocks;
    const size_t rb = qe_udiv(cell, full->col_blocks), cb = cell - rb * full->col_blocks;
    const size_t r0 = rb * full->rows_per_task, r1 = QE_MIN(r0 + full->rows_per_task, full->rows);
    const size_t c0 = qe_share_start(s->out_w, full->col_blocks, cb);
    const size_t c1 = qe_share_start(s->out_w, full->col_blocks, cb + 1);
    const size_t units = QE_DIV_UP(s->in_c, 64);
    const size_t k0 = qe_share_start(units, full->ch_blocks, chb) * 64;
    const size_t k1 = QE_MIN(qe_share_start(units, full->ch_blocks, chb + 1) * 64, s->in_c);
    /* channels [k0, k1): the same job seen from channel k0 (input and output pointers moved
     * by k0, the kernel's arrays from its block k0 on; the x_zp rows are x_zp everywhere) */
    dw_job part = *full;
    qe_output o = qe_output_from_channel(full->cut[0].prm.out, k0);
    if (k0 > 0 || k1 < s->in_c) {
        part.x += k0;
        part.y += k0 * full->es;
        for (size_t i = 0; i < full->ncuts; i++) {
            qe_dw_params *q = &part.cut[i].prm;
            q->channels = k1 - k0;
            q->w = (const char *)q->w + qe_dw_packed_offset(full->uk, q->ntaps, k0);
            if (q->w3) q->w3 += k0 * 24;
            if (q->w5) q->w5 += k0 * 32 * (q->ntaps / 5);
            q->init += k0;
            if (q->scale) q->scale += k0;
            q->out = &o;
        }
    }
    const dw_job *j = &part;
    for (size_t r = r0; r < r1; r++) {
        dw_row_span(j, r, c0, c1, chunk, ind);
        if (j->lut) { /* pixels [c0, c1) of row r: channels [k0, k1), ldy apart */
            const size_t ldy = j->cut[0].prm.ldy;
            uint8_t *row = (uint8_t *)j->y + (r * s->out_w + c0) * ldy;
            qe_lut_rows_inplace(c1 - c0, k1 - k0, row, ldy, j->lut);
        }
    }
}

/* The cuts a call uses (dw_cut): the distinct row ranges of output rows whose window is cut
 * by the top or bottom edge and whose cut saves kernel groups. Writes (first, count) pairs to
 * cuts[1..] and returns their number, 0 when no cut pays (or there are too many). */
static size_t dw_plan_cuts(const qe_conv_packed *p, const qe_conv_shape *s, size_t group,
                           size_t cuts[][2]) {
    const size_t T = s->kernel_h * s->kernel_w;
    if (!p->dw_cuts) return 0;
    size_t n = 0;
    for (size_t oh = 0; oh < s->out_h; oh++) {
        size_t first, count, i;
        dw_rows_inside(s, oh, &first, &count);
        if (count == 0 || QE_DIV_UP(count * s->kernel_w, group) >= QE_DIV_UP(T, group))
            continue;   /* all padding (init alone is right, but rare), or nothing saved */
        for (i = 1; i <= n && (cuts[i][0] != first || cuts[i][1] != count); i++) {}
        if (i > n) {
            if (n == QE_DW_MAX_CUTS) return 0;
            cuts[++n][0] = first;
            cuts[n][1] = count;
        }
    }
    return n;
}

/* The weight sums [C] (w_zp 0; a 64-byte padded block) and then the weights packed for p->dw
 * of the kernel rows [first, first + count): made at a cut's first use and kept with the packed
 * convolution (a call of several threads that make one at once keeps the first stored). NULL:
 * out of memory. */
static const char *dw_cut_weights(const qe_conv_packed *p, size_t first, size_t count) {
    const size_t C = p->shape.out_c, T = p->K, kw = p->shape.kernel_w, Tc = count * kw;
    void **slot = &p->dw_cuts[first * p->shape.kernel_h + count - 1];
    void *have = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (have) return have;
    const size_t sum_bytes = QE_ROUND_UP(C * sizeof(int32_t), 64);
    char *blk = qe_aligned_alloc(sum_bytes + qe_dw_packed_bytes(p->dw, Tc, C));
    int16_t *wt = malloc(Tc * C * sizeof(int16_t));
    if (!blk || !wt) {
        free(wt);
        qe_aligned_free(blk);
        return NULL;
    }
    qe_dw_taps_by_channel(p->dw_w, T, C, first * kw, Tc, NULL, wt, (int32_t *)blk);
    qe_dw_pack_weights(p->dw, Tc, C, wt, blk + sum_bytes);
    free(wt);
    void *expected = NULL;
    if (!__atomic_compare_exchange_n(slot, &expected, blk, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        qe_aligned_free(blk);   /* another thread stored the same cut first */
        return expected;
    }
    return blk;
}

/* init in the kernel's channel order (pos, or natural) from the weight sums of `taps` taps:
 * bias - x_zp * (wsum - taps * w_zp). */
static void dw_fill_init(const int32_t *wsum, size_t taps, size_t C, int32_t x_zp,
                         const int32_t *w_zp, const qe_output *out, const uint32_t *pos,
                         int32_t *init) {
    for (size_t c = 0; c < C; c++) {
        const int32_t ws = w_zp ? qe_add_wrap(wsum[c], -(int32_t)taps * w_zp[c]) : wsum[c];
        const int32_t bias = out->bias ? out->bias[c] : 0;
        init[pos ? pos[c] : c] = qe_add_wrap(bias, qe_mul_wrap(-x_zp, ws));
    }
}

/* Point q's tap triples / fives (QUADS_S8 weights of 9 / 5R taps) past its quads at q->w. */
static void dw_point_extras(qe_dw_params *q, int quads) {
    const int8_t *after = (const int8_t *)q->w + qe_dwq_quads_bytes(q->ntaps, q->channels);
    q->w3 = quads && qe_dwq_has_triples(q->ntaps) ? after : NULL;
    q->w5 = quads && qe_dwq_has_fives(q->ntaps) ? after : NULL;
}

/* ---- per-call constants -------------------------------------------------------------------
 * What every task of a call reads besides the weights: the x_zp plane (the padding rows), init
 * and the per-channel scales in the kernel's channel order, and per cut its init and weights.
 * They depend on x_zp, the bias and the scales, which a compiled model passes unchanged call
 * after call: so the first call without w_zp builds them on the heap and keeps them with the
 * packed convolution (p->dw_consts, an atomic pointer, first one stored wins), and a later call
 * uses them when its key (x_zp, bias and scale values, cuts, plane size) matches. Other calls
 * (w_zp, whose weights are repacked per call, or another key) build them in scratch slot 3.
 * Building them took 5-9 us per call for the OCR backbone's 5 x 5 layers, all of it serial. */
struct qe_dw_consts {
    /* the key */
    int32_t x_zp;
    int has_bias, perm_scale;
    size_t C, ncuts, cuts[1 + QE_DW_MAX_CUTS][2], zp_bytes;
    const int32_t *bias_key;   /* copies of out->bias [C] / out->scale [C] (when used) */
    const float *scale_key;
    /* the constants */
    const uint8_t *zp_row;     /* zp_bytes of x_zp */
    const int32_t *init;       /* the whole window's, kernel order */
    const float *scale;        /* per-channel scales in kernel order, or NULL */
    const int32_t *cut_init[1 + QE_DW_MAX_CUTS];
    const void *w, *cut_w[1 + QE_DW_MAX_CUTS];
};

void qe_dw_consts_free(qe_dw_consts *k) { qe_aligned_free(k); }

/* Bytes dw_build_consts takes for this key (the struct first, then 64-byte aligned arrays). */
static size_t dw_consts_bytes(const qe_dw_consts *key, const qe_dw_ukernel *uk, size_t T,
                              size_t kernel_w, int w_zp, int keep_key) {
    const size_t C = key->C, vec_bytes = QE_ROUND_UP(QE_ROUND_UP(C, 64) * 4, 64);
    size_t n = QE_ROUND_UP(sizeof(qe_dw_consts), 64) + key->zp_bytes + vec_bytes;
    n += key->perm_scale ? vec_bytes : 0;
    n += key->ncuts * vec_bytes;
    if (w_zp) {
        n += QE_ROUND_UP(T * C * sizeof(int16_t), 64) + QE_ROUND_UP(qe_dw_packed_bytes(uk, T, C), 64);
        for (size_t i = 1; i <= key->ncuts; i++)
            n += QE_ROUND_UP(qe_dw_packed_bytes(uk, key->cuts[i][1] * kernel_w, C), 64);
    }
    if (keep_key) n += 2 * vec_bytes;
    return n;
}

/* Build the constants of `key` in mem (dw_consts_bytes of it); the key arrays are copied when
 * keep_key. Returns the struct at mem, or NULL when a cut's weights cannot be made. */
static qe_dw_consts *dw_build_consts(const qe_conv_packed *p, const qe_dw_consts *key,
                                     const qe_dw_ukernel *uk, const int32_t *w_zp,
                                     const qe_output *out, int keep_key, char *mem) {
    const size_t C = key->C, T = p->K, kw = p->shape.kernel_w;
    const size_t vec_bytes = QE_ROUND_UP(QE_ROUND_UP(C, 64) * 4, 64);
    const uint32_t *pos = uk->layout == QE_DW_QUADS_S8 ? p->dw_pos : NULL;
    QE_ASSERT(uk->layout != QE_DW_QUADS_S8 || pos != NULL);
    qe_dw_consts *k = (qe_dw_consts *)mem;
    *k = *key;
    char *next = mem + QE_ROUND_UP(sizeof(qe_dw_consts), 64);
    memset(next, key->x_zp, key->zp_bytes);
    k->zp_row = (const uint8_t *)next;
    next += key->zp_bytes;
    int32_t *init = (int32_t *)next;
    next += vec_bytes;
    memset(init, 0, vec_bytes);
    dw_fill_init(p->dw_wsum, T, C, key->x_zp, w_zp, out, pos, init);
    k->init = init;
    k->scale = NULL;
    if (key->perm_scale) {
        float *scale = (float *)next;
        next += vec_bytes;
        memset(scale, 0, vec_bytes);
        for (size_t c = 0; c < C; c++) scale[pos[c]] = out->scale[c];
        k->scale = scale;
    }
    int16_t *wt = NULL;
    k->w = p->dw_packed;
    if (w_zp) {
        wt = (int16_t *)next; /* taps x C */
        next += QE_ROUND_UP(T * C * sizeof(int16_t), 64);
        qe_dw_taps_by_channel(p->dw_w, T, C, 0, T, w_zp, wt, NULL);
        qe_dw_pack_weights(uk, T, C, wt, next);
        k->w = next;
        next += QE_ROUND_UP(qe_dw_packed_bytes(uk, T, C), 64);
    }
    for (size_t i = 1; i <= key->ncuts; i++) {
        const size_t first = key->cuts[i][0], Tc = key->cuts[i][1] * kw;
        const char *kept = dw_cut_weights(p, first, key->cuts[i][1]);
        if (!kept) return NULL;
        int32_t *cinit = (int32_t *)next;
        next += vec_bytes;
        memset(cinit, 0, vec_bytes);
        dw_fill_init((const int32_t *)kept, Tc, C, key->x_zp, w_zp, out, pos, cinit);
        k->cut_init[i] = cinit;
        k->cut_w[i] = kept + QE_ROUND_UP(C * sizeof(int32_t), 64);
        if (w_zp) {
            qe_dw_taps_by_channel(p->dw_w, T, C, first * kw, Tc, w_zp, wt, NULL);
            qe_dw_pack_weights(uk, Tc, C, wt, next);
            k->cut_w[i] = next;
            next += QE_ROUND_UP(qe_dw_packed_bytes(uk, Tc, C), 64);
        }
    }
    k->bias_key = NULL;
    k->scale_key = NULL;
    if (keep_key) {
        if (out->bias) k->bias_key = memcpy(next, out->bias, C * sizeof(int32_t));
        if (key->perm_scale) k->scale_key = memcpy(next + vec_bytes, out->scale, C * sizeof(float));
    }
    return k;
}

/* Whether kept constants k serve a call with this key. */
static int dw_consts_match(const qe_dw_consts *k, const qe_dw_consts *key, const qe_output *out) {
    if (k->x_zp != key->x_zp || k->C != key->C || k->has_bias != key->has_bias ||
        k->perm_scale != key->perm_scale || k->ncuts != key->ncuts || k->zp_bytes < key->zp_bytes)
        return 0;
    for (size_t i = 1; i <= key->ncuts; i++)
        if (k->cuts[i][0] != key->cuts[i][0] || k->cuts[i][1] != key->cuts[i][1]) return 0;
    if (key->has_bias && memcmp(k->bias_key, out->bias, key->C * sizeof(int32_t))) return 0;
    if (key->perm_scale && memcmp(k->scale_key, out->scale, key->C * sizeof(float))) return 0;
    return 1;
}

/* The constants of this call: the kept ones when they match (made and kept at the first call
 * without w_zp), else built in scratch slot 3. NULL: out of memory. */
static const qe_dw_consts *dw_call_consts(const qe_conv_packed *p, const qe_dw_consts *key,
                                          const qe_dw_ukernel *uk, const int32_t *w_zp,
                                          const qe_output *out) {
    const size_t T = p->K, kw = p->shape.kernel_w;
    if (!w_zp) {
        qe_dw_consts *have = __atomic_load_n(&p->dw_consts, __ATOMIC_ACQUIRE);
        if (have && dw_consts_match(have, key, out)) return have;
        if (!have) {
            char *mem = qe_aligned_alloc(dw_consts_bytes(key, uk, T, kw, 0, 1));
            qe_dw_consts *k = mem ? dw_build_consts(p, key, uk, NULL, out, 1, mem) : NULL;
            qe_dw_consts *expected = NULL;
            if (k && __atomic_compare_exchange_n(&((qe_conv_packed *)p)->dw_consts, &expected, k,
                                                 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return k;
            qe_aligned_free(mem);   /* out of memory, or another thread kept its own first */
            if (expected && dw_consts_match(expected, key, out)) return expected;
        }
    }
    char *mem = qe_scratch(3, dw_consts_bytes(key, uk, T, kw, w_zp != NULL, 0));
    return mem ? dw_build_consts(p, key, uk, w_zp, out, 0, mem) : NULL;
}

/* Per call: the constants (dw_call_consts), then the task grid. */
int qe_conv_run_dw(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                   int32_t x_zp, const int32_t *w_zp, const qe_output *out, const uint8_t *lut,
                   void *y, size_t ldy) {
    const qe_dw_ukernel *uk = w_zp && p->dw->with_w_zp ? p->dw->with_w_zp : p->dw;
    const int quads = uk->layout == QE_DW_QUADS_S8;
    const size_t C = s->in_c, T = p->K, Cp = QE_ROUND_UP(C, 64); /* any tile or block fits */
    size_t ow_lo, ow_hi; /* the columns whose window is inside the input's width */
    qe_window_interior(s->in_w, s->pad_left, s->kernel_w, s->dilation_w, s->stride_w, s->out_w,
                       &ow_lo, &ow_hi);
    qe_dw_consts key = {.x_zp = x_zp, .has_bias = out->bias != NULL, .C = C,
                        .perm_scale = quads && out->kind != QE_OUT_I32 && out->per_channel};
    const size_t group = qe_dw_tap_group(uk);
    key.ncuts = dw_plan_cuts(p, s, group, key.cuts);
    int plane = 0;          /* whether a stepped run reads a padding row (not cut away) */
    for (size_t oh = 0; oh < s->out_h && !plane; oh++) {
        size_t first, count;
        dw_rows_inside(s, oh, &first, &count);
        plane = count < s->kernel_h && dw_cut_index(key.cuts, key.ncuts, first, count) == 0;
    }
    /* The x_zp plane: the padding row of every tap; when a stepped run of the interior columns
     * (dw_row_span) reads a padding row, wide enough for that run. */
    const size_t run_px = ow_hi > ow_lo ? ow_hi - ow_lo : 1;
    const size_t plane_bytes =
        plane ? ((s->kernel_w - 1) * s->dilation_w + (run_px - 1) * s->stride_w + 1) * C : 0;
    key.zp_bytes = QE_ROUND_UP(QE_MAX(Cp, plane_bytes), 64);
    const qe_dw_consts *k = dw_call_consts(p, &key, uk, w_zp, out);
    if (!k) return QE_ERR_NOMEM;
    qe_output o = *out;
    o.bias = NULL; /* folded into init */
    dw_job j = {.s = s, .x = x, .zp_row = k->zp_row, .kernel = uk->kernel, .lut = lut, .y = y,
                .es = qe_output_elem_size(out->kind), .rows = s->batch * s->out_h, .uk = uk};
    j.ow_lo = ow_lo;
    j.ow_hi = ow_hi;
    qe_dw_params whole = {
        .channels = C, .ntaps = T, .tap_stride = QE_ROUND_UP(T, group), .w = k->w,
        .init = k->init, .scale = k->scale, .out = &o, .ldy = ldy};
    dw_point_extras(&whole, quads);
    j.cut[0] = (dw_cut){.first = 0, .count = s->kernel_h, .prm = whole};
    j.ncuts = 1 + key.ncuts;
    j.cuts = (const size_t(*)[2])key.cuts;
    for (size_t i = 1; i <= key.ncuts; i++) {
        const size_t Tc = key.cuts[i][1] * s->kernel_w;
        dw_cut *c = &j.cut[i];
        *c = (dw_cut){.first = key.cuts[i][0], .count = key.cuts[i][1], .prm = whole};
        c->prm.ntaps = Tc;
        c->prm.tap_stride = QE_ROUND_UP(Tc, group);
        c->prm.w = k->cut_w[i];
        dw_point_extras(&c->prm, quads);
        c->prm.init = k->cut_init[i];
    }
    /* About 64K multiply-adds per task, and at least 4 tasks per thread: a map of fewer rows
     * than that (OCR-style 2 x 160 maps) is cut along its columns too. The threads: as many as
     * the work pays for at ~16 multiply-adds per cycle (the kernels run at 20-25). */
    const size_t row_work = s->out_w * C * T + 1;
    const size_t threads = (size_t)qe_threads_for_cycles((double)j.rows * (double)row_work / 16.0);
    const size_t want = 4 * threads;
    size_t rpt = QE_MAX(1, qe_udiv(64 * 1024, row_work));
    rpt = QE_MIN(rpt, QE_MAX(1, qe_udiv(j.rows, want)));
    j.rows_per_task = rpt;
    j.col_blocks = 1;
    if (threads > 1 && j.rows < want)
        j.col_blocks = QE_MIN(QE_DIV_UP(want, j.rows),
                              QE_MAX(1, qe_udiv(s->out_w, QE_DW_MIN_TASK_COLS)));
    /* Still too few tasks (7 x 7 maps of 960 channels: one row each, 4:3 between two
     * threads): blocks of 64 channels or more. */
    const size_t cells = QE_DIV_UP(j.rows, rpt) * j.col_blocks;
    j.ch_blocks = 1;
    if (threads > 1 && cells < want)
        j.ch_blocks = QE_MIN(QE_DIV_UP(want, cells), QE_MAX(1, C / 64));
    qe_parallel_for_threads(cells * j.ch_blocks, (int)threads, dw_task, &j);
    return QE_OK;
}
