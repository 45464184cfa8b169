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
 * Packed weights: channels in tiles (16, or 32 for AVX-512), taps in pairs (an odd tap count
 * gets a dummy tap of weight 0). Within a tile and a pair the layout is [lane][tap of the pair]
 * int16:
 *   w[((tile * npairs + pair) * tile_size + lane) * 2 + tap % 2]
 * which is what interleaving two taps and widening them to int16 gives, so x86 multiplies a pair
 * with one vpmaddwd / vpdpwssd. Lane l holds channel l of the tile, except in the AVX-512 layout,
 * whose lanes follow the 128-bit-lane order of vpunpck{l,h}wd (qe_dw_lane_channel).
 * Weights are stored as w - w_zp (|.| <= 255); padding channels and the dummy tap hold 0. */
#define QE_DW_TILE 16

typedef struct {
    size_t channels;       /* C */
    size_t npairs;         /* ceil(taps / 2) */
    const int16_t *w;      /* packed as above */
    const int32_t *init;   /* [round_up(C, 64)]: bias[c] - x_zp * sum_t w[t][c]  (wrapping) */
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

/* A depthwise kernel with its weight layout. */
typedef struct {
    qe_dwconv_fn kernel;
    size_t tile;       /* channels per tile */
    int unpack_order;  /* 1: lanes in vpunpck{l,h}wd order (qe_dw_lane_channel) */
} qe_dw_ukernel;
extern const qe_dw_ukernel qe_dw_ref;
#if defined(QE_BUILD_X86)
extern const qe_dw_ukernel qe_dw_avx2, qe_dw_avx512vnni;
#endif
#if defined(QE_BUILD_ARM64)
extern const qe_dw_ukernel qe_dw_neon;
#endif


/* The channel (within a 32-channel tile) of lane l in the unpack order: lanes 0-15 are the
 * first vpdpwssd's int32 lanes, fed by vpunpcklwd (words 0-3 of each 128-bit lane), 16-31 the
 * second's, fed by vpunpckhwd (words 4-7). */
static inline size_t qe_dw_lane_channel(size_t l) {
    const size_t k = l % 16;
    return 8 * (k / 4) + 4 * (l / 16) + k % 4;
}

/* Lay out int16 weights wt[t][c] (taps x C, already w - w_zp) for `uk` into dst. */
void qe_dw_pack_weights(const qe_dw_ukernel *uk, size_t taps, size_t channels, const int16_t *wt,
                        int16_t *dst);
static inline size_t qe_dw_packed_count(const qe_dw_ukernel *uk, size_t taps, size_t channels) {
    return QE_ROUND_UP(channels, uk->tile) * QE_DIV_UP(taps, 2) * 2;
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
    const qe_dw_ukernel *dw;
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
