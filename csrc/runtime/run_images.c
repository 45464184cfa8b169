/*
 * run_images.c -- a program's per-image prefix (qengine/_bindings/program.pxi, Program
 * per_image): steps built for one image, run once per image of the batch with every slot s
 * moved on by image * strides[s] bytes.
 *
 * On several threads the images are shared out, one thread running whole images with its
 * kernels on its own thread (a nested qe_parallel_for finds the pool busy and runs serially):
 * a layer's output then stays in that core's L2 for the next layer, and no step waits for the
 * other threads. Images left over from whole rounds (a batch of 3 on 2 threads) run one after
 * another, each step split over the threads as usual. Every step computes the same bytes
 * either way, so results do not depend on the schedule.
 */
#include <stdlib.h>
#include <time.h>

#include "../qe_internal.h"
#include "run_images.h"

typedef struct {
    size_t steps;
    qe_step_fn const *fns;
    void *const *args;
    const qe_image_memory *mem;
    char **tables;  /* images x n_slots: each image's slot table */
    double *times;  /* images x steps, or NULL */
    int *rc;        /* per image: the first failing step's code, or QE_OK */
    size_t *failed; /* ... and its index */
} image_job;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void image_task(void *ctx, size_t img, int thread_index) {
    const image_job *j = ctx;
    const qe_image_memory *m = j->mem;
    QE_ASSERT((size_t)thread_index < m->max_parts);
    char **table = j->tables + img * m->n_slots;
    char *arena = m->arenas + (size_t)thread_index * m->arena_stride;
    for (size_t s = 0; s < m->n_slots; s++)
        if (m->private_offset[s] >= 0)
            table[s] = arena + m->private_offset[s];
        else
            table[s] = m->slots[s] ? m->slots[s] + img * m->strides[s] : NULL;
    double *times = j->times ? j->times + img * j->steps : NULL;
    j->rc[img] = QE_OK;
    for (size_t k = 0; k < j->steps; k++) {
        const double t0 = times ? now_seconds() : 0.0;
        const int rc = j->fns[k](j->args[k], table);
        if (times) times[k] = now_seconds() - t0;
        if (rc != QE_OK) {
            j->rc[img] = rc;
            j->failed[img] = k;
            return;
        }
    }
}

size_t qe_run_images_parts(size_t images) {
    const size_t threads = (size_t)qe_effective_threads();
    return threads > 1 && images >= threads ? threads : 1;
}

int qe_run_images(size_t steps, qe_step_fn const *fns, void *const *args,
                  const qe_image_memory *mem, size_t images, char **tables, double *times,
                  size_t *failed_step) {
    QE_ASSERT(fns && args && mem && tables && failed_step && images >= 1);
    int *rc = malloc(images * sizeof(int));
    size_t *failed = malloc(images * sizeof(size_t));
    double *per_image = times ? calloc(images * QE_MAX(steps, 1), sizeof(double)) : NULL;
    if (!rc || !failed || (times && !per_image)) {
        free(rc), free(failed), free(per_image);
        return QE_ERR_NOMEM;
    }
    image_job j = {.steps = steps, .fns = fns, .args = args, .mem = mem, .tables = tables,
                   .times = per_image, .rc = rc, .failed = failed};
    /* whole rounds of images run one per thread; the rest one after another, each step on
     * every thread (a batch of 3 on 2 threads: 2 concurrent images, then 1 split) */
    const size_t parts = QE_MIN(qe_run_images_parts(images), mem->max_parts);
    const size_t shared = parts > 1 ? images - images % parts : 0;
    if (shared)
        qe_parallel_for_threads(shared, (int)parts, image_task, &j);
    for (size_t img = 0; img < shared; img++)
        if (rc[img] != QE_OK) {
            images = shared; /* report it; the rest would fail alike */
            break;
        }
    for (size_t img = shared; img < images; img++) {
        image_task(&j, img, 0);
        if (rc[img] != QE_OK) {
            images = img + 1;
            break;
        }
    }
    int result = QE_OK;
    for (size_t img = 0; img < images; img++)
        if (rc[img] != QE_OK) {
            result = rc[img];
            *failed_step = failed[img];
            break;
        }
    if (times) /* each step's time over the images, as wall time (concurrent ones / threads) */
        for (size_t k = 0; k < steps; k++) {
            double concurrent = 0.0, serial = 0.0;
            for (size_t img = 0; img < images; img++)
                *(img < shared ? &concurrent : &serial) += per_image[img * steps + k];
            times[k] = (shared ? concurrent / (double)parts : 0.0) + serial;
        }
    free(rc), free(failed), free(per_image);
    return result;
}
