/*
 * qgemm.c -- the GEMM entry points: the registry of kernel families, packing with column sums,
 * and the threaded driver that splits C into tasks and runs the packed object's family on each.
 */
#include <stdlib.h>
#include <string.h>

#include "../eltwise/eltwise.h"
#include "qgemm.h"

/* The kernel family of each ISA (NULL: this path falls back to the reference). */
static const qe_gemm_ukernel *const g_ukernels[QE_ISA_COUNT] = {
    [QE_ISA_REF] = &qe_gemm_ukernel_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = &qe_gemm_ukernel_avx2,
    [QE_ISA_AVX512VNNI] = &qe_gemm_ukernel_avx512vnni,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = &qe_gemm_ukernel_neon,
    [QE_ISA_NEON_DOTPROD] = &qe_gemm_ukernel_neondot,
#endif
};

/* Smallest task worth handing to another thread, in estimated cycles (about 2 us): below it
 * the hand-off costs more than it saves. */
enum { QE_GEMM_MIN_TASK_CYCLES = 8192 };

/* Column sums and the family's layout of B into p->data (p->data_bytes, zeroed here) and
 * p->col_sums [N], both provided by the caller. */
static void gemm_pack_into(qe_gemm_packed *p, const void *b, ptrdiff_t stride_k,
                           ptrdiff_t stride_n, int b_is_u8) {
    const size_t K = p->K, N = p->N;
    memset(p->data, 0, p->data_bytes);
    const uint8_t *src = b;
    const int xor128 = b_is_u8 != 0;
    const uint8_t flip = xor128 ? 0x80 : 0x00; /* (int8_t)(v ^ 0x80) == v - 128 */
    int32_t *restrict sums = p->col_sums;
    memset(sums, 0, N * sizeof(int32_t));
    if (stride_k == 1 && stride_n != 1) { /* transposed B: each column's K bytes contiguous */
        for (size_t n = 0; n < N; n++) {
            const uint8_t *col = src + (ptrdiff_t)n * stride_n;
            int32_t acc = 0;
            for (size_t k = 0; k < K; k++) acc += (int8_t)(col[k] ^ flip);
            sums[n] = acc;
        }
    } else {
        for (size_t k = 0; k < K; k++) { /* row by row: sequential for the usual row-major B */
            const uint8_t *row = src + (ptrdiff_t)k * stride_k;
            if (stride_n == 1)
                for (size_t n = 0; n < N; n++) sums[n] += (int8_t)(row[n] ^ flip);
            else
                for (size_t n = 0; n < N; n++)
                    sums[n] += (int8_t)(row[(ptrdiff_t)n * stride_n] ^ flip);
        }
    }
    p->uk->pack(p, src, stride_k, stride_n, xor128);
}

qe_gemm_packed *qe_gemm_pack(const void *b, size_t K, size_t N, ptrdiff_t stride_k,
                             ptrdiff_t stride_n, int b_is_u8, qe_isa isa) {
    if (!b || K == 0 || N == 0 || K > QE_MAX_K || (int)isa < 0 || isa >= QE_ISA_COUNT ||
        !qe_isa_available(isa))
        return NULL;
    qe_gemm_packed *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->K = K;
    p->N = N;
    p->isa = isa;
    p->uk = QE_PICK(g_ukernels, isa);
    p->data_bytes = p->uk->packed_bytes(p->uk, K, N);
    p->data = qe_aligned_alloc(p->data_bytes);
    p->col_sums = qe_aligned_alloc(N * sizeof(int32_t));
    if (!p->data || !p->col_sums) {
        qe_gemm_packed_free(p);
        return NULL;
    }
    gemm_pack_into(p, b, stride_k, stride_n, b_is_u8);
    return p;
}

void qe_gemm_packed_set_next(qe_gemm_packed *p, const qe_gemm_packed *next) {
    if (!p) return;
    p->next_data = next ? next->data : NULL;
    p->next_bytes = next ? next->data_bytes : 0;
}
const void *qe_gemm_packed_next_data(const qe_gemm_packed *p) { return p->next_data; }
const void *qe_gemm_packed_data(const qe_gemm_packed *p) { return p->data; }

void qe_gemm_packed_free(qe_gemm_packed *p) {
    if (!p) return;
    qe_aligned_free(p->data);
    qe_aligned_free(p->col_sums);
    free(p);
}

size_t qe_gemm_packed_k(const qe_gemm_packed *p) { return p->K; }
size_t qe_gemm_packed_n(const qe_gemm_packed *p) { return p->N; }
size_t qe_gemm_packed_nbytes(const qe_gemm_packed *p) {
    return sizeof(*p) + p->data_bytes + p->N * sizeof(int32_t);
}
qe_isa qe_gemm_packed_isa(const qe_gemm_packed *p) { return p->isa; }
void qe_gemm_packed_tile_shape(const qe_gemm_packed *p, size_t *mr, size_t *nr, size_t *kr) {
    *mr = p->uk->mr;
    *nr = p->uk->nr;
    *kr = p->uk->kr;
}
const int32_t *qe_gemm_packed_col_sums(const qe_gemm_packed *p) { return p->col_sums; }

void qe_gemm_u8s8_serial(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out, size_t n_begin,
                         size_t n_end, void *c, size_t ldc) {
    /* lda may be below K: rows may overlap (a convolution's column strips, conv_colstrip.c) */
    QE_ASSERT(b && a && out && c && lda > 0 && n_begin < n_end && n_end <= b->N);
    b->uk->run(b, M, a, lda, a_zp, b_zp, out, n_begin, n_end, c, ldc);
}

typedef struct {
    const qe_gemm_packed *b;
    size_t M, lda, ldc, tiles_n, tile_m, tile_n;
    const uint8_t *a;
    int32_t a_zp;
    const int32_t *b_zp;
    const qe_output *out;
    void *c;
    const uint8_t *add_b; /* NULL, or the row vector of a fused Add (qe_gemm_u8s8_add) */
    const qe_binary_params *add_p;
} gemm_job;

static void gemm_task(void *ctx, size_t task, int thread_index) {
    const gemm_job *j = ctx;
    const size_t tm = qe_udiv(task, j->tiles_n), tn = task - tm * j->tiles_n;
    const size_t m0 = tm * j->tile_m, rows = QE_MIN(j->tile_m, j->M - m0);
    const size_t n0 = tn * j->tile_n, n1 = QE_MIN(n0 + j->tile_n, j->b->N);
    const size_t es = qe_output_elem_size(j->out->kind);
    char *c = (char *)j->c + m0 * j->ldc * es;
    j->b->uk->run(j->b, rows, j->a + m0 * j->lda, j->lda, j->a_zp, j->b_zp, j->out, n0, n1, c,
                  j->ldc);
    if (j->add_b) qe_add_rows_inplace(rows, n1 - n0, (uint8_t *)c + n0, j->ldc, j->add_b + n0,
                                      j->add_p);
}

/* Task grid for `threads` threads: one task per thread, of near-equal size. Estimated cost:
 * the multiplies at ~64 per cycle plus the stream of packed B at ~32 bytes per cycle (which
 * dominates when M is small); no task is smaller than QE_GEMM_MIN_TASK_CYCLES. Rows are split
 * first (each task then streams B through its own L2 once and reuses it over many rows);
 * columns when there are too few row strips, as for M = 1, so each thread streams its own
 * part of B. More, smaller tasks measured slower on 128^3..2048^3 (2 threads): the caller
 * claims extra tasks before the worker is up, and the last task sets the pace. Task edges fall
 * on the family's tile (mr rows, nr columns); since each output is computed wholly by one task
 * with exact integer sums, the result is the same for every grid. */
static void gemm_partition(const qe_gemm_ukernel *uk, size_t M, size_t N, size_t K,
                           int threads, size_t *tile_m, size_t *tile_n) {
    const size_t strips = QE_DIV_UP(M, uk->mr), panels = QE_DIV_UP(N, uk->nr);
    const double cycles = (double)N * (double)K * ((double)M / 64.0 + 1.0 / 32.0);
    const size_t affordable = (size_t)QE_MAX(1.0, cycles / QE_GEMM_MIN_TASK_CYCLES);
    const size_t want = QE_MIN((size_t)QE_MAX(threads, 1), affordable);
    const size_t tasks_m = QE_MIN(strips, want);
    const size_t tasks_n = QE_MIN(panels, QE_DIV_UP(want, tasks_m));
    /* A family whose driver evens out a block's remainder with short strips
     * (qe_gemm_ukernel.short_strips) takes row blocks of equal height: M = 49 on 2 threads
     * runs 25 + 24 rows, not 5 strips (30 rows) + 19 (`python benchmarks/gemm_table.py
     * --shapes 49x512x4608`, 2 threads: 739 -> 882 GOPS). */
    *tile_m = uk->short_strips ? QE_DIV_UP(M, tasks_m) : QE_DIV_UP(strips, tasks_m) * uk->mr;
    *tile_n = QE_DIV_UP(panels, tasks_n) * uk->nr;
}

int qe_gemm_u8s8(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda, int32_t a_zp,
                 const int32_t *b_zp, const qe_output *out, void *c, size_t ldc) {
    return qe_gemm_u8s8_add(b, M, a, lda, a_zp, b_zp, out, NULL, NULL, c, ldc);
}

int qe_gemm_u8s8_add(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                     int32_t a_zp, const int32_t *b_zp, const qe_output *out,
                     const uint8_t *add_b, const qe_binary_params *add_p, void *c, size_t ldc) {
    if (!b || !a || !out || !c || lda < b->K || ldc < b->N || a_zp < 0 || a_zp > 255 ||
        (add_b && (out->kind != QE_OUT_U8 || !qe_binary_params_ok(add_p, 0))))
        return QE_ERR_ARG;
    if (M == 0) return QE_OK;
    gemm_job j = {.b = b, .M = M, .lda = lda, .ldc = ldc, .a = a, .a_zp = a_zp, .b_zp = b_zp,
                  .out = out, .c = c, .add_b = add_b, .add_p = add_p};
    gemm_partition(b->uk, M, b->N, b->K, qe_effective_threads(), &j.tile_m, &j.tile_n);
    j.tiles_n = QE_DIV_UP(b->N, j.tile_n);
    const size_t tiles_m = QE_DIV_UP(M, j.tile_m);
    qe_parallel_for(tiles_m * j.tiles_n, gemm_task, &j);
    return QE_OK;
}

/* ---- MatMul of two activations ------------------------------------------------------------
 * Each batch matrix packs its B (uint8, shifted by -128 as qe_gemm_pack with b_is_u8) into the
 * scratch of the thread that runs it, then runs the GEMM. With at least as many matrices as
 * threads, whole matrices are the tasks (attention heads: small GEMMs that would not pay for
 * a split); otherwise each matrix runs the threaded GEMM in turn. Every output is computed
 * wholly by one GEMM tile, so the result does not depend on the split. */
typedef struct {
    const qe_matmul_shape *s;
    const uint8_t *a, *b;
    int32_t a_zp, b_zp;
    const qe_output *out;
    char *c;
    const qe_gemm_ukernel *uk;
    qe_isa isa;
    int threaded;  /* each matrix runs the threaded GEMM (else a task runs one serially) */
} matmul_job;

static int matmul_one(const matmul_job *j, size_t i) {
    const qe_matmul_shape *s = j->s;
    const size_t data_bytes = j->uk->packed_bytes(j->uk, s->K, s->N);
    const size_t data_room = QE_ROUND_UP(data_bytes, 64), sums_room = QE_ROUND_UP(s->N * 4, 64);
    char *buf = qe_scratch(3, data_room + 2 * sums_room);
    if (!buf) return QE_ERR_NOMEM;
    qe_gemm_packed p = {.K = s->K, .N = s->N, .isa = j->isa, .uk = j->uk, .data = buf,
                        .data_bytes = data_bytes, .col_sums = (int32_t *)(buf + data_room)};
    int32_t *bzp = NULL; /* B's zero point after the shift; none when it is 0 */
    if (j->b_zp != 128) {
        bzp = (int32_t *)(buf + data_room + sums_room);
        for (size_t n = 0; n < s->N; n++) bzp[n] = j->b_zp - 128;
    }
    const ptrdiff_t ldb = (ptrdiff_t)s->ldb; /* B[k][n] at k * stride_k + n * stride_n */
    gemm_pack_into(&p, j->b + i * s->b_stride, s->b_trans ? 1 : ldb, s->b_trans ? ldb : 1, 1);
    const uint8_t *a = j->a + i * s->a_stride;
    char *c = j->c + i * s->c_stride * qe_output_elem_size(j->out->kind);
    if (j->threaded) return qe_gemm_u8s8(&p, s->M, a, s->lda, j->a_zp, bzp, j->out, c, s->ldc);
    qe_gemm_u8s8_serial(&p, s->M, a, s->lda, j->a_zp, bzp, j->out, 0, s->N, c, s->ldc);
    return QE_OK;
}

static void matmul_task(void *ctx, size_t task, int thread_index) {
    const int rc = matmul_one(ctx, task);
    QE_ASSERT(rc == QE_OK); /* scratch allocation only */
}

int qe_matmul_u8u8(const qe_matmul_shape *s, const uint8_t *a, int32_t a_zp, const uint8_t *b,
                   int32_t b_zp, const qe_output *out, void *c, qe_isa isa) {
    if (!s || !a || !b || !out || !c || s->K == 0 || s->N == 0 || s->K > QE_MAX_K ||
        s->lda < s->K || s->ldb < (s->b_trans ? s->K : s->N) || s->ldc < s->N || a_zp < 0 ||
        a_zp > 255 || b_zp < 0 || b_zp > 255 || (int)isa < 0 || isa >= QE_ISA_COUNT ||
        !qe_isa_available(isa))
        return QE_ERR_ARG;
    if (s->batch == 0 || s->M == 0) return QE_OK;
    matmul_job j = {.s = s, .a = a, .b = b, .a_zp = a_zp, .b_zp = b_zp, .out = out, .c = c,
                    .uk = QE_PICK(g_ukernels, isa), .isa = isa};
    /* gemm_partition's estimate of the whole job, plus packing B */
    const double cycles = (double)s->batch * (double)s->N * (double)s->K *
                          ((double)s->M / 64.0 + 1.0 / 32.0 + 1.0 / 16.0);
    const int threads = qe_threads_for_cycles(cycles);
    j.threaded = threads > 1 && s->batch < (size_t)threads;
    if (!j.threaded) {
        qe_parallel_for_threads(s->batch, threads, matmul_task, &j);
        return QE_OK;
    }
    for (size_t i = 0; i < s->batch; i++) {
        const int rc = matmul_one(&j, i);
        if (rc != QE_OK) return rc;
    }
    return QE_OK;
}
