/*
 * permute.c -- copy a strided view into a contiguous buffer: the relayouts of the compiled
 * model (NCHW <-> NHWC at its borders) and Transposes that cannot be relabelled.
 *
 * dst is contiguous with `shape`; dst element (i_0, ..., i_{n-1}) comes from src at byte offset
 * sum_k i_k * src_strides[k]. Dims are coalesced first (adjacent dims contiguous in both
 * buffers become one), then rows whose source is contiguous are memcpy'd and the rest gathered
 * element by element. Outer rows are split over the thread pool for large copies. Pure data
 * movement: one portable path, identical on every ISA.
 */
#include <string.h>

#include "../qe_internal.h"

enum { QE_PERMUTE_MAX_DIMS = 8 };

typedef struct {
    size_t ndim, elem, inner, rows;
    size_t shape[QE_PERMUTE_MAX_DIMS];
    ptrdiff_t stride[QE_PERMUTE_MAX_DIMS];
    const char *src;
    char *dst;
} permute_job;

/* Copy dst rows [r0, r1): a row is the innermost dim (`inner` elements). */
static void permute_rows(const permute_job *j, size_t r0, size_t r1) {
    const size_t n = j->ndim, last = n - 1, elem = j->elem, inner = j->inner;
    const ptrdiff_t s_in = j->stride[last];
    for (size_t r = r0; r < r1; r++) {
        /* the source offset of row r: decompose r over the outer dims */
        size_t rem = r;
        ptrdiff_t off = 0;
        for (size_t k = last; k-- > 0;) {
            const size_t i = rem % j->shape[k];
            rem /= j->shape[k];
            off += (ptrdiff_t)i * j->stride[k];
        }
        const char *s = j->src + off;
        char *d = j->dst + r * inner * elem;
        if (s_in == (ptrdiff_t)elem) {
            memcpy(d, s, inner * elem);
        } else if (elem == 1) {
            for (size_t i = 0; i < inner; i++) d[i] = s[(ptrdiff_t)i * s_in];
        } else if (elem == 4) {
            for (size_t i = 0; i < inner; i++) memcpy(d + 4 * i, s + (ptrdiff_t)i * s_in, 4);
        } else {
            for (size_t i = 0; i < inner; i++) memcpy(d + elem * i, s + (ptrdiff_t)i * s_in, elem);
        }
    }
}

enum { QE_PERMUTE_TASK_BYTES = 1 << 16 };

static void permute_task(void *ctx, size_t task, int thread_index) {
    const permute_job *j = ctx;
    const size_t row_bytes = j->inner * j->elem;
    const size_t per = QE_MAX(1, QE_PERMUTE_TASK_BYTES / QE_MAX(row_bytes, 1));
    const size_t r0 = task * per;
    permute_rows(j, r0, QE_MIN(j->rows, r0 + per));
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
    j.inner = j.shape[j.ndim - 1];
    j.rows = total / j.inner;
    const size_t row_bytes = j.inner * elem;
    const size_t per = QE_MAX(1, QE_PERMUTE_TASK_BYTES / QE_MAX(row_bytes, 1));
    const size_t tasks = QE_DIV_UP(j.rows, per);
    if (tasks <= 1)
        permute_rows(&j, 0, j.rows);
    else
        qe_parallel_for(tasks, permute_task, &j);
    return QE_OK;
}
