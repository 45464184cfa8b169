/*
 * threadpool.c -- the one thread pool every kernel shares, and per-thread scratch memory.
 *
 * The pool has (threads - 1) workers; the calling thread is participant 0. A job is a task
 * count and a function. Participant i owns the i-th contiguous range of tasks and claims them
 * from its range's atomic counter; when its range is empty it claims from the others' (so a
 * late or preempted thread delays nobody). Owning ranges keeps data on one core from step to
 * step: kernels number their tasks in memory order, so the thread that wrote the first half of
 * a tensor reads it in the next step (on 2 threads, small element-wise steps that pulled half
 * their input from the other core's L2 ran 2x slower than on one thread). Because a task writes
 * outputs no other task writes and computes them the same way wherever it runs, results are
 * identical for every thread count and every schedule.
 *
 * Workers spin briefly after a job (kernels of one model arrive microseconds apart), then sleep
 * on a condition variable. A second caller that finds the pool busy (another Python thread
 * running a model) does not wait: it runs its job on its own thread.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "qe_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define QE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define QE_CPU_RELAX() __asm__ volatile("yield")
#else
#define QE_CPU_RELAX() ((void)0)
#endif

enum { QE_SPIN_ITERS = 1 << 16 }; /* about 100-200 us of polling before a worker sleeps */
enum { QE_WAIT_SPINS = 1 << 12 };  /* the caller's polling for late workers before it yields */

/* Tasks [next, end) of one participant's range; a cache line each, claimed by fetch_add. */
typedef struct {
    _Alignas(64) atomic_size_t next;
    size_t end;
} qe_task_range;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t *threads;
    int n_workers;
    int sleepers;  /* guarded by mu */
    int shutdown;  /* guarded by mu */
    atomic_uint generation; /* bumped once per job */
    /* the current job (written by the owner before bumping generation) */
    qe_task_fn fn;
    void *ctx;
    size_t n_tasks;
    int n_participating_workers;
    qe_task_range *ranges; /* one per participant (n_workers + 1) */
    /* Workers that joined the current job, plus QE_JOB_CLOSED once the caller has run out of
     * tasks. A worker joins (CAS) only while the job is open, and the caller waits only for
     * workers that joined -- never for one that the OS has not scheduled yet (on a loaded
     * machine that wait cost milliseconds). Job fields are written only while the job is
     * closed with nobody joined, so a late worker can never see a half-written job. */
    atomic_uint joined;
} qe_pool;

#define QE_JOB_CLOSED 0x80000000u

static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER; /* held while a job runs */
static qe_pool *g_pool;     /* created lazily; guarded by g_pool_lock */
static atomic_int g_num_threads = 1;
static atomic_uint_fast64_t g_jobs_dispatched; /* qe_pool_jobs_dispatched */
static _Thread_local int tls_thread_limit;
/* The calling thread's place in the job it is running (qe_job_participant); 0 of 1 outside. */
static _Thread_local int tls_participant, tls_participants;

/* Participant `thread_index` runs its own range, then whatever is left of the others'. */
static void qe_run_tasks(qe_pool *p, int thread_index) {
    const int parts = p->n_participating_workers + 1;
    tls_participant = thread_index;
    tls_participants = parts;
    for (int k = 0; k < parts; k++) {
        qe_task_range *r = &p->ranges[(thread_index + k) % parts];
        for (;;) {
            const size_t t = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
            if (t >= r->end) break;
            p->fn(p->ctx, t, thread_index);
        }
    }
    tls_participant = 0;
    tls_participants = 0;
}

void qe_job_participant(int *index, int *count) {
    *index = tls_participant;
    *count = tls_participants > 0 ? tls_participants : 1;
}

typedef struct {
    qe_pool *pool;
    int index; /* 1-based: the caller is participant 0 */
    unsigned start_generation;
} qe_worker_arg;

static void *qe_worker_main(void *arg_) {
    qe_worker_arg arg = *(qe_worker_arg *)arg_;
    free(arg_);
    qe_pool *p = arg.pool;
    /* The generation at pool creation, not the current one: the first job may have been posted
     * before this thread got here, and it must still run it (else its caller waits forever). */
    unsigned seen = arg.start_generation;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < QE_SPIN_ITERS) {
                QE_CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (!p->shutdown && atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
                p->sleepers++;
                pthread_cond_wait(&p->wake, &p->mu);
                p->sleepers--;
            }
            const int stop = p->shutdown;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
            spins = 0;
        }
        seen = gen;
        unsigned j = atomic_load_explicit(&p->joined, memory_order_acquire);
        while (!(j & QE_JOB_CLOSED) &&
               !atomic_compare_exchange_weak_explicit(&p->joined, &j, j + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
        }
        if (j & QE_JOB_CLOSED) continue; /* too late: the caller finished the job alone */
        if (arg.index <= p->n_participating_workers) qe_run_tasks(p, arg.index);
        atomic_fetch_sub_explicit(&p->joined, 1, memory_order_release);
    }
}

static void qe_pool_destroy(qe_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->ranges);
    free(p);
}

static qe_pool *qe_pool_create(int n_workers) {
    qe_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->threads = calloc((size_t)n_workers, sizeof(pthread_t));
    p->ranges = aligned_alloc(64, (size_t)(n_workers + 1) * sizeof(qe_task_range));
    if (!p->threads || !p->ranges) {
        free(p->threads);
        free(p->ranges);
        free(p);
        return NULL;
    }
    for (int i = 0; i <= n_workers; i++) {
        atomic_init(&p->ranges[i].next, 0);
        p->ranges[i].end = 0;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->joined, QE_JOB_CLOSED);
    for (int i = 0; i < n_workers; i++) {
        qe_worker_arg *arg = malloc(sizeof(*arg));
        if (!arg) break;
        arg->pool = p;
        arg->index = i + 1;
        arg->start_generation = atomic_load(&p->generation);
        if (pthread_create(&p->threads[i], NULL, qe_worker_main, arg) != 0) {
            free(arg);
            break;
        }
        p->n_workers++;
    }
    return p;
}

int qe_set_num_threads(int n) {
    if (n < 1 || n > 1024) return QE_ERR_ARG;
    pthread_mutex_lock(&g_pool_lock); /* waits for a running job */
    if (g_pool && g_pool->n_workers != n - 1) {
        qe_pool_destroy(g_pool);
        g_pool = NULL;
    }
    atomic_store(&g_num_threads, n);
    pthread_mutex_unlock(&g_pool_lock);
    return QE_OK;
}

int qe_get_num_threads(void) { return atomic_load(&g_num_threads); }

uint64_t qe_pool_jobs_dispatched(void) {
    return atomic_load_explicit(&g_jobs_dispatched, memory_order_relaxed);
}

void qe_set_thread_limit(int n) { tls_thread_limit = n > 0 ? n : 0; }

int qe_effective_threads(void) {
    const int global = atomic_load(&g_num_threads);
    return tls_thread_limit > 0 ? QE_MIN(tls_thread_limit, global) : global;
}

static void qe_run_serial(size_t n_tasks, qe_task_fn fn, void *ctx) {
    for (size_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
}

int qe_threads_for_cycles(double cycles) {
    return cycles < (double)QE_MIN_PARALLEL_CYCLES ? 1 : qe_effective_threads();
}

void qe_parallel_for(size_t n_tasks, qe_task_fn fn, void *ctx) {
    qe_parallel_for_threads(n_tasks, qe_effective_threads(), fn, ctx);
}

void qe_parallel_for_threads(size_t n_tasks, int max_threads, qe_task_fn fn, void *ctx) {
    if (n_tasks == 0) return;
    const int threads = QE_MIN(max_threads, qe_effective_threads());
    if (threads <= 1 || n_tasks == 1 || pthread_mutex_trylock(&g_pool_lock) != 0) {
        qe_run_serial(n_tasks, fn, ctx);
        return;
    }
    if (!g_pool) g_pool = qe_pool_create(atomic_load(&g_num_threads) - 1);
    qe_pool *p = g_pool;
    if (!p || p->n_workers == 0) {
        pthread_mutex_unlock(&g_pool_lock);
        qe_run_serial(n_tasks, fn, ctx);
        return;
    }
    int helpers = QE_MIN(threads - 1, p->n_workers);
    if ((size_t)helpers > n_tasks - 1) helpers = (int)(n_tasks - 1);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    p->n_participating_workers = helpers;
    for (int i = 0; i <= helpers; i++) { /* participant i: tasks [i n / parts, (i+1) n / parts) */
        const size_t parts = (size_t)helpers + 1;
        atomic_store_explicit(&p->ranges[i].next, qe_share_start(n_tasks, parts, (size_t)i),
                              memory_order_relaxed);
        p->ranges[i].end = qe_share_start(n_tasks, parts, (size_t)i + 1);
    }
    atomic_fetch_add_explicit(&g_jobs_dispatched, 1, memory_order_relaxed);
    atomic_store_explicit(&p->joined, 0, memory_order_release); /* open the job */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    qe_run_tasks(p, 0);
    /* every task is claimed: close the job, then wait for the workers still running theirs */
    atomic_fetch_or_explicit(&p->joined, QE_JOB_CLOSED, memory_order_acq_rel);
    /* A joined worker that the OS preempted needs a core: after a short spin, give ours up. */
    for (unsigned spins = 0; atomic_load_explicit(&p->joined, memory_order_acquire) & ~QE_JOB_CLOSED;)
        if (++spins < QE_WAIT_SPINS)
            QE_CPU_RELAX();
        else
            sched_yield();
    pthread_mutex_unlock(&g_pool_lock);
}

/* After fork() only the forking thread exists in the child: forget the parent's workers. */
static void qe_atfork_child(void) {
    pthread_mutex_init(&g_pool_lock, NULL);
    g_pool = NULL; /* leaked in the child on purpose: its threads are gone */
}

__attribute__((constructor)) static void qe_threadpool_init(void) {
    pthread_atfork(NULL, NULL, qe_atfork_child);
}

/* ---- per-thread scratch ---------------------------------------------------------------------- */
enum { QE_SCRATCH_SLOTS = 4 };
typedef struct {
    void *ptr[QE_SCRATCH_SLOTS];
    size_t size[QE_SCRATCH_SLOTS];
} qe_scratch_set;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void qe_scratch_free(void *v) {
    qe_scratch_set *s = v;
    for (int i = 0; i < QE_SCRATCH_SLOTS; i++) qe_aligned_free(s->ptr[i]);
    free(s);
}

static void qe_scratch_key_init(void) { pthread_key_create(&g_scratch_key, qe_scratch_free); }

void *qe_scratch(int slot, size_t bytes) {
    QE_ASSERT(slot >= 0 && slot < QE_SCRATCH_SLOTS);
    pthread_once(&g_scratch_once, qe_scratch_key_init);
    qe_scratch_set *s = pthread_getspecific(g_scratch_key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) return NULL;
        pthread_setspecific(g_scratch_key, s);
    }
    if (s->size[slot] < bytes) {
        const size_t want = QE_ROUND_UP(QE_MAX(bytes, s->size[slot] * 3 / 2), 4096);
        void *n = qe_aligned_alloc(want);
        if (!n) return NULL;
        qe_aligned_free(s->ptr[slot]);
        s->ptr[slot] = n;
        s->size[slot] = want;
    }
    return s->ptr[slot];
}

void *qe_aligned_alloc(size_t bytes) {
    void *p = NULL;
    /* +64: kernels may read one vector past a row end inside the allocation */
    if (posix_memalign(&p, 64, bytes + 64) != 0) return NULL;
    return p;
}

void qe_aligned_free(void *p) { free(p); }
