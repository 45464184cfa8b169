/*
 * qgemm_driver.c -- the single-threaded blocked GEMM of the SIMD families (qe_gemm_run_blocked).
 *
 * Cache blocking, GotoBLAS/BLIS style, for prepacked B:
 *   for each n-block of panels (its packed B, K x NC, sized to stay in L2)
 *     for each strip of mr rows of A (mr x K, stays in L1 while the panels go by; a
 *     remainder of 1-3 rows is spread over strips of mr - 1, see short_strips_from)
 *       for each panel of nr columns: one register tile over all of K, output pipeline fused.
 * B is streamed from L2 once per strip; A is read in place (or prepared once per strip by the
 * family's prep_a). K is not split: a tile's accumulators stay in registers from the first k
 * to the output pipeline, so no partial sums round-trip through memory.
 *
 * Everything that depends only on the column (bias, a_zp * colsum, scales, b_zp) is folded
 * once per run into per-column arrays (qe_gemm_epilogue), so tiles do only per-element work.
 */
#include <string.h>

#include "qgemm.h"

/* Packed B bytes one n-block keeps in L2 (a quarter of a 1 MiB L2: room for A, C and the
 * the next panel; 128 KiB to 768 KiB measured within noise of each other). */
enum { QE_GEMM_L2_BLOCK = 256 * 1024 };
/* The next n-block is prefetched by the strips of the current one when each strip's share is
 * at least this (few strips: small M, where B is used a few times and its first strip would
 * wait on DRAM); with many strips the first strip's wait is spread over all of them. */
enum { QE_GEMM_PREFETCH_SLICE = 8 * 1024 };
/* The last n-block prefetches this much of the next GEMM's B (qe_gemm_packed.next_data), in shares
 * of at least QE_GEMM_PREFETCH_NEXT_SLICE per strip: the next layer's first block, which no
 * block of its own prefetches (ResNet-18, 1 thread, `qengine bench resnet18 --profile`: steps
 * 8.69-8.74 -> 8.60-8.61 ms; the late layers' first panels had come from DRAM). */
enum { QE_GEMM_PREFETCH_NEXT_BYTES = QE_GEMM_L2_BLOCK, QE_GEMM_PREFETCH_NEXT_SLICE = 1024 };

/* Panels per n-block: as many packed panels of B as QE_GEMM_L2_BLOCK holds (at least one). */
static size_t panels_per_block(const qe_gemm_ukernel *uk, size_t K) {
    const size_t panel_bytes = QE_ROUND_UP(K, uk->k_pad) * uk->nr * uk->b_elem;
    return QE_MAX(1, qe_udiv(QE_GEMM_L2_BLOCK, panel_bytes));
}

/* Per-run column data for panels [j0, j1) into `buf`; returns the bytes used. */
static size_t fill_columns(const qe_gemm_packed *p, const qe_output *out, int32_t a_zp,
                           const int32_t *b_zp, size_t n_begin, size_t n_end, size_t base,
                           size_t span, qe_gemm_epilogue *ep, char *buf) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t vec = QE_ROUND_UP(span * sizeof(int32_t), 64);
    int32_t *colterm = (int32_t *)buf;
    float *scale = (float *)(buf + vec);
    float *fbias = (out->kind == QE_OUT_F32 && out->fbias) ? (float *)(buf + 2 * vec) : NULL;
    int32_t *nbzp = b_zp ? (int32_t *)(buf + 3 * vec) : NULL;
    /* the tiles read whole vectors: lanes outside [n_begin, n_end) of the arrays in use are 0 */
    const size_t lo = (n_begin - base) * sizeof(int32_t), hi = (n_end - base) * sizeof(int32_t);
    char *const in_use[4] = {(char *)colterm, (char *)scale, (char *)fbias, (char *)nbzp};
    for (int i = 0; i < 4; i++) {
        if (!in_use[i]) continue;
        memset(in_use[i], 0, lo);
        memset(in_use[i] + hi, 0, vec - hi);
    }
    /* one simple loop per array, so that each vectorizes (this runs per task, and a loop
     * over columns that tested every case per column cost 1-2% of an OCR run) */
    const int32_t a_mult = uk->a_bias - a_zp;
    const size_t n = n_end - n_begin, i0 = n_begin - base;
    const int32_t *sums = p->col_sums + n_begin;
    int32_t *ct = colterm + i0;
    if (out->bias) {
        const int32_t *bias = out->bias + n_begin;
        for (size_t i = 0; i < n; i++) ct[i] = qe_add_wrap(qe_mul_wrap(a_mult, sums[i]), bias[i]);
    } else {
        for (size_t i = 0; i < n; i++) ct[i] = qe_mul_wrap(a_mult, sums[i]);
    }
    float *sc = scale + i0;
    if (out->kind == QE_OUT_I32)
        memset(sc, 0, n * sizeof(float));
    else if (out->per_channel)
        memcpy(sc, out->scale + n_begin, n * sizeof(float));
    else
        for (size_t i = 0; i < n; i++) sc[i] = out->scale[0];
    int below = 1; /* every scale < 1 (a NaN is not) */
    for (size_t i = 0; i < n; i++) below &= sc[i] < 1.0f;
    const int hi_free = out->kind == QE_OUT_U8 && out->qmax == 255 && below;
    if (fbias) memcpy(fbias + i0, out->fbias + n_begin, n * sizeof(float));
    if (nbzp)
        for (size_t i = 0; i < n; i++) nbzp[i0 + i] = -b_zp[n_begin + i];
    ep->kind = out->kind;
    ep->colterm = colterm;
    ep->scale = scale;
    ep->fbias = fbias;
    ep->nbzp = nbzp;
    ep->zp = out->zero_point;
    ep->lo = (float)(out->qmin - out->zero_point);
    ep->hi = (float)(out->qmax - out->zero_point);
    ep->hi_free = hi_free;
    return 4 * vec;
}

/* rowterm[m] = sum_k a[m][k] - K * a_zp: the factor of -b_zp[n] (only with asymmetric B). */
static void fill_rows(const uint8_t *a, size_t lda, size_t M, size_t K, int32_t a_zp,
                      int32_t *rowterm) {
    for (size_t m = 0; m < M; m++) {
        const uint8_t *row = a + m * lda;
        uint32_t s = 0; /* <= 255 * QE_MAX_K, no overflow */
        for (size_t k = 0; k < K; k++) s += row[k];
        rowterm[m] = (int32_t)s - (int32_t)K * a_zp;
    }
}

/* Ask for `rows` rows of A (K bytes each) ahead of use: the next strip's rows arrive from L3
 * while the current strip's tiles compute, instead of stalling its first tile (or prep_a). */
static void prefetch_rows(const uint8_t *a, size_t lda, size_t rows, size_t K) {
    if (lda < K) { /* overlapping rows (conv_colstrip.c): one span, each line once */
        for (size_t k = 0; k < (rows - 1) * lda + K; k += 64) __builtin_prefetch(a + k, 0, 3);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < K; k += 64) __builtin_prefetch(a + r * lda + k, 0, 3);
}

/* The next n-block after panels [.., jb_end) of [j0, j1), if any -- after the last one, the
 * start of the next GEMM's B (the hint p->next_data) --: where its packed B starts, and (in
 * *slice) the share of it each of `strips` strips prefetches; NULL when the shares would be too
 * small to matter. */
static const char *next_block(const qe_gemm_packed *p, size_t jb_end, size_t j1, size_t block,
                              size_t strips, size_t *slice) {
    const qe_gemm_ukernel *uk = p->uk;
    if (jb_end >= j1) {
        if (!p->next_data) return NULL;
        *slice = QE_DIV_UP(QE_MIN(p->next_bytes, QE_GEMM_PREFETCH_NEXT_BYTES), strips);
        if (*slice < QE_GEMM_PREFETCH_NEXT_SLICE) return NULL;
        /* A next B larger than the prefetch is split by columns over the threads (late layers:
         * few rows, a wide B), each thread starting at its share: participant t of T takes
         * the bytes from t/T of it on, not the first ones, which only participant 0 reads
         * first (ResNet-18, 2 threads: the worker's first panel of each late layer had come
         * cold). */
        int t, threads;
        qe_job_participant(&t, &threads);
        size_t at = 0;
        if (p->next_bytes > QE_GEMM_PREFETCH_NEXT_BYTES && threads > 1)
            at = QE_MIN(p->next_bytes / (size_t)threads * (size_t)t,
                        p->next_bytes - QE_GEMM_PREFETCH_NEXT_BYTES) / 64 * 64;
        return (const char *)p->next_data + at;
    }
    const size_t lo = qe_gemm_panel_offset(uk, p->K, jb_end);
    const size_t hi = qe_gemm_panel_offset(uk, p->K, QE_MIN(j1, jb_end + block));
    *slice = QE_DIV_UP(hi - lo, strips);
    return *slice >= QE_GEMM_PREFETCH_SLICE ? (const char *)p->data + lo : NULL;
}

/* Where a GEMM of M rows starts its short strips: strips of mr rows up to the returned row,
 * of mr - 1 rows from it on. A remainder of 1-3 rows would be a tile of that height across
 * all of B, whose few multiplies per B load leave it waiting on L2: M = 49 (ResNet-18's last
 * stage at batch 1) ran at 96.4% of the peak where M = 48 ran at 98.6% (`python
 * benchmarks/gemm_table.py --shapes 48x512x4608 49x512x4608 --threads 1 --clock cpu`; 98.2%
 * for 49 rows with short strips). mr - r strips of mr - 1 rows take the rows of the last mr - 1 - r
 * full strips and the remainder r instead: 49 = 4 x 6 + 5 x 5 (the 5-row tile computes at the
 * 6-row tile's rate). A remainder of 4 or more rows is left as it is (within noise). Only
 * families whose (mr - 1)-row tile keeps up (qe_gemm_ukernel.short_strips) take short strips. */
static size_t short_strips_from(const qe_gemm_ukernel *uk, size_t M) {
    const size_t mr = uk->mr, r = qe_umod(M, mr), full = qe_udiv(M, mr);
    if (!uk->short_strips || mr < 5 || r == 0 || r > 3 || full < mr - 1 - r) return M;
    return (full - (mr - 1 - r)) * mr;
}

/* How many strips cover M rows with short strips from short_from. */
static inline size_t strip_count(size_t M, size_t mr, size_t short_from) {
    return QE_DIV_UP(short_from, mr) + (short_from < M ? qe_udiv(M - short_from, mr - 1) : 0);
}

/* The rows of the strip at row m0 (a strip boundary) of M, short strips from `short_from`. */
static inline size_t strip_rows(size_t M, size_t m0, size_t mr, size_t short_from) {
    return m0 >= short_from ? mr - 1 : QE_MIN(mr, M - m0);
}

/* How a strip walks the panels of B, found once per call: the panels' stride and tile widths
 * divide by the ukernel's run-time sizes, and 64-bit divisions per panel or per strip were
 * half of this driver's perf samples on small-K GEMMs (the OCR model's 1x1 convolutions). */
typedef struct {
    size_t panel_bytes; /* from one panel to the next */
    size_t whole;       /* panels [0, whole) are nr wide */
    size_t whole_nv;    /* their tile width in col_align units */
    size_t last_nv;     /* the tile width of panel `whole` (a narrower last panel), if any */
} panel_walk;

static panel_walk panel_walk_of(const qe_gemm_packed *p) {
    const qe_gemm_ukernel *uk = p->uk;
    panel_walk w = {.panel_bytes = qe_gemm_panel_offset(uk, p->K, 1),
                    .whole = qe_udiv(p->N, uk->nr),
                    .whole_nv = qe_udiv(uk->nr, uk->col_align)};
    w.last_nv = w.whole * uk->nr < p->N
                    ? qe_udiv(qe_gemm_panel_width(uk, p->N, w.whole), uk->col_align)
                    : 0;
    return w;
}

/* One strip (t->rows rows of A as set in t, C from row `c` on) across panels [jb, jb_end),
 * columns [n_begin, n_end) stored; segmented tiles when t->seg is set. */
static inline void run_strip(const qe_gemm_packed *p, const panel_walk *pw, qe_gemm_tile *t,
                             size_t jb, size_t jb_end, size_t n_begin, size_t n_end, size_t base,
                             char *c, size_t es) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t nr = uk->nr;
    const qe_gemm_tile_fn *row_tiles = t->seg ? NULL : uk->tiles + (t->rows - 1) * uk->nv_max;
    for (size_t j = jb; j < jb_end; j++) {
        const size_t pbase = j * nr, nv = j < pw->whole ? pw->whole_nv : pw->last_nv;
        t->b = (const char *)p->data + j * pw->panel_bytes;
        t->col_lo = QE_MAX(n_begin, pbase) - pbase;
        t->col_hi = QE_MIN(n_end, pbase + nv * uk->col_align) - pbase;
        t->ep_col = pbase - base;
        t->c = c + pbase * es;
        if (t->seg)
            uk->seg_tiles[nv - 1](t);
        else
            row_tiles[nv - 1](t);
    }
}

void qe_gemm_run_blocked(const qe_gemm_packed *p, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out, size_t n_begin,
                         size_t n_end, void *c, size_t ldc) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t K = p->K, nr = uk->nr, mr = uk->mr;
    QE_ASSERT(uk->tiles && n_begin < n_end && n_end <= p->N && M > 0);
    const size_t j0 = qe_udiv(n_begin, nr), j1 = QE_DIV_UP(n_end, nr);
    const size_t base = j0 * nr, span = (j1 - j0) * nr;
    const size_t es = qe_output_elem_size(out->kind);

    /* slot 0: the per-run column arrays and row terms; slot 1: prepared A of one strip */
    const size_t col_bytes = 4 * QE_ROUND_UP(span * sizeof(int32_t), 64);
    char *buf = qe_scratch(0, col_bytes + (b_zp ? M * sizeof(int32_t) : 0));
    QE_ASSERT(buf != NULL);
    qe_gemm_epilogue ep;
    fill_columns(p, out, a_zp, b_zp, n_begin, n_end, base, span, &ep, buf);
    ep.rowterm = NULL;
    if (b_zp) {
        int32_t *rowterm = (int32_t *)(buf + col_bytes);
        fill_rows(a, lda, M, K, a_zp, rowterm);
        ep.rowterm = rowterm;
    }
    void *prep = NULL;
    if (uk->prep_a) {
        prep = qe_scratch(1, mr * (K + 64) * uk->prep_a_elem); /* rows padded by < 64 */
        QE_ASSERT(prep != NULL);
    }

    const size_t short_from = short_strips_from(uk, M);
    const size_t block = panels_per_block(uk, K);
    const panel_walk pw = panel_walk_of(p);
    const size_t strips = strip_count(M, mr, short_from);
    qe_gemm_tile t = {.K = K, .ep = &ep, .ldc = ldc};
    for (size_t jb = j0; jb < j1; jb += block) {
        const size_t jb_end = QE_MIN(j1, jb + block);
        size_t slice = 0, si = 0;
        const char *next = next_block(p, jb_end, j1, block, strips, &slice);
        for (size_t m0 = 0; m0 < M; m0 += t.rows, si++) {
            t.pf = next ? next + si * slice : NULL;
            t.rows = strip_rows(M, m0, mr, short_from);
            t.row0 = m0;
            t.a = a + m0 * lda;
            t.lda = lda;
            const size_t m1 = m0 + t.rows;
            if (m1 < M)
                prefetch_rows(a + m1 * lda, lda, strip_rows(M, m1, mr, short_from), K);
            if (prep) {
                t.lda = uk->prep_a(t.a, lda, t.rows, K, prep);
                t.a = prep;
            }
            run_strip(p, &pw, &t, jb, jb_end, n_begin, n_end, base, (char *)c + m0 * ldc * es, es);
        }
    }
}

/* ---- segmented A: a convolution's interior strips read in place ---------------------------- */
int qe_gemm_segments_ok(const qe_gemm_packed *p, size_t seg_len, size_t n_begin, size_t n_end) {
    const qe_gemm_ukernel *uk = p->uk;
    /* whole panels, the last of which may be narrow (n_end = N) */
    return uk->seg_tiles != NULL && uk->prep_a == NULL && seg_len > 0 && seg_len % uk->kr == 0 &&
           p->K % seg_len == 0 && n_begin % uk->nr == 0 &&
           (n_end % uk->nr == 0 || n_end == p->N) && n_begin < n_end && n_end <= p->N;
}

void qe_gemm_run_segmented(const qe_gemm_packed *p, const qe_gemm_seg_a *sa, int32_t a_zp,
                           const qe_output *out, size_t n_begin, size_t n_end, void *c,
                           size_t ldc) {
    const qe_gemm_ukernel *uk = p->uk;
    const size_t K = p->K, nr = uk->nr, mr = uk->mr;
    QE_ASSERT(qe_gemm_segments_ok(p, sa->seg_len, n_begin, n_end) &&
              sa->nseg * sa->seg_len == K && sa->strips + sa->rows > 0);
    const size_t j0 = qe_udiv(n_begin, nr), j1 = QE_DIV_UP(n_end, nr);
    const size_t base = j0 * nr, span = (j1 - j0) * nr;
    const size_t es = qe_output_elem_size(out->kind);
    char *buf = qe_scratch(0, 4 * QE_ROUND_UP(span * sizeof(int32_t), 64));
    QE_ASSERT(buf != NULL);
    qe_gemm_epilogue ep;
    fill_columns(p, out, a_zp, NULL, n_begin, n_end, base, span, &ep, buf);
    ep.rowterm = NULL;
    /* Both kinds of strips go through an n-block before the next one starts: the block stays
     * in L2 for all of them (B of late layers is larger than L2; two passes read it twice). */
    const size_t short_from = short_strips_from(uk, sa->rows);
    const size_t block = panels_per_block(uk, K);
    const panel_walk pw = panel_walk_of(p);
    const size_t strips = sa->strips + strip_count(sa->rows, mr, short_from);
    qe_gemm_tile t = {.K = K, .ep = &ep};
    for (size_t jb = j0; jb < j1; jb += block) {
        const size_t jb_end = QE_MIN(j1, jb + block);
        size_t slice = 0, si = 0;
        const char *next = next_block(p, jb_end, j1, block, strips, &slice);
        t.rows = mr;
        t.lda = sa->seg_lda;
        t.ldc = ldc;
        t.nseg = sa->nseg;
        t.seg_len = sa->seg_len;
        for (size_t i = 0; i < sa->strips; i++, si++) {
            t.pf = next ? next + si * slice : NULL;
            t.seg = sa->seg + i * sa->nseg;
            t.a = t.seg[0];
            run_strip(p, &pw, &t, jb, jb_end, n_begin, n_end, base,
                      (char *)c + sa->row0[i] * ldc * es, es);
        }
        t.seg = NULL;
        t.lda = sa->lda;
        t.ldc = sa->ldc_rows;
        for (size_t m0 = 0; m0 < sa->rows; m0 += t.rows, si++) {
            t.pf = next ? next + si * slice : NULL;
            t.rows = strip_rows(sa->rows, m0, mr, short_from);
            t.row0 = m0;
            t.a = sa->a + m0 * sa->lda;
            run_strip(p, &pw, &t, jb, jb_end, n_begin, n_end, base,
                      (char *)sa->c_rows + m0 * sa->ldc_rows * es, es);
        }
    }
}
