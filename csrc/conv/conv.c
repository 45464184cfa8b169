/*
 * conv.c -- NHWC int8 convolution: shape checks, weight packing, and the entry point that
 * validates a call and hands it to the driver of the method chosen at pack time.
 */
#include <stdlib.h>
#include <string.h>

#include "conv.h"

/* The depthwise kernel (and weight layout) of each ISA (NULL: the reference). */
static const qe_dw_ukernel *const g_dw_ukernels[QE_ISA_COUNT] = {
    [QE_ISA_REF] = &qe_dw_ref,
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = &qe_dw_avx2,
    [QE_ISA_AVX512VNNI] = &qe_dw_avx512vnni,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = &qe_dw_neon,
    [QE_ISA_NEON_DOTPROD] = &qe_dw_neon,
#endif
};

typedef int (*qe_conv_driver)(const qe_conv_packed *, const qe_conv_shape *, const uint8_t *,
                              int32_t, const int32_t *, const qe_output *, const uint8_t *,
                              void *, size_t);

/* The driver and the public name of each method. */
static const struct {
    const char *name;
    qe_conv_driver run;
} g_methods[] = {
    [QE_CONV_DW] = {"dwconv", qe_conv_run_dw},
    [QE_CONV_1X1] = {"gemm_1x1", qe_conv_run_gemm},
    [QE_CONV_IM2COL] = {"gemm_im2col", qe_conv_run_gemm},
};

/* The fixed part of a shape: what packing depends on. */
static int fixed_part_ok(const qe_conv_shape *s) {
    const size_t v[] = {s->in_c, s->out_c, s->kernel_h, s->kernel_w, s->stride_h, s->stride_w,
                        s->dilation_h, s->dilation_w, s->groups};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (v[i] == 0 || v[i] > QE_MAX_DIM) return 0;
    if (s->pad_top > QE_MAX_DIM || s->pad_left > QE_MAX_DIM || s->pad_bottom > QE_MAX_DIM ||
        s->pad_right > QE_MAX_DIM)
        return 0;
    return qe_umod(s->in_c, s->groups) == 0 && qe_umod(s->out_c, s->groups) == 0;
}

static int fixed_part_equal(const qe_conv_shape *a, const qe_conv_shape *b) {
    return a->in_c == b->in_c && a->out_c == b->out_c && a->kernel_h == b->kernel_h &&
           a->kernel_w == b->kernel_w && a->stride_h == b->stride_h && a->stride_w == b->stride_w &&
           a->dilation_h == b->dilation_h && a->dilation_w == b->dilation_w &&
           a->pad_top == b->pad_top && a->pad_left == b->pad_left &&
           a->pad_bottom == b->pad_bottom && a->pad_right == b->pad_right && a->groups == b->groups;
}

/* Output size along one axis, or 0 when the padded input cannot hold one dilated kernel. */
static size_t out_size(size_t in, size_t k, size_t stride, size_t dil, size_t pad0, size_t pad1) {
    const size_t extent = dil * (k - 1) + 1, padded = in + pad0 + pad1;
    return padded < extent ? 0 : qe_udiv(padded - extent, stride) + 1;
}

int qe_conv_shape_check(const qe_conv_shape *s) {
    if (!s || !fixed_part_ok(s)) return QE_ERR_ARG;
    const size_t v[] = {s->batch, s->in_h, s->in_w, s->out_h, s->out_w};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (v[i] == 0 || v[i] > QE_MAX_DIM) return QE_ERR_ARG;
    if (s->out_h != out_size(s->in_h, s->kernel_h, s->stride_h, s->dilation_h, s->pad_top,
                             s->pad_bottom) ||
        s->out_w != out_size(s->in_w, s->kernel_w, s->stride_w, s->dilation_w, s->pad_left,
                             s->pad_right))
        return QE_ERR_ARG;
    /* kernel sizes <= 2^24 each: the product fits size_t; K bounds the accumulator */
    if (s->kernel_h * s->kernel_w > QE_MAX_K ||
        s->kernel_h * s->kernel_w * qe_udiv(s->in_c, s->groups) > QE_MAX_K)
        return QE_ERR_OVERFLOW;
    return QE_OK;
}

void qe_conv_packed_free(qe_conv_packed *p) {
    if (!p) return;
    if (p->gemm)
        for (size_t g = 0; g < p->shape.groups; g++) qe_gemm_packed_free(p->gemm[g]);
    free(p->gemm);
    free(p->dw_w);
    qe_aligned_free(p->dw_packed);
    if (p->dw_cuts)
        for (size_t i = 0; i < p->shape.kernel_h * p->shape.kernel_h; i++)
            qe_aligned_free(p->dw_cuts[i]);
    free(p->dw_cuts);
    free(p->dw_wsum);
    free(p->dw_pos);
    qe_dw_consts_free(p->dw_consts);
    free(p);
}

/* Depthwise: keep the int8 weights (a call with w_zp repacks from them) and pack them with
 * w_zp = 0 for calls without. */
static int pack_dw(qe_conv_packed *p, const int8_t *w) {
    p->dw = QE_PICK(g_dw_ukernels, p->isa);
    const size_t C = p->shape.out_c, T = p->K, wbytes = qe_dw_packed_bytes(p->dw, T, C);
    p->dw_w = malloc(C * T);
    p->dw_wsum = malloc(C * sizeof(int32_t));
    int16_t *wt = malloc(C * T * sizeof(int16_t));
    p->dw_packed = qe_aligned_alloc(wbytes);
    const size_t kh = p->shape.kernel_h;
    p->dw_cuts = T <= QE_DW_MAX_CUT_TAPS ? calloc(kh * kh, sizeof(void *)) : NULL;
    if (!p->dw_w || !p->dw_wsum || !wt || !p->dw_packed ||
        (T <= QE_DW_MAX_CUT_TAPS && !p->dw_cuts)) {
        free(wt);
        return QE_ERR_NOMEM;
    }
    memcpy(p->dw_w, w, C * T);
    qe_dw_taps_by_channel(w, T, C, 0, T, NULL, wt, p->dw_wsum);
    qe_dw_pack_weights(p->dw, T, C, wt, p->dw_packed);
    free(wt);
    if (p->dw->layout == QE_DW_QUADS_S8) { /* the per-call init and scales go in this order */
        p->dw_pos = malloc(C * sizeof(uint32_t));
        if (!p->dw_pos) return QE_ERR_NOMEM;
        for (size_t c = 0; c < C; c++) p->dw_pos[c] = (uint32_t)qe_dwq_position(C, c);
        p->nbytes += C * sizeof(uint32_t);
    }
    p->nbytes += C * T + C * sizeof(int32_t) + wbytes;
    if (p->dw_cuts) p->nbytes += kh * kh * sizeof(void *);
    return QE_OK;
}

/* GEMM methods: group g's B is K x cout_g with element (k, n) at w[(g*cout_g + n)*K + k]. */
static int pack_gemm(qe_conv_packed *p, const int8_t *w) {
    const size_t G = p->shape.groups;
    p->gemm = calloc(G, sizeof(*p->gemm));
    if (!p->gemm) return QE_ERR_NOMEM;
    for (size_t g = 0; g < G; g++) {
        p->gemm[g] = qe_gemm_pack(w + g * p->cout_g * p->K, p->K, p->cout_g, 1,
                                  (ptrdiff_t)p->K, 0, p->isa);
        if (!p->gemm[g]) return QE_ERR_NOMEM;
        p->nbytes += qe_gemm_packed_nbytes(p->gemm[g]);
    }
    return QE_OK;
}

qe_conv_packed *qe_conv_pack(const qe_conv_shape *s, const int8_t *w, qe_isa isa) {
    if (!s || !w || !fixed_part_ok(s) || (int)isa < 0 || isa >= QE_ISA_COUNT ||
        !qe_isa_available(isa))
        return NULL;
    const size_t K = s->kernel_h * s->kernel_w * (s->in_c / s->groups);
    if (s->kernel_h * s->kernel_w > QE_MAX_K || K > QE_MAX_K) return NULL;
    qe_conv_packed *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->shape = *s;
    p->isa = isa;
    p->cin_g = s->in_c / s->groups;
    p->cout_g = s->out_c / s->groups;
    p->K = K;
    p->nbytes = sizeof(*p);
    const int pointwise = s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1 &&
                          s->stride_w == 1 && !s->pad_top && !s->pad_left && !s->pad_bottom &&
                          !s->pad_right;
    if (s->groups == s->in_c && s->groups == s->out_c)
        p->method = QE_CONV_DW;
    else
        p->method = pointwise ? QE_CONV_1X1 : QE_CONV_IM2COL;
    const int rc = p->method == QE_CONV_DW ? pack_dw(p, w) : pack_gemm(p, w);
    if (rc != QE_OK) {
        qe_conv_packed_free(p);
        return NULL;
    }
    return p;
}

size_t qe_conv_packed_nbytes(const qe_conv_packed *p) { return p->nbytes; }
qe_isa qe_conv_packed_isa(const qe_conv_packed *p) { return p->isa; }
const char *qe_conv_packed_method(const qe_conv_packed *p) { return g_methods[p->method].name; }
qe_gemm_packed *qe_conv_packed_gemm(const qe_conv_packed *p, size_t g) {
    return p && p->gemm && g < p->shape.groups ? p->gemm[g] : NULL;
}

/* The output pipeline's arguments as documented in qe_kernels.h. */
static int output_ok(const qe_output *o) {
    switch (o->kind) {
    case QE_OUT_I32:
        return 1;
    case QE_OUT_F32:
        return o->scale != NULL;
    case QE_OUT_U8:
        return o->scale != NULL && o->zero_point >= 0 && o->zero_point <= 255 && o->qmin >= 0 &&
               o->qmin <= o->qmax && o->qmax <= 255;
    }
    return 0;
}

int qe_conv_u8s8(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x, int32_t x_zp,
                 const int32_t *w_zp, const qe_output *out, void *y, size_t ldy) {
    return qe_conv_u8s8_lut(p, s, x, x_zp, w_zp, out, NULL, y, ldy);
}

/* The checks every convolution call passes before its driver runs. */
static int conv_call_ok(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                        int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                        const uint8_t *table, const void *y, size_t ldy) {
    if (!p || !x || !out || !y || (table && out->kind != QE_OUT_U8)) return QE_ERR_ARG;
    const int rc = qe_conv_shape_check(s);
    if (rc != QE_OK) return rc;
    if (!fixed_part_equal(s, &p->shape) || x_zp < 0 || x_zp > 255 || ldy < s->out_c ||
        !output_ok(out))
        return QE_ERR_ARG;
    if (w_zp)
        for (size_t c = 0; c < s->out_c; c++)
            if (w_zp[c] < -128 || w_zp[c] > 127) return QE_ERR_ARG;
    return QE_OK;
}

int qe_conv_u8s8_lut(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                     int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                     const uint8_t table[256], void *y, size_t ldy) {
    const int rc = conv_call_ok(p, s, x, x_zp, w_zp, out, table, y, ldy);
    if (rc != QE_OK) return rc;
    return g_methods[p->method].run(p, s, x, x_zp, w_zp, out, table, y, ldy);
}

int qe_conv_maxpool_ok(const qe_conv_packed *p, const qe_conv_shape *s) {
    return p && s && qe_conv_shape_check(s) == QE_OK && fixed_part_equal(s, &p->shape) &&
           qe_conv_colstrip_ok(p, s);
}

int qe_conv_u8s8_maxpool(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                         int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                         const uint8_t table[256], const qe_pool_shape *pool, uint8_t *y,
                         size_t ldy) {
    const int rc = conv_call_ok(p, s, x, x_zp, w_zp, out, table, y, ldy);
    if (rc != QE_OK) return rc;
    if (!pool || out->kind != QE_OUT_U8 || !qe_conv_maxpool_ok(p, s) ||
        qe_pool_shape_check(pool) != QE_OK || pool->batch != s->batch ||
        pool->in_h != s->out_h || pool->in_w != s->out_w || pool->channels != s->out_c ||
        pool->dilation_h != 1 || pool->dilation_w != 1)
        return QE_ERR_ARG;
    return qe_conv_run_colstrip_maxpool(p, s, x, x_zp, w_zp, out, table, pool, y, ldy);
}
