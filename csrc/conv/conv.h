/*
 * conv.h -- inside the NHWC convolution: the packed object, and the depthwise kernel interface
 * that the per-ISA files implement.
 *
 * Three methods, chosen once at pack time (qe_conv_pack):
 *   gemm_1x1     the input pixels are the rows of the GEMM's A (lda = in_c, group offset g*cin_g);
 *   gemm_im2col  blocks of im2col rows, built in per-thread scratch inside one qe_parallel_for,
 *                feed qe_gemm_u8s8_serial (one packed B per group);
 *   dwconv       a direct depthwise kernel vectorized over channels (groups == in_c == out_c).
 */
#ifndef QE_CONV_H
#define QE_CONV_H

#include "../gemm/qgemm.h"
#include "../output.h"

typedef enum { QE_CONV_DW = 0, QE_CONV_1X1 = 1, QE_CONV_IM2COL = 2 } qe_conv_method;

/* ---- depthwise ------------------------------------------------------------------------------
 * Packed weights: channels in tiles of QE_DW_TILE, taps in pairs (an odd tap count gets a dummy
 * tap of weight 0). Within a tile and a pair the layout is [channel][tap of the pair] int16:
 *   w[((tile * npairs + pair) * QE_DW_TILE + c % QE_DW_TILE) * 2 + tap % 2]
 * which is what interleaving the bytes of two taps and widening them to int16 gives, so x86
 * multiplies a pair with one vpmaddwd / vpdpwssd. Weights are stored as w - w_zp (|.| <= 255),
 * and padding channels and the dummy tap hold 0. */
#define QE_DW_TILE 16

typedef struct {
    size_t channels;       /* C */
    size_t npairs;         /* ceil(taps / 2) */
    const int16_t *w;      /* packed as above */
    const int32_t *init;   /* [round_up(C, tile)]: bias[c] - x_zp * sum_t w[t][c]   (wrapping) */
    const qe_output *out;  /* output pipeline; its bias is already in init and is ignored */
    size_t ldy;            /* output pixel stride, in elements */
} qe_dw_params;

/* acc[c] = init[c] + sum_{t < 2*npairs} taps[px * 2*npairs + t][c] * w[t][c]  (int32, wrapping)
 * for `pixels` output pixels and every channel, then the output pipeline into
 * y + px * ldy * elem_size. A tap pointer addresses channel 0 of an input pixel, or a row of
 * x_zp bytes for taps in the padding (x_zp * w is cancelled by init). Pointers are readable for
 * `channels` bytes; the x_zp row for round_up(C, tile). */
typedef void (*qe_dwconv_fn)(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                             void *y);

void qe_dwconv_u8s8_ref(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps, void *y);
#if defined(QE_BUILD_X86)
void qe_dwconv_u8s8_up32__avx2(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               void *y);
void qe_dwconv_u8s8_up64__avx512vnni(const qe_dw_params *p, size_t pixels,
                                     const uint8_t *const *taps, void *y);
#endif
#if defined(QE_BUILD_ARM64)
void qe_dwconv_u8s8_up16__neon(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               void *y);
#endif

/* Lay out int16 weights wt[t][c] (taps x C, already w - w_zp) as above into dst. */
void qe_dw_pack_weights(size_t taps, size_t channels, const int16_t *wt, int16_t *dst);
static inline size_t qe_dw_packed_count(size_t taps, size_t channels) {
    return QE_ROUND_UP(channels, QE_DW_TILE) * QE_DIV_UP(taps, 2) * 2;
}

/* ---- the packed convolution ----------------------------------------------------------------- */
struct qe_conv_packed {
    qe_conv_shape shape;      /* the fixed part is what counts; spatial sizes as packed */
    qe_conv_method method;
    qe_isa isa;
    size_t cin_g, cout_g, K;  /* per group; K = kernel_h * kernel_w * cin_g */
    /* GEMM methods: one packed B (K x cout_g) per group */
    qe_gemm_packed **gemm;
    /* dwconv: the kernel of this ISA, weights as given (int8 [C][taps]) and packed with w_zp 0 */
    qe_dwconv_fn dw_kernel;
    int8_t *dw_w;
    int16_t *dw_packed;
    int32_t *dw_wsum;         /* [C] sum over taps of w */
    size_t nbytes;
};

/* The drivers of each method (arguments validated by qe_conv_u8s8). */
int qe_conv_run_gemm(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                     int32_t x_zp, const int32_t *w_zp, const qe_output *out, void *y, size_t ldy);
int qe_conv_run_dw(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                   int32_t x_zp, const int32_t *w_zp, const qe_output *out, void *y, size_t ldy);

#endif
