/*
 * pool_selftest.c -- stress test of qe_parallel_for (csrc/threadpool.c): every task of every
 * job runs exactly once, on a valid thread index, with 1..4 threads, random task counts, tasks
 * that yield the CPU (as a preempted worker would), two callers at once, a thread limit, and
 * jobs posted the moment a pool is created (a hang there fails by timeout).
 * Run by tests/kernels/test_threadpool.py; exits 1 on the first violation.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "qe_internal.h"

enum { MAX_TASKS = 97, JOBS = 400 };

typedef struct {
    atomic_int runs[MAX_TASKS];
    atomic_int bad_index;
    int max_threads;
    unsigned seed;
} job_ctx;

static void task(void *ctx_, size_t t, int thread_index) {
    job_ctx *c = ctx_;
    atomic_fetch_add(&c->runs[t], 1);
    if (thread_index < 0 || thread_index >= c->max_threads) atomic_store(&c->bad_index, 1);
    if ((t * 2654435761u + c->seed) % 7 == 0) sched_yield(); /* give the OS a chance to preempt */
}

static int run_jobs(int threads, unsigned seed) {
    job_ctx c;
    for (int j = 0; j < JOBS; j++) {
        const size_t n = 1 + (seed = seed * 1103515245u + 12345u) % MAX_TASKS;
        for (size_t t = 0; t < MAX_TASKS; t++) atomic_init(&c.runs[t], 0);
        atomic_init(&c.bad_index, 0);
        c.max_threads = threads;
        c.seed = seed;
        qe_parallel_for(n, task, &c);
        for (size_t t = 0; t < MAX_TASKS; t++)
            if (atomic_load(&c.runs[t]) != (t < n ? 1 : 0)) {
                fprintf(stderr, "threads=%d job %d: task %zu of %zu ran %d times\n", threads, j, t,
                        n, atomic_load(&c.runs[t]));
                return 1;
            }
        if (atomic_load(&c.bad_index)) {
            fprintf(stderr, "threads=%d: thread index out of range\n", threads);
            return 1;
        }
    }
    return 0;
}

static void *second_caller(void *arg) { return (void *)(intptr_t)run_jobs(*(int *)arg, 77); }

int main(void) {
    /* fresh pools: the first job is posted while the new workers may not have started yet */
    for (int i = 0; i < 300; i++) {
        job_ctx c;
        for (size_t t = 0; t < MAX_TASKS; t++) atomic_init(&c.runs[t], 0);
        atomic_init(&c.bad_index, 0);
        c.max_threads = 2 + i % 2;
        c.seed = 1;
        if (qe_set_num_threads(2 + i % 2) != QE_OK) return 1;
        qe_parallel_for(2, task, &c);
        if (atomic_load(&c.runs[0]) != 1 || atomic_load(&c.runs[1]) != 1) return 1;
    }
    printf("fresh pools: first jobs complete\n");
    for (int threads = 1; threads <= 4; threads++) {
        if (qe_set_num_threads(threads) != QE_OK || run_jobs(threads, (unsigned)threads)) return 1;
        pthread_t other; /* two callers: one runs on the pool, the other on its own thread */
        void *rc;
        pthread_create(&other, NULL, second_caller, &threads);
        const int mine = run_jobs(threads, 99);
        pthread_join(other, &rc);
        if (mine || rc) return 1;
        qe_set_thread_limit(1); /* a limit of one thread: everything on the caller */
        const int limited = run_jobs(1, 5);
        qe_set_thread_limit(0);
        if (limited) return 1;
        printf("threads=%d: %d jobs, every task exactly once\n", threads, 4 * JOBS);
    }
    return 0;
}
