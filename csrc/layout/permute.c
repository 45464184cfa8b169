/*
 * permute.c -- copy a strided view into a contiguous buffer: the relayouts of the compiled
 * model (NCHW <-> NHWC at its borders) and Transposes that cannot be relabelled.
 *
 * dst is contiguous with `shape`; dst element (i_0, ..., i_{n-1}) comes from src at byte offset
 * sum_k i_k * src_strides[k]. Dims are coalesced first (adjacent dims contiguous in both
 * buffers become one), then rows whose source is contiguous are memcpy'd and the rest gathered
 * element by element. Outer rows are split over the thread pool for large copies. A byte
 * image's planes -> pixels (NCHW -> NHWC with few channels) take the per-ISA interleave
 * (interleave.h) instead, and other transposes of the two innermost dims go tile by tile: bytes
 * from pixels to planes (NHWC -> NCHW) by the per-ISA block transpose (transpose.h).
 * Pure data movement: every path writes the same bytes.
 */
#include <string.h>

#include "../qe_internal.h"
#include "interleave.h"
#include "transpose.h"

static const qe_interleave_u8_fn g_interleave[QE_ISA_COUNT] = {
    [QE_ISA_REF] = qe_interleave_u8_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_interleave_u8__avx2,
    [QE_ISA_AVX512VNNI] = qe_interleave_u8__avx512vnni,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = qe_interleave_u8__neon,
    [QE_ISA_NEON_DOTPROD] = qe_interleave_u8__neon,
#endif
};

static const qe_transpose_u8_fn g_transpose[QE_ISA_COUNT] = {
    [QE_ISA_REF] = qe_transpose_u8_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_transpose_u8_16x32__avx2,
    [QE_ISA_AVX512VNNI] = qe_transpose_u8_16x64__avx512vnni,
#endif
};

static const qe_transpose_x32_fn g_transpose_x32[QE_ISA_COUNT] = {
    [QE_ISA_REF] = qe_transpose_x32_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_transpose_x32_8x8__avx2,
    [QE_ISA_AVX512VNNI] = qe_transpose_x32_8x8__avx2,
#endif
};

enum { QE_PERMUTE_MAX_DIMS = 8 };

typedef struct {
    size_t ndim, elem, inner, inner2, rows;  /* inner2 > 1: a row is an inner2 x inner block */
    size_t shape[QE_PERMUTE_MAX_DIMS];
    ptrdiff_t stride[QE_PERMUTE_MAX_DIMS];
    const char *src;
    char *dst;
} permute_job;

/* Copy dst rows [r0, r1): a row is the innermost dim (`inner` elements), or, when that dim is
 * short (`inner2` > 1), the innermost two dims as a block. The source offset of the first row
 * comes from decomposing r0; later rows step an odometer (no division per row). */
static void permute_rows(const permute_job *j, size_t r0, size_t r1) {
    const size_t n = j->ndim - (j->inner2 > 1 ? 1 : 0), last = j->ndim - 1, elem = j->elem;
    const size_t inner = j->inner, inner2 = j->inner2 > 1 ? j->inner2 : 1;
    const ptrdiff_t s_in = j->stride[last], s_out2 = j->inner2 > 1 ? j->stride[last - 1] : 0;
    size_t idx[QE_PERMUTE_MAX_DIMS] = {0};
    ptrdiff_t off = 0;
    size_t rem = r0;
    const size_t outer = n - 1; /* dims [0, outer) index rows */
    for (size_t k = outer; k-- > 0;) {
        idx[k] = qe_umod(rem, j->shape[k]);
        rem = qe_udiv(rem, j->shape[k]);
        off += (ptrdiff_t)idx[k] * j->stride[k];
    }
    char *d = j->dst + r0 * inner2 * inner * elem;
    if (outer == 1 && inner2 == 1 && s_in == (ptrdiff_t)elem) {
        /* rows of contiguous runs, a fixed stride apart (a Split or Slice of channels): no
         * odometer (with it, 16-byte rows cost 10 cycles each) */
        for (size_t r = r0; r < r1; r++, off += j->stride[0], d += inner * elem)
            qe_copy_run((uint8_t *)d, (const uint8_t *)j->src + off, inner * elem);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        for (size_t b = 0; b < inner2; b++) {
            const char *s = j->src + off + (ptrdiff_t)b * s_out2;
            if (s_in == (ptrdiff_t)elem) {
                qe_copy_run((uint8_t *)d, (const uint8_t *)s, inner * elem);
            } else if (elem == 1) {
                for (size_t i = 0; i < inner; i++) d[i] = s[(ptrdiff_t)i * s_in];
            } else if (elem == 4) {
                for (size_t i = 0; i < inner; i++) memcpy(d + 4 * i, s + (ptrdiff_t)i * s_in, 4);
            } else {
                for (size_t i = 0; i < inner; i++)
                    memcpy(d + elem * i, s + (ptrdiff_t)i * s_in, elem);
            }
            d += inner * elem;
        }
        for (size_t k = outer; k-- > 0;) { /* odometer: the next row's source offset */
            off += j->stride[k];
            if (++idx[k] < j->shape[k]) break;
            off -= (ptrdiff_t)j->shape[k] * j->stride[k];
            idx[k] = 0;
        }
    }
}

enum { QE_PERMUTE_TASK_BYTES = 1 << 16 };
enum { QE_PERMUTE_BLOCK_BYTES = 4096 }; /* the largest block of short rows taken as one row */

static void permute_task(void *ctx, size_t task, int thread_index) {
    const permute_job *j = ctx;
    const size_t row_bytes = j->inner * QE_MAX(j->inner2, 1) * j->elem;
    const size_t per = QE_MAX(1, qe_udiv(QE_PERMUTE_TASK_BYTES, QE_MAX(row_bytes, 1)));
    const size_t r0 = task * per;
    permute_rows(j, r0, QE_MIN(j->rows, r0 + per));
}

/* ---- planes -> pixels: [outer][pixels][C] from [outer][C][pixels] bytes ---- */
typedef struct {
    qe_interleave_u8_fn fn;
    const uint8_t *src;
    uint8_t *dst;
    ptrdiff_t outer_stride, plane_stride;
    size_t pixels, channels, chunk, chunks;
} interleave_job;

static void interleave_task(void *ctx, size_t task, int thread_index) {
    const interleave_job *j = ctx;
    const size_t o = qe_udiv(task, j->chunks), p0 = (task - o * j->chunks) * j->chunk;
    const size_t n = QE_MIN(j->chunk, j->pixels - p0);
    j->fn(j->src + (ptrdiff_t)o * j->outer_stride + (ptrdiff_t)p0, (size_t)j->plane_stride, n,
          j->channels, j->dst + (o * j->pixels + p0) * j->channels);
}

/* The coalesced copy is [outer?][pixels][C] with pixels contiguous in src and C planes apart. */
static int run_interleave(const permute_job *j) {
    const size_t last = j->ndim - 1;
    if (j->elem != 1 || j->ndim < 2 || j->ndim > 3 ||
        j->shape[last] > QE_INTERLEAVE_MAX_CHANNELS || j->stride[last - 1] != 1 ||
        j->stride[last] < (ptrdiff_t)j->shape[last - 1])
        return 0;
    interleave_job ij = {.fn = QE_PICK(g_interleave, qe_get_isa()),
                         .src = (const uint8_t *)j->src,
                         .dst = (uint8_t *)j->dst,
                         .outer_stride = j->ndim == 3 ? j->stride[0] : 0,
                         .plane_stride = j->stride[last], .pixels = j->shape[last - 1],
                         .channels = j->shape[last]};
    const size_t outer = j->ndim == 3 ? j->shape[0] : 1;
    ij.chunk = QE_ROUND_UP(QE_MAX(1, qe_udiv(QE_PERMUTE_TASK_BYTES, ij.channels)), 64);
    ij.chunks = QE_DIV_UP(ij.pixels, ij.chunk);
    if (outer * ij.chunks == 1)
        interleave_task(&ij, 0, 0);
    else
        qe_parallel_for(outer * ij.chunks, interleave_task, &ij);
    return 1;
}

/* ---- transposes: the innermost dst dim gathers from far apart, the dim before it from near ----
 * Row by row, every dst row would stream the whole source again (C passes over an NHWC image
 * to write NCHW, each touching every cache line). Instead a task copies tiles of
 * QE_PERMUTE_TILE elements of the innermost dim for every row of the dim before it, so the
 * source lines of a tile are read from L1 after the first row. */
enum { QE_PERMUTE_TILE = 64 };

typedef struct {
    const permute_job *j;
    size_t tiles, tiles_per_task, tasks_per_outer;
    qe_transpose_u8_fn bytes; /* NULL, or the byte transpose of pixels -> planes (transpose.h) */
    qe_transpose_x32_fn words; /* NULL, or the same for 4-byte elements */
} tiled_job;

static void gather_run(char *d, const char *s, ptrdiff_t step, size_t n, size_t elem) {
    switch (elem) {
    case 1:
        for (size_t i = 0; i < n; i++) d[i] = s[(ptrdiff_t)i * step];
        break;
    case 2:
        for (size_t i = 0; i < n; i++) memcpy(d + 2 * i, s + (ptrdiff_t)i * step, 2);
        break;
    case 4:
        for (size_t i = 0; i < n; i++) memcpy(d + 4 * i, s + (ptrdiff_t)i * step, 4);
        break;
    default:
        for (size_t i = 0; i < n; i++) memcpy(d + 8 * i, s + (ptrdiff_t)i * step, 8);
    }
}

static void tiled_task(void *ctx, size_t task, int thread_index) {
    const tiled_job *t = ctx;
    const permute_job *j = t->j;
    const size_t last = j->ndim - 1, rows = j->shape[last - 1], inner = j->shape[last];
    const size_t elem = j->elem, o = qe_udiv(task, t->tasks_per_outer);
    const size_t tile0 = (task - o * t->tasks_per_outer) * t->tiles_per_task;
    const size_t tile1 = QE_MIN(t->tiles, tile0 + t->tiles_per_task);
    ptrdiff_t off = 0; /* source offset of outer index o: dims [0, last - 1) */
    for (size_t k = last - 1, rem = o; k-- > 0;) {
        off += (ptrdiff_t)qe_umod(rem, j->shape[k]) * j->stride[k];
        rem = qe_udiv(rem, j->shape[k]);
    }
    for (size_t tile = tile0; tile < tile1; tile++) {
        const size_t i0 = tile * QE_PERMUTE_TILE, n = QE_MIN(QE_PERMUTE_TILE, inner - i0);
        const char *s = j->src + off + (ptrdiff_t)i0 * j->stride[last];
        char *d = j->dst + (o * rows * inner + i0) * elem;
        if (t->bytes) {
            t->bytes((const uint8_t *)s, (size_t)j->stride[last], n, rows, (uint8_t *)d, inner);
            continue;
        }
        if (t->words) {
            t->words((const uint32_t *)s, (size_t)j->stride[last] / 4, n, rows, (uint32_t *)d,
                     inner);
            continue;
        }
        for (size_t r = 0; r < rows; r++)
            gather_run(d + r * inner * elem, s + (ptrdiff_t)r * j->stride[last - 1],
                       j->stride[last], n, elem);
    }
}

static ptrdiff_t qe_absdiff(ptrdiff_t v) { return v < 0 ? -v : v; }

/* A transpose of the two innermost dims (see above): run it tiled. */
static int run_tiled(const permute_job *j, size_t total) {
    const size_t last = j->ndim - 1;
    if (j->ndim < 2) return 0;
    /* bytes whose source rows are contiguous runs (NHWC -> NCHW, and NCHW -> NHWC past the
     * interleave's 16 channels): the per-ISA 16 x 16 block transpose, worth it from one block
     * of the innermost dim on (64 channels of 56 x 56 had taken the byte-at-a-time rows of
     * permute_rows, 2.4 GB/s); 4-byte elements so (a convolution's float output to NCHW) in
     * 8 x 8 blocks; the gather of other tiles from two tiles on */
    const int bytes = j->elem == 1 && j->stride[last - 1] == 1 && j->stride[last] > 0;
    const int words = j->elem == 4 && j->stride[last - 1] == 4 && j->stride[last] > 0 &&
                      j->stride[last] % 4 == 0 && ((uintptr_t)j->src | (uintptr_t)j->dst) % 4 == 0;
    const size_t least = bytes ? 16 : words ? 8 : 2 * QE_PERMUTE_TILE;
    if (j->shape[last] < least || j->shape[last - 1] < 2 ||
        j->stride[last] == (ptrdiff_t)j->elem ||
        qe_absdiff(j->stride[last - 1]) >= qe_absdiff(j->stride[last]))
        return 0;
    tiled_job t = {.j = j, .tiles = QE_DIV_UP(j->shape[last], QE_PERMUTE_TILE)};
    if (bytes) t.bytes = QE_PICK(g_transpose, qe_get_isa());
    if (words) t.words = QE_PICK(g_transpose_x32, qe_get_isa());
    const size_t tile_bytes = QE_PERMUTE_TILE * j->shape[last - 1] * j->elem;
    t.tiles_per_task = QE_MAX(1, qe_udiv(QE_PERMUTE_TASK_BYTES, tile_bytes));
    t.tasks_per_outer = QE_DIV_UP(t.tiles, t.tiles_per_task);
    const size_t tasks = qe_udiv(total, j->shape[last] * j->shape[last - 1]) * t.tasks_per_outer;
    if (tasks == 1)
        tiled_task(&t, 0, 0);
    else
        qe_parallel_for(tasks, tiled_task, &t);
    return 1;
}

int qe_permute_copy(size_t ndim, const size_t *shape, const ptrdiff_t *src_strides, size_t elem,
                    const void *src, void *dst) {
    if (!src || !dst || !shape || !src_strides || ndim == 0 || ndim > QE_PERMUTE_MAX_DIMS ||
        (elem != 1 && elem != 2 && elem != 4 && elem != 8))
        return QE_ERR_ARG;
    permute_job j = {.elem = elem, .src = src, .dst = dst};
    size_t total = 1;
    for (size_t k = 0; k < ndim; k++) total *= shape[k];
    if (total == 0) return QE_OK;
    /* drop size-1 dims, then merge dim k into k+1 when src is contiguous across them */
    for (size_t k = 0; k < ndim; k++) {
        if (shape[k] == 1) continue;
        if (j.ndim > 0 && j.stride[j.ndim - 1] == src_strides[k] * (ptrdiff_t)shape[k]) {
            j.shape[j.ndim - 1] *= shape[k];
            j.stride[j.ndim - 1] = src_strides[k];
        } else {
            j.shape[j.ndim] = shape[k];
            j.stride[j.ndim] = src_strides[k];
            j.ndim++;
        }
    }
    if (j.ndim == 0) {                  /* a single element */
        j.ndim = 1;
        j.shape[0] = 1;
        j.stride[0] = (ptrdiff_t)elem;
    }
    if (run_interleave(&j) || run_tiled(&j, total)) return QE_OK;
    j.inner = j.shape[j.ndim - 1];
    /* a short innermost dim (e.g. 3 channels): rows are blocks of the two innermost dims,
     * while a block stays small enough for the split over tasks (a Split of 16 of 32
     * channels is 6400 rows of 16 bytes, 6400 x 32 bytes apart: one task had taken it all) */
    j.inner2 = (j.ndim >= 2 && j.inner * elem < 64 &&
                j.shape[j.ndim - 2] * j.inner * elem <= QE_PERMUTE_BLOCK_BYTES)
                   ? j.shape[j.ndim - 2]
                   : 1;
    j.rows = qe_udiv(total, j.inner * j.inner2);
    const size_t row_bytes = j.inner * j.inner2 * elem;
    const size_t per = QE_MAX(1, qe_udiv(QE_PERMUTE_TASK_BYTES, QE_MAX(row_bytes, 1)));
    const size_t tasks = QE_DIV_UP(j.rows, per);
    if (tasks <= 1)
        permute_rows(&j, 0, j.rows);
    else
        qe_parallel_for(tasks, permute_task, &j);
    return QE_OK;
}


/* ---- per-axis gathers ------------------------------------------------------------------------- */
typedef struct {
    size_t ndim, elem, rows, inner;
    const size_t *shape;
    const ptrdiff_t *stride;
    const int32_t *const *maps; /* maps[k][i]: source index along axis k of output index i */
    const char *src;
    char *dst;
    int inner_contiguous;       /* the last map is the identity and its stride is elem */
} gather_job;

static void gather_rows(const gather_job *j, size_t r0, size_t r1) {
    const size_t last = j->ndim - 1, elem = j->elem, inner = j->inner;
    const int32_t *m_in = j->maps[last];
    const ptrdiff_t s_in = j->stride[last];
    for (size_t r = r0; r < r1; r++) {
        size_t rem = r;
        ptrdiff_t off = 0;
        for (size_t k = last; k-- > 0;) {
            const size_t i = qe_umod(rem, j->shape[k]);
            rem = qe_udiv(rem, j->shape[k]);
            off += (ptrdiff_t)j->maps[k][i] * j->stride[k];
        }
        const char *s = j->src + off;
        char *d = j->dst + r * inner * elem;
        if (j->inner_contiguous)
            qe_copy_run((uint8_t *)d, (const uint8_t *)s, inner * elem);
        else if (elem == 1)
            for (size_t i = 0; i < inner; i++) d[i] = s[(ptrdiff_t)m_in[i] * s_in];
        else
            for (size_t i = 0; i < inner; i++)
                memcpy(d + elem * i, s + (ptrdiff_t)m_in[i] * s_in, elem);
    }
}

static void gather_task(void *ctx, size_t task, int thread_index) {
    const gather_job *j = ctx;
    const size_t per = QE_MAX(1, qe_udiv(QE_PERMUTE_TASK_BYTES, QE_MAX(j->inner * j->elem, 1)));
    const size_t r0 = task * per;
    gather_rows(j, r0, QE_MIN(j->rows, r0 + per));
}

int qe_gather_axes(size_t ndim, const size_t *shape, const ptrdiff_t *src_strides,
                   const int32_t *const *maps, size_t elem, const void *src, void *dst) {
    if (!src || !dst || !shape || !src_strides || !maps || ndim == 0 ||
        ndim > QE_PERMUTE_MAX_DIMS || (elem != 1 && elem != 2 && elem != 4 && elem != 8))
        return QE_ERR_ARG;
    size_t total = 1;
    for (size_t k = 0; k < ndim; k++) total *= shape[k];
    if (total == 0) return QE_OK;
    gather_job j = {.ndim = ndim, .elem = elem, .shape = shape, .stride = src_strides,
                    .maps = maps, .src = src, .dst = dst};
    j.inner = shape[ndim - 1];
    j.rows = qe_udiv(total, j.inner);
    j.inner_contiguous = src_strides[ndim - 1] == (ptrdiff_t)elem;
    for (size_t i = 0; j.inner_contiguous && i < j.inner; i++)
        j.inner_contiguous = maps[ndim - 1][i] == (int32_t)i;
    const size_t per = QE_MAX(1, QE_PERMUTE_TASK_BYTES / QE_MAX(j.inner * elem, 1));
    const size_t tasks = QE_DIV_UP(j.rows, per);
    if (tasks <= 1)
        gather_rows(&j, 0, j.rows);
    else
        qe_parallel_for(tasks, gather_task, &j);
    return QE_OK;
}
