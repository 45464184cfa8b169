/* run_images.h -- a program's per-image prefix (run_images.c). */
#ifndef QE_RUN_IMAGES_H
#define QE_RUN_IMAGES_H

#include <stddef.h>

/* A compiled step: a kernel call with prebound arguments over a table of slot pointers. */
typedef int (*qe_step_fn)(const void *args, char **slots);

/* Where a per-image prefix finds its tensors. Slot s of image i is slots[s] + i * strides[s]
 * when private_offset[s] < 0 (a tensor of the batch: its inputs, its results read later,
 * constants with stride 0), else private_offset[s] bytes into the image arena of the thread
 * running the image (a tensor only the prefix uses: one image's worth, reused image after
 * image while it is in that core's cache). */
typedef struct {
    char *const *slots;
    const size_t *strides;
    const ptrdiff_t *private_offset;
    size_t n_slots;
    char *arenas;        /* participant t's image arena: arenas + t * arena_stride */
    size_t arena_stride;
    size_t max_parts;    /* how many image arenas `arenas` holds */
} qe_image_memory;

/* Run steps [0, steps) once per image; `tables` is scratch for images * n_slots pointers.
 * times (NULL, or one per step) receives each step's wall time over all images. Returns QE_OK,
 * or the first failing step's code with its index in *failed_step. */
int qe_run_images(size_t steps, qe_step_fn const *fns, void *const *args,
                  const qe_image_memory *mem, size_t images, char **tables, double *times,
                  size_t *failed_step);

/* The threads qe_run_images would share `images` images among now (1: one after another). */
size_t qe_run_images_parts(size_t images);

#endif
