/*
 * gemm_selftest.c -- every GEMM path of this CPU against the portable reference, bit for bit,
 * in C: for targets the Python tests cannot reach (aarch64 under qemu-aarch64, see
 * tests/kernels/test_gemm_aarch64.py). Random shapes, zero points, output kinds, clamps,
 * strides, column ranges of the serial entry, 1 and 2 threads, and the saturating extremes.
 * Prints one line per path; exits 1 on the first mismatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm/qgemm.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* xorshift64* */
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 2685821657736338717ull) >> 32);
}
static size_t rnd_in(size_t lo, size_t hi) { return lo + rnd() % (hi - lo + 1); }

typedef struct {
    size_t M, N, K, lda, ldc, n_begin, n_end;
    int32_t a_zp, b_is_u8, serial, threads;
    qe_output out;
    uint8_t *a, *b;
    int32_t *b_zp, *bias;
    float *scale, *fbias;
} gemm_case;

static void *run_case(const gemm_case *t, qe_isa isa) {
    qe_gemm_packed *p = qe_gemm_pack(t->b, t->K, t->N, (ptrdiff_t)t->N, 1, t->b_is_u8, isa);
    if (!p) { fprintf(stderr, "pack failed\n"); exit(2); }
    const size_t es = qe_output_elem_size(t->out.kind);
    void *c = calloc(t->M * t->ldc + 1, es);
    qe_set_num_threads(t->threads);
    if (t->serial)
        qe_gemm_u8s8_serial(p, t->M, t->a, t->lda, t->a_zp, t->b_zp, &t->out, t->n_begin,
                            t->n_end, c, t->ldc);
    else if (qe_gemm_u8s8(p, t->M, t->a, t->lda, t->a_zp, t->b_zp, &t->out, c, t->ldc) != QE_OK) {
        fprintf(stderr, "qe_gemm_u8s8 failed\n");
        exit(2);
    }
    qe_gemm_packed_free(p);
    return c;
}

static void make_case(gemm_case *t, int extreme) {
    memset(t, 0, sizeof(*t));
    t->M = rnd_in(1, 40); t->N = rnd_in(1, 90); t->K = rnd_in(1, 90);
    if (rnd() % 8 == 0) t->K = rnd_in(200, 1500);
    if (extreme == 2) t->K = QE_MAX_K, t->M = 2, t->N = 20;
    t->lda = t->K + rnd_in(0, 5);
    t->ldc = t->N + rnd_in(0, 3);
    t->a_zp = rnd() % 3 == 0 ? 0 : rnd() % 3 == 0 ? 255 : (int32_t)(rnd() % 256);
    t->b_is_u8 = rnd() % 4 == 0;
    t->threads = 1 + rnd() % 2;
    t->serial = rnd() % 3 == 0;
    t->n_begin = t->serial ? rnd_in(0, t->N - 1) : 0;
    t->n_end = t->serial ? rnd_in(t->n_begin + 1, t->N) : t->N;
    t->a = malloc(t->M * t->lda);
    t->b = malloc(t->K * t->N);
    const uint8_t a_val = 255, b_val = rnd() % 2 ? 0x7f : 0x80;
    for (size_t i = 0; i < t->M * t->lda; i++) t->a[i] = extreme ? a_val : (uint8_t)rnd();
    for (size_t i = 0; i < t->K * t->N; i++) t->b[i] = extreme ? b_val : (uint8_t)rnd();
    if (extreme) t->a_zp = 0, t->b_is_u8 = 0;
    t->out.kind = (qe_out_kind)(rnd() % 3);
    t->out.per_channel = rnd() % 2;
    t->scale = malloc(t->N * sizeof(float));
    t->fbias = malloc(t->N * sizeof(float));
    t->bias = malloc(t->N * sizeof(int32_t));
    t->b_zp = malloc(t->N * sizeof(int32_t));
    for (size_t n = 0; n < t->N; n++) {
        t->scale[n] = (float)(rnd() % 10000 + 1) * 1e-7f * (float)(1 + rnd() % 100);
        t->fbias[n] = (float)((int)(rnd() % 2001) - 1000) * 0.01f;
        t->bias[n] = (int32_t)rnd();
        t->b_zp[n] = (int32_t)(rnd() % 256) - 128;
    }
    t->out.scale = t->out.kind == QE_OUT_I32 ? NULL : t->scale;
    t->out.fbias = (t->out.kind == QE_OUT_F32 && rnd() % 2) ? t->fbias : NULL;
    t->out.bias = (rnd() % 2 && !extreme) ? t->bias : NULL;
    t->out.zero_point = (int32_t)(rnd() % 256);
    t->out.qmin = (int32_t)(rnd() % 64);
    t->out.qmax = 192 + (int32_t)(rnd() % 64);
    if (rnd() % 3 && !extreme) { free(t->b_zp); t->b_zp = NULL; }
    if (extreme) { free(t->b_zp); t->b_zp = NULL; }
}

static void free_case(gemm_case *t) {
    free(t->a); free(t->b); free(t->b_zp); free(t->bias); free(t->scale); free(t->fbias);
}

int main(void) {
    int failures = 0;
    for (int isa = 1; isa < QE_ISA_COUNT; isa++) {
        if (!qe_isa_available((qe_isa)isa)) continue;
        int cases = 0;
        for (int i = 0; i < 400; i++) {
            gemm_case t;
            make_case(&t, i < 8 ? 1 : i < 10 ? 2 : 0);
            const size_t es = qe_output_elem_size(t.out.kind);
            void *want = run_case(&t, QE_ISA_REF), *got = run_case(&t, (qe_isa)isa);
            if (memcmp(want, got, (t.M * t.ldc + 1) * es) != 0) {
                fprintf(stderr, "MISMATCH %s case %d: M=%zu N=%zu K=%zu kind=%d serial=%d [%zu,%zu) "
                        "a_zp=%d b_zp=%s u8=%d threads=%d\n", qe_isa_name((qe_isa)isa), i, t.M,
                        t.N, t.K, (int)t.out.kind, t.serial, t.n_begin, t.n_end, t.a_zp,
                        t.b_zp ? "yes" : "no", t.b_is_u8, t.threads);
                failures++;
            }
            if (i < 10 && t.out.kind == QE_OUT_I32 && !t.serial) { /* closed form at the extremes */
                const int64_t v = (int64_t)255 * (t.b[0] == 0x7f ? 127 : -128) * (int64_t)t.K;
                if (((int32_t *)want)[0] != v) { fprintf(stderr, "reference wrong at extremes\n"); failures++; }
            }
            free(want); free(got); free_case(&t);
            cases++;
            if (failures) return 1;
        }
        printf("%s: %d cases bit-identical to ref\n", qe_isa_name((qe_isa)isa), cases);
    }
    return failures != 0;
}
