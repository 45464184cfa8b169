/*
 * dwconv.c -- the depthwise driver (per-call preparation, indirection rows, threading), weight
 * packing for every ISA's layout (conv.h), and the portable reference kernel.
 *
 * Like XNNPACK's indirection buffer, each output pixel gets one input pointer per tap; taps in
 * the padding point at a row of x_zp bytes. The kernels then never test borders, and
 *   sum_t (x_t - x_zp) * w_t = sum_t x_t * w_t - x_zp * sum_t w_t
 * lets them accumulate raw uint8 inputs: the second term, with the bias, is the per-call `init`.
 */
#include <string.h>

#include "conv.h"

void qe_dw_pack_weights(const qe_dw_ukernel *uk, size_t taps, size_t channels, const int16_t *wt,
                        int16_t *dst) {
    const size_t npairs = QE_DIV_UP(taps, 2), W = uk->tile, tiles = QE_DIV_UP(channels, W);
    memset(dst, 0, qe_dw_packed_count(uk, taps, channels) * sizeof(int16_t));
    for (size_t tile = 0; tile < tiles; tile++)
        for (size_t t = 0; t < taps; t++)
            for (size_t l = 0; l < W; l++) {
                const size_t c = tile * W + (uk->unpack_order ? qe_dw_lane_channel(l) : l);
                if (c < channels)
                    dst[((tile * npairs + t / 2) * W + l) * 2 + t % 2] = wt[t * channels + c];
            }
}

/* ---- reference kernel --------------------------------------------------------------------- */
enum { QE_DW_REF_CHUNK = 64 };

void qe_dwconv_u8s8_ref(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                        void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL);
    const size_t C = p->channels, T2 = 2 * p->npairs, es = qe_output_elem_size(p->out->kind);
    int32_t acc[QE_DW_REF_CHUNK];
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = taps + px * T2;
        char *dst = (char *)y + px * p->ldy * es;
        for (size_t c0 = 0; c0 < C; c0 += QE_DW_REF_CHUNK) {
            const size_t n = QE_MIN(QE_DW_REF_CHUNK, C - c0);
            for (size_t i = 0; i < n; i++) {
                const size_t c = c0 + i, tile = c / QE_DW_TILE, lane = c % QE_DW_TILE;
                int32_t a = p->init[c];
                for (size_t t = 0; t < T2; t++) {
                    const int16_t w =
                        p->w[((tile * p->npairs + t / 2) * QE_DW_TILE + lane) * 2 + t % 2];
                    a = qe_add_wrap(a, (int32_t)tp[t][c] * w);
                }
                acc[i] = a;
            }
            qe_output_row_ref(p->out, acc, c0, n, dst + c0 * es);
        }
    }
}

const qe_dw_ukernel qe_dw_ref = {.kernel = qe_dwconv_u8s8_ref, .tile = QE_DW_TILE};

/* ---- driver ------------------------------------------------------------------------------- */
typedef struct {
    const qe_conv_shape *s;
    const uint8_t *x;
    const uint8_t *zp_row;
    qe_dw_params prm;
    qe_dwconv_fn kernel;
    char *y;
    size_t es, rows_per_task, rows; /* rows: batch * out_h */
    size_t ow_lo, ow_hi;            /* output columns whose window is inside the input */
    const size_t *tap_off;          /* [taps] byte offset of each tap from the window origin */
} dw_job;

/* Tap pointers of output pixels (n, oh, ow0 .. ow1-1): 2*npairs taps each. Pixels whose window
 * lies inside the input take base + precomputed tap offsets; the border ones test every tap. */
static void dw_indirection(const dw_job *j, size_t n, size_t oh, size_t ow0, size_t ow1,
                           const uint8_t **ind) {
    const qe_conv_shape *s = j->s;
    const size_t T2 = 2 * j->prm.npairs, T = s->kernel_h * s->kernel_w, C = s->in_c;
    const ptrdiff_t ih0 = (ptrdiff_t)(oh * s->stride_h) - (ptrdiff_t)s->pad_top;
    const int rows_inside = ih0 >= 0 && ih0 + (ptrdiff_t)((s->kernel_h - 1) * s->dilation_h) < (ptrdiff_t)s->in_h;
    for (size_t ow = ow0; ow < ow1; ow++) {
        const uint8_t **tp = ind + (ow - ow0) * T2;
        const ptrdiff_t iw0 = (ptrdiff_t)(ow * s->stride_w) - (ptrdiff_t)s->pad_left;
        if (rows_inside && ow >= j->ow_lo && ow < j->ow_hi) {
            const uint8_t *base = j->x + ((n * s->in_h + (size_t)ih0) * s->in_w + (size_t)iw0) * C;
            for (size_t t = 0; t < T; t++) tp[t] = base + j->tap_off[t];
        } else {
            size_t t = 0;
            for (size_t ki = 0; ki < s->kernel_h; ki++) {
                const ptrdiff_t ih = ih0 + (ptrdiff_t)(ki * s->dilation_h);
                const int row_ok = ih >= 0 && ih < (ptrdiff_t)s->in_h;
                const uint8_t *row = row_ok ? j->x + (n * s->in_h + (size_t)ih) * s->in_w * C : NULL;
                for (size_t kj = 0; kj < s->kernel_w; kj++, t++) {
                    const ptrdiff_t iw = iw0 + (ptrdiff_t)(kj * s->dilation_w);
                    tp[t] = (row_ok && iw >= 0 && iw < (ptrdiff_t)s->in_w) ? row + (size_t)iw * C
                                                                           : j->zp_row;
                }
            }
        }
        if (T < T2) tp[T] = j->zp_row; /* the dummy tap of an odd count (weight 0) */
    }
}

/* Pointers per indirection chunk: at most 64 KB of them, whatever the row width and taps. */
enum { QE_DW_IND_POINTERS = 8192 };

static void dw_task(void *ctx, size_t task, int thread_index) {
    const dw_job *j = ctx;
    const qe_conv_shape *s = j->s;
    const size_t T2 = 2 * j->prm.npairs, chunk = QE_MAX(1, QE_DW_IND_POINTERS / T2);
    const uint8_t **ind = qe_scratch(2, QE_MIN(chunk, s->out_w) * T2 * sizeof(*ind));
    QE_ASSERT(ind != NULL);
    const size_t r0 = task * j->rows_per_task, r1 = QE_MIN(r0 + j->rows_per_task, j->rows);
    for (size_t r = r0; r < r1; r++)
        for (size_t ow0 = 0; ow0 < s->out_w; ow0 += chunk) {
            const size_t ow1 = QE_MIN(ow0 + chunk, s->out_w);
            dw_indirection(j, r / s->out_h, r % s->out_h, ow0, ow1, ind);
            j->kernel(&j->prm, ow1 - ow0, ind, j->y + (r * s->out_w + ow0) * j->prm.ldy * j->es);
        }
}

/* Per call, in the caller's scratch slot 3 (read by every task): the x_zp row, init, and, with
 * w_zp, the weights repacked as w - w_zp. */
int qe_conv_run_dw(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                   int32_t x_zp, const int32_t *w_zp, const qe_output *out, void *y, size_t ldy) {
    const size_t C = s->in_c, T = p->K, Cp = QE_ROUND_UP(C, 64); /* any tile divides 64 */
    const size_t count = qe_dw_packed_count(p->dw, T, C);
    const size_t zp_bytes = QE_ROUND_UP(Cp, 64), init_bytes = QE_ROUND_UP(Cp * 4, 64);
    const size_t wt_bytes = w_zp ? QE_ROUND_UP(T * C * sizeof(int16_t), 64) : 0;
    const size_t w_bytes = w_zp ? count * sizeof(int16_t) : 0;
    const size_t off_bytes = T * sizeof(size_t);
    char *buf = qe_scratch(3, zp_bytes + init_bytes + wt_bytes + w_bytes + off_bytes);
    if (!buf) return QE_ERR_NOMEM;
    uint8_t *zp_row = (uint8_t *)buf;
    int32_t *init = (int32_t *)(buf + zp_bytes);
    const int16_t *w = p->dw_packed;
    memset(zp_row, x_zp, zp_bytes);
    for (size_t c = 0; c < Cp; c++) {
        int32_t wsum = 0, bias = 0;
        if (c < C) {
            wsum = w_zp ? qe_add_wrap(p->dw_wsum[c], -(int32_t)T * w_zp[c]) : p->dw_wsum[c];
            bias = out->bias ? out->bias[c] : 0;
        }
        init[c] = qe_add_wrap(bias, qe_mul_wrap(-x_zp, wsum));
    }
    if (w_zp) {
        int16_t *wt = (int16_t *)(buf + zp_bytes + init_bytes);
        int16_t *wp = (int16_t *)(buf + zp_bytes + init_bytes + wt_bytes);
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < T; t++)
                wt[t * C + c] = (int16_t)(p->dw_w[c * T + t] - w_zp[c]);
        qe_dw_pack_weights(p->dw, T, C, wt, wp);
        w = wp;
    }
    size_t *tap_off = (size_t *)(buf + zp_bytes + init_bytes + wt_bytes + w_bytes);
    for (size_t ki = 0, t = 0; ki < s->kernel_h; ki++)
        for (size_t kj = 0; kj < s->kernel_w; kj++, t++)
            tap_off[t] = (ki * s->dilation_h * s->in_w + kj * s->dilation_w) * C;
    qe_output o = *out;
    o.bias = NULL; /* folded into init */
    dw_job j = {.s = s, .x = x, .zp_row = zp_row, .kernel = p->dw->kernel, .y = y,
                .es = qe_output_elem_size(out->kind), .rows = s->batch * s->out_h,
                .tap_off = tap_off};
    /* ow_lo: first column with iw0 >= 0; ow_hi: past the last with the window inside */
    const size_t ext_w = (s->kernel_w - 1) * s->dilation_w + 1;
    j.ow_lo = QE_DIV_UP(s->pad_left, s->stride_w);
    j.ow_hi = s->in_w + s->pad_left >= ext_w ? (s->in_w + s->pad_left - ext_w) / s->stride_w + 1 : 0;
    j.ow_hi = QE_MIN(j.ow_hi, s->out_w);
    j.prm = (qe_dw_params){.channels = C, .npairs = QE_DIV_UP(T, 2), .w = w, .init = init,
                           .out = &o, .ldy = ldy};
    /* About 64K multiply-adds per task, but at least 4 tasks per thread when there are rows. */
    const size_t row_work = s->out_w * C * T + 1;
    const size_t threads = (size_t)qe_effective_threads();
    size_t rpt = QE_MAX(1, (64 * 1024) / row_work);
    rpt = QE_MIN(rpt, QE_MAX(1, j.rows / (4 * threads)));
    j.rows_per_task = rpt;
    qe_parallel_for(QE_DIV_UP(j.rows, rpt), dw_task, &j);
    return QE_OK;
}
