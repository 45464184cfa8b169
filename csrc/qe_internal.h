/*
 * qe_internal.h -- what kernel files share and the Python bindings never see:
 * entry asserts, per-ISA dispatch tables, the thread pool's task interface, per-thread scratch.
 */
#ifndef QE_INTERNAL_H
#define QE_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qe_kernels.h"

/* Kernel-entry invariants. The bindings validate every argument first, so a failing QE_ASSERT is
 * a bug in qengine; it stays on in release builds because it is cheap and a wrong pointer
 * here would otherwise become a segfault or silent garbage. */
void qe_assert_fail(const char *file, int line, const char *cond);
#define QE_ASSERT(cond) ((cond) ? (void)0 : qe_assert_fail(__FILE__, __LINE__, #cond))

#define QE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QE_MAX(a, b) ((a) > (b) ? (a) : (b))
/* a / b for sizes, in 32 bits when both fit: a 64-bit DIV costs 35-90 cycles on Skylake-class
 * cores against ~26 for a 32-bit one, and the drivers divide by run-time tile sizes a dozen
 * times or more per call (a 16-pixel convolution's call was 700 ns, a third of it dividing). */
static inline size_t qe_udiv(size_t a, size_t b) {
    return ((a | b) >> 32) == 0 ? (size_t)((uint32_t)a / (uint32_t)b) : a / b;
}
static inline size_t qe_umod(size_t a, size_t b) {
    return ((a | b) >> 32) == 0 ? (size_t)((uint32_t)a % (uint32_t)b) : a % b;
}
#define QE_DIV_UP(a, b) qe_udiv((size_t)(a) + (size_t)(b) - 1, (size_t)(b))
#define QE_ROUND_UP(a, b) (QE_DIV_UP(a, b) * (size_t)(b))

/* Where share i of `units` cut into `shares` near-equal shares begins (share i is [start(i),
 * start(i + 1))): sizes differ by at most one unit and the larger ones are spread out, so any
 * run of consecutive shares -- one thread's range of tasks -- holds its fair part. */
static inline size_t qe_share_start(size_t units, size_t shares, size_t i) {
    return qe_udiv(i * units, shares);
}

/* Copy n bytes of a short run (im2col's kernel rows, a permute's channel slices): fixed-size
 * memcpy calls become plain loads and stores, and two overlapping ones cover any length in a
 * range, where a libc call per run would dominate (7x7x3 convs copy 21-byte runs; a Split of
 * 16 channels, 16-byte runs). */
static inline void qe_copy_run(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n >= 64) {
        memcpy(dst, src, n);
    } else if (n >= 32) {
        memcpy(dst, src, 32);
        memcpy(dst + n - 32, src + n - 32, 32);
    } else if (n >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
    }
}

/* Fill n bytes of a short run with v (im2col's padding taps), as qe_copy_run copies them. */
static inline void qe_fill_run(uint8_t *dst, uint8_t v, size_t n) {
    if (n >= 16) {
        memset(dst, v, n);
        return;
    }
    const uint64_t pattern = 0x0101010101010101ull * v;
    if (n >= 8) {
        memcpy(dst, &pattern, 8);
        memcpy(dst + n - 8, &pattern, 8);
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = v;
    }
}

/* Which ISA files this build compiled (set by setup.py per target architecture). */
#if defined(__x86_64__) || defined(_M_X64)
#define QE_BUILD_X86 1
#endif
#if defined(__aarch64__)
#define QE_BUILD_ARM64 1
#endif

/* ---- per-ISA dispatch tables ----------------------------------------------------------------
 * A kernel family declares `static const fn_t table[QE_ISA_COUNT]` with its per-ISA variants
 * (NULL where a path has no variant of its own) and calls QE_PICK(table, isa): the variant for
 * the ISA, or the portable reference. No if-chains on the ISA anywhere else. */
#define QE_PICK(table, isa) ((table)[(isa)] ? (table)[(isa)] : (table)[QE_ISA_REF])

/* ---- rounding -------------------------------------------------------------------------------
 * The reference's round-half-to-even of a float already clamped to an int32-safe range.
 * (lrintf uses the current rounding mode, which is round-to-nearest-even: we never change it;
 * SIMD cvtps2dq uses the same mode, so the two agree bit for bit.) */
static inline int32_t qe_rint_f32(float v) { return (int32_t)lrintf(v); }

/* Requantize one accumulator: clamp in the float domain to [qmin - zp, qmax - zp] (integers, so
 * clamping before rounding equals clamping after), round half to even, add the zero point.
 * This is the one formula every path implements; SIMD does min/max, cvtps2dq, add, pack. */
static inline int32_t qe_requant_one(int32_t acc, float mult, int32_t zp, int32_t qmin,
                                     int32_t qmax) {
    float v = (float)acc * mult;
    const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
    v = v < lo ? lo : v; /* NaN cannot occur: mult is finite and acc is an integer */
    v = v > hi ? hi : v;
    return qe_rint_f32(v) + zp;
}

/* ---- thread pool ----------------------------------------------------------------------------
 * Runs fn(ctx, task, thread_index) for task in [0, n_tasks) on up to qe_effective_threads()
 * threads, the caller included; returns when all tasks are done. A task must write outputs that
 * no other task writes, so results never depend on the schedule. Safe to call from several
 * threads at once: a call that finds the pool busy runs its tasks on its own thread. */
typedef void (*qe_task_fn)(void *ctx, size_t task, int thread_index);
void qe_parallel_for(size_t n_tasks, qe_task_fn fn, void *ctx);
/* The same on at most max_threads threads (1: serially on the caller, never touching the
 * pool): what a driver calls with qe_threads_for_cycles(). */
void qe_parallel_for_threads(size_t n_tasks, int max_threads, qe_task_fn fn, void *ctx);

/* The least work, in cycles on one thread, worth a second thread: handing a job to a worker
 * and joining it costs about a microsecond (benchmarks/overhead.py's chain of 100 16-pixel
 * convolutions on 2 threads: 1.4 us per op when each was split, 0.6 on one thread). The
 * drivers' estimates are rough (their kernels' best rates), so the bar is low: it keeps the
 * tiny jobs -- a 16-pixel map, a squeeze-excitation convolution of one pixel -- on the
 * calling thread and changes nothing for the rest. */
enum { QE_MIN_PARALLEL_CYCLES = 4096 };
/* The threads a job of about `cycles` (a driver's single-thread estimate) may use: 1 below
 * QE_MIN_PARALLEL_CYCLES, else qe_effective_threads(). */
int qe_threads_for_cycles(double cycles);

/* The thread count the next qe_parallel_for on this thread may use: the per-thread limit set by
 * qe_set_thread_limit() if any (a model with its own thread setting), else the global count. */
int qe_effective_threads(void);
/* 0 clears the limit of the calling thread. */
void qe_set_thread_limit(int n);
/* Inside a task: the calling thread's participant index in the job and the job's participant
 * count (the pool's threads own contiguous task ranges in that order); 0 of 1 outside a job
 * or in a serial one. Only for hints (what to prefetch): a task never depends on it. */
void qe_job_participant(int *index, int *count);

/* Per-thread scratch memory, 64-byte aligned, grown (never shrunk) on demand and reused: kernels
 * call it once per task, outside their inner loops. `slot` (0..3) lets one task hold several
 * buffers at once. Returns NULL only if the allocation fails. */
void *qe_scratch(int slot, size_t bytes);

/* ---- sliding windows (conv indirection, pooling) --------------------------------------------
 * The tap pointers of one window, row-major (kernel_h x kernel_w), whose first tap sits at input
 * row ih0, column iw0 (either may be negative: padding) of the NHWC image `img` (in_h x in_w
 * pixels of C bytes). A tap outside the image gets `pad`, a row of padding bytes. */
typedef struct {
    const uint8_t *img;
    size_t in_h, in_w, C;
    size_t kernel_h, kernel_w, dilation_h, dilation_w;
    const uint8_t *pad;
} qe_window;

static inline void qe_window_taps(const qe_window *w, ptrdiff_t ih0, ptrdiff_t iw0,
                                  const uint8_t **tp) {
    size_t t = 0;
    for (size_t ki = 0; ki < w->kernel_h; ki++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(ki * w->dilation_h);
        const int row_ok = ih >= 0 && ih < (ptrdiff_t)w->in_h;
        const uint8_t *row = row_ok ? w->img + (size_t)ih * w->in_w * w->C : NULL;
        for (size_t kj = 0; kj < w->kernel_w; kj++, t++) {
            const ptrdiff_t iw = iw0 + (ptrdiff_t)(kj * w->dilation_w);
            tp[t] = (row_ok && iw >= 0 && iw < (ptrdiff_t)w->in_w) ? row + (size_t)iw * w->C
                                                                   : w->pad;
        }
    }
}

/* Along one axis (input length in, leading pad, kernel, dilation, stride, output length out):
 * the output positions [*lo, *hi) whose whole window lies inside the input. */
static inline void qe_window_interior(size_t in, size_t pad, size_t kernel, size_t dilation,
                                      size_t stride, size_t out, size_t *lo, size_t *hi) {
    const size_t ext = (kernel - 1) * dilation + 1;
    *lo = QE_DIV_UP(pad, stride);
    *hi = in + pad >= ext ? QE_MIN(qe_udiv(in + pad - ext, stride) + 1, out) : 0;
}

/* Aligned allocation for packed weights. */
void *qe_aligned_alloc(size_t bytes);
void qe_aligned_free(void *p);

#endif /* QE_INTERNAL_H */
