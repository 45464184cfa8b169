/*
 * cpe_selftest.c -- conv, pool and element-wise kernels of every aarch64 path against the
 * portable reference, bit for bit. Built and run by tests/kernels/test_cpe_aarch64.py (under
 * qemu-aarch64 on x86 hosts). Prints "<isa>: N cases bit-identical" per path; exits 1 on the
 * first mismatch, naming the case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qe_kernels.h"
#include "pool/pool.h"

static uint64_t g_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* xorshift64* */
    g_state ^= g_state >> 12;
    g_state ^= g_state << 25;
    g_state ^= g_state >> 27;
    return (uint32_t)((g_state * 0x2545F4914F6CDD1Dull) >> 32);
}
static int rint_in(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static void fill_u8(uint8_t *p, size_t n) { for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd(); }
static float rscale(void) { return (float)pow(10.0, -5.0 + 6.0 * (rnd() % 1000) / 1000.0); }

static int g_failed;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            printf("MISMATCH: " __VA_ARGS__);                                                   \
            printf("\n");                                                                       \
            g_failed = 1;                                                                       \
            return 0;                                                                           \
        }                                                                                       \
    } while (0)

/* One conv case on `isa` vs the reference; returns 1 when identical. */
static int conv_case(qe_isa isa, int depthwise) {
    qe_conv_shape s = {0};
    s.groups = depthwise ? (size_t)rint_in(1, 70) : (size_t)rint_in(1, 3);
    const size_t cin_g = depthwise ? 1 : (size_t)rint_in(1, 9);
    const size_t cout_g = depthwise ? 1 : (size_t)rint_in(1, 9);
    s.in_c = cin_g * s.groups, s.out_c = cout_g * s.groups;
    s.kernel_h = rint_in(1, 4), s.kernel_w = rint_in(1, 4);
    s.stride_h = rint_in(1, 2), s.stride_w = rint_in(1, 2);
    s.dilation_h = rint_in(1, 2), s.dilation_w = rint_in(1, 2);
    s.pad_top = rint_in(0, 2), s.pad_left = rint_in(0, 2), s.pad_bottom = rint_in(0, 2),
    s.pad_right = rint_in(0, 2);
    s.batch = rint_in(1, 2);
    s.in_h = (s.kernel_h - 1) * s.dilation_h + 1 + rint_in(0, 5);
    s.in_w = (s.kernel_w - 1) * s.dilation_w + 1 + rint_in(0, 5);
    s.out_h = (s.in_h + s.pad_top + s.pad_bottom - (s.kernel_h - 1) * s.dilation_h - 1) / s.stride_h + 1;
    s.out_w = (s.in_w + s.pad_left + s.pad_right - (s.kernel_w - 1) * s.dilation_w - 1) / s.stride_w + 1;
    const size_t K = s.kernel_h * s.kernel_w * cin_g, nx = s.batch * s.in_h * s.in_w * s.in_c;
    const size_t npx = s.batch * s.out_h * s.out_w, ny = npx * s.out_c;
    uint8_t *x = malloc(nx);
    int8_t *w = malloc(s.out_c * K);
    int32_t *bias = malloc(s.out_c * 4), *wzp = malloc(s.out_c * 4);
    float *scale = malloc(s.out_c * 4), *fbias = malloc(s.out_c * 4);
    uint8_t *y0 = malloc(ny * 4), *y1 = malloc(ny * 4);
    fill_u8(x, nx);
    fill_u8((uint8_t *)w, s.out_c * K);
    for (size_t c = 0; c < s.out_c; c++) {
        bias[c] = rint_in(-100000, 100000), wzp[c] = rint_in(-128, 127);
        scale[c] = rscale(), fbias[c] = (float)rint_in(-50, 50) / 7.0f;
    }
    const qe_out_kind kind = (qe_out_kind)rint_in(0, 2);
    const qe_output out = {.kind = kind, .bias = bias, .scale = scale, .per_channel = rint_in(0, 1),
                           .zero_point = rint_in(0, 255), .qmin = 0, .qmax = 255,
                           .fbias = kind == QE_OUT_F32 ? fbias : NULL};
    const int32_t x_zp = rint_in(0, 255);
    const int32_t *wz = rnd() % 2 ? wzp : NULL;
    qe_conv_packed *p0 = qe_conv_pack(&s, w, QE_ISA_REF), *p1 = qe_conv_pack(&s, w, isa);
    CHECK(p0 && p1, "conv pack failed");
    CHECK(qe_conv_u8s8(p0, &s, x, x_zp, wz, &out, y0, s.out_c) == QE_OK, "conv ref call");
    CHECK(qe_conv_u8s8(p1, &s, x, x_zp, wz, &out, y1, s.out_c) == QE_OK, "conv call");
    CHECK(!memcmp(y0, y1, ny * (kind == QE_OUT_U8 ? 1 : 4)), "conv %s C=%zu groups=%zu k=%zux%zu kind=%d",
          qe_conv_packed_method(p1), s.in_c, s.groups, s.kernel_h, s.kernel_w, (int)kind);
    qe_conv_packed_free(p0);
    qe_conv_packed_free(p1);
    free(x), free(w), free(bias), free(wzp), free(scale), free(fbias), free(y0), free(y1);
    return 1;
}

/* Runs `call` on the reference and on `isa` (active path) and compares n bytes of output. */
#define BOTH(isa, y0, y1, nbytes, call_y, what)                                                 \
    do {                                                                                        \
        qe_set_isa(QE_ISA_REF);                                                                 \
        uint8_t *Y = (y0);                                                                      \
        CHECK((call_y) == QE_OK, "%s ref call", what);                                          \
        qe_set_isa(isa);                                                                        \
        Y = (y1);                                                                               \
        CHECK((call_y) == QE_OK, "%s call", what);                                              \
        CHECK(!memcmp(y0, y1, nbytes), "%s differs", what);                                     \
    } while (0)

/* The pooled-column kernel of the fused Conv+MaxPool on `isa` vs the reference. */
static int pool_column_case(qe_isa isa, size_t channels) {
    const size_t kernel = rint_in(1, 3), rows = rint_in(kernel, 12), ncols = rint_in(0, 3);
    const size_t stride = rint_in(1, 2), pad = rint_in(0, kernel - 1);
    const size_t out_rows = (rows + 2 * pad - kernel) / stride + 1, ldy = channels + rint_in(0, 3);
    uint8_t *cols = malloc(3 * rows * channels), *y0 = malloc(out_rows * ldy), *y1 = malloc(out_rows * ldy);
    const uint8_t *colp[3] = {cols, cols + rows * channels, cols + 2 * rows * channels};
    fill_u8(cols, 3 * rows * channels);
    memset(y0, 0, out_rows * ldy), memset(y1, 0, out_rows * ldy);
    qe_maxpool_column_for(QE_ISA_REF)(out_rows, channels, colp, ncols, rows, kernel, stride, pad, y0, ldy);
    qe_maxpool_column_for(isa)(out_rows, channels, colp, ncols, rows, kernel, stride, pad, y1, ldy);
    CHECK(!memcmp(y0, y1, out_rows * ldy), "maxpool column C=%zu rows=%zu cols=%zu k=%zu", channels,
          rows, ncols, kernel);
    free(cols), free(y0), free(y1);
    return 1;
}

static int pool_case(qe_isa isa) {
    static const size_t chans[] = {1, 5, 15, 16, 17, 31, 33, 64, 65, 100};
    qe_pool_shape s = {0};
    s.batch = rint_in(1, 2), s.channels = chans[rnd() % 10];
    s.kernel_h = rint_in(1, 3), s.kernel_w = rint_in(1, 3);
    s.stride_h = rint_in(1, 2), s.stride_w = rint_in(1, 2), s.dilation_h = 1, s.dilation_w = 1;
    s.pad_top = rint_in(0, 1), s.pad_left = rint_in(0, 1), s.pad_bottom = rint_in(0, 1), s.pad_right = rint_in(0, 1);
    s.in_h = s.kernel_h + rint_in(0, 6), s.in_w = s.kernel_w + rint_in(0, 6);
    s.out_h = (s.in_h + s.pad_top + s.pad_bottom - s.kernel_h) / s.stride_h + 1;
    s.out_w = (s.in_w + s.pad_left + s.pad_right - s.kernel_w) / s.stride_w + 1;
    const size_t nx = s.batch * s.in_h * s.in_w * s.channels, ny = s.batch * s.out_h * s.out_w * s.channels;
    uint8_t *x = malloc(nx), *y0 = malloc(ny), *y1 = malloc(ny);
    fill_u8(x, nx);
    const float mult = rscale() * 100;
    const int32_t xz = rint_in(0, 255), yz = rint_in(0, 255), cip = rint_in(0, 1);
    BOTH(isa, y0, y1, ny, qe_maxpool_u8(&s, x, Y), "maxpool");
    BOTH(isa, y0, y1, ny, qe_avgpool_u8(&s, cip, x, xz, mult, yz, 3, 250, Y), "avgpool");
    const size_t hw = s.in_h * s.in_w, ng = s.batch * s.channels;
    BOTH(isa, y0, y1, ng, qe_global_avgpool_u8(s.batch, hw, s.channels, x, xz, mult, yz, 0, 255, Y),
         "global avgpool");
    free(x), free(y0), free(y1);
    return pool_column_case(isa, s.channels);
}

static int eltwise_case(qe_isa isa) {
    const size_t rows = rint_in(1, 9), cols = rint_in(1, 70), n = rows * cols;
    uint8_t *a = malloc(n), *b = malloc(n), *y0 = malloc(n * 4), *y1 = malloc(n * 4), t[256];
    fill_u8(a, n), fill_u8(b, n), fill_u8(t, 256);
    const qe_binary_params p = {.a_zp = rint_in(0, 255), .b_zp = rint_in(0, 255), .y_zp = rint_in(0, 255),
                                .a_mult = rscale() * 10, .b_mult = rscale() * 10, .qmin = 2, .qmax = 253};
    BOTH(isa, y0, y1, n, qe_add_u8(rows, cols, a, b, cols, 0, &p, Y), "add full");
    BOTH(isa, y0, y1, n, qe_add_u8(rows, cols, a, b, 0, 0, &p, Y), "add per-channel");
    BOTH(isa, y0, y1, n, qe_mul_u8(rows, cols, a, b, cols, 0, &p, Y), "mul full");
    BOTH(isa, y0, y1, n, qe_mul_u8(rows, cols, a, b, 0, 1, &p, Y), "mul scalar");
    BOTH(isa, y0, y1, n, qe_lut_u8(n, a, t, Y), "lut");
    BOTH(isa, y0, y1, n, qe_requantize_u8(rows, cols, a, cols, p.a_zp, p.a_mult, p.y_zp, 0, 255, Y, cols),
         "requantize");
    float *xf = malloc(n * 4), sc[70];
    int32_t zp[70], zs[70], *xi = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        xf[i] = (float)((int)rnd() % 20000) / 37.0f;
        xi[i] = (int32_t)rnd();
    }
    xf[0] = NAN;
    if (n > 2) xf[1] = INFINITY, xf[2] = -INFINITY;
    for (size_t c = 0; c < cols; c++) sc[c] = rscale(), zp[c] = rint_in(0, 255), zs[c] = rint_in(-128, 127);
    BOTH(isa, y0, y1, n, qe_quantize_f32_u8(n, cols, xf, sc, zp, 0, 255, Y), "quantize u8");
    BOTH(isa, y0, y1, n, qe_quantize_f32_s8(n, 1, xf, sc, zs, -127, 127, (int8_t *)Y), "quantize s8");
    BOTH(isa, y0, y1, n * 4, qe_dequantize_u8_f32(n, cols, a, sc, zp, (float *)Y), "dequantize u8");
    BOTH(isa, y0, y1, n * 4, qe_dequantize_s8_f32(n, 1, (const int8_t *)a, sc, zs, (float *)Y), "dequantize s8");
    BOTH(isa, y0, y1, n * 4, qe_dequantize_s32_f32(n, cols, xi, sc, (float *)Y), "dequantize s32");
    free(a), free(b), free(y0), free(y1), free(xf), free(xi);
    return 1;
}

int main(void) {
    const qe_isa paths[] = {QE_ISA_NEON, QE_ISA_NEON_DOTPROD};
    for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
        const qe_isa isa = paths[k];
        if (!qe_isa_available(isa)) {
            printf("%s: not available\n", qe_isa_name(isa));
            continue;
        }
        int cases = 0;
        for (int i = 0; i < 300 && !g_failed; i++) {
            qe_set_num_threads(1 + i % 2);
            cases += conv_case(isa, i % 2) + pool_case(isa) + eltwise_case(isa);
        }
        if (g_failed) return 1;
        printf("%s: %d cases bit-identical\n", qe_isa_name(isa), cases);
        const uint64_t probe = qe_int8_peak_probe(isa, 5);
        printf("%s: peak probe %llu ops per round\n", qe_isa_name(isa),
               (unsigned long long)(probe / 5));
    }
    return 0;
}
