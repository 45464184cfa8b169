/*
 * conv.h -- inside the NHWC convolution: the packed object, and the depthwise kernel interface
 * that the per-ISA files implement.
 *
 * Three methods, chosen once at pack time (qe_conv_pack):
 *   gemm_1x1     the input pixels are the rows of the GEMM's A (lda = in_c, group offset g*cin_g);
 *   gemm_im2col  blocks of im2col rows, built in per-thread scratch inside one qe_parallel_for,
 *                feed qe_gemm_u8s8_serial (one packed B per group); interior strips of pixels
 *                are read in place where the family can (conv_gemm.c), and convolutions with
 *                short kernel rows (the 3-channel stems) take column strips (conv_colstrip.c);
 *   dwconv       a direct depthwise kernel vectorized over channels (groups == in_c == out_c).
 */
#ifndef QE_CONV_H
#define QE_CONV_H

#include "../gemm/qgemm.h"
#include "../output.h"

typedef enum { QE_CONV_DW = 0, QE_CONV_1X1 = 1, QE_CONV_IM2COL = 2 } qe_conv_method;

/* ---- depthwise ------------------------------------------------------------------------------
 * Two packed weight layouts; each kernel reads one (qe_dw_ukernel.layout).
 *
 * QE_DW_PAIRS_S16 (reference, AVX2, NEON, and AVX-512 calls with weight zero points): channels
 * in tiles (16, or 32 for AVX-512), taps in pairs (an odd tap count gets a dummy tap of weight
 * 0). Within a tile and a pair the layout is [lane][tap of the pair] int16:
 *   w[((tile * npairs + pair) * tile_size + lane) * 2 + tap % 2]
 * which is what interleaving two taps and widening them to int16 gives, so x86 multiplies a pair
 * with one vpmaddwd / vpdpwssd. Lane l holds channel l of the tile, except in the AVX-512 layout,
 * whose lanes follow the 128-bit-lane order of vpunpck{l,h}wd (qe_dw_lane_channel).
 * Weights are stored as w - w_zp (|.| <= 255); padding channels and the dummy tap hold 0.
 *
 * QE_DW_QUADS_S8 (AVX-512 VNNI, calls without weight zero points): int8 weights, taps in quads
 * (missing taps of the last quad weigh 0), channels in blocks of 64 (the last block of a count
 * that is not a multiple of 64 is 16, 32 or 64 wide: qe_dwq_block_width). Interleaving four
 * taps' bytes with vpunpck{l,h}bw then vpunpck{l,h}wd puts, in 128-bit lane j of the k-th
 * result (k = 0..3), the four taps of channels 16j + 4k + e (e = 0..3) in dword 4j + e: one
 * vpdpbusd per k multiplies them. So within a block of width W at channel c0, channel
 * c0 + 16j + 4k + e has position c0 + k * W/4 + 4j + e (qe_dwq_position), and
 *   w[c0 * 4 * nquads + (quad * 4 + k) * W + (4j + e) * 4 + tap % 4]
 * The kernel's accumulators, its init and its per-channel scales follow the positions; two
 * in-lane packs (vpackssdw, vpackuswb) of the four accumulators restore the natural order.
 * A 9-tap kernel (3 x 3) also gets the tap triples after the quads, for runs of pixels one
 * input pixel apart whose taps 3g, 3g+1, 3g+2 address adjacent pixels (qe_dwq_triples): per
 * triple g and variant v, the same block / k / lane order with the quad bytes
 *   v = 0: (w[3g], w[3g+1], w[3g+2], 0)      v = 1: (0, w[3g], w[3g+1], w[3g+2])
 * at w3[c0 * 24 + ((g * 2 + v) * 4 + k) * W + (4j + e) * 4 + byte]: one quad of input pixels
 * px .. px+3 then serves output pixel px (v = 0) and px + 1 (v = 1).
 * A window of R rows of 5 taps (5 x 5, or a cut of one: T = 5R <= 25) gets the tap fives after
 * that, for runs whose output pixels step by one tap (qe_dwq_fives): per row g, output offset
 * j = 0..3 and half h = 0..1, the quad bytes b = 0..3 weigh tap 4h + b - j of the row (0 outside
 * 0..4), at w5[c0 * 32 * R + (((g * 4 + j) * 2 + h) * 4 + k) * W + (4j' + e) * 4 + b] (j': the
 * 128-bit lane): the quads of input pixels i .. i+3 (h = 0) and i+4 .. i+7 (h = 1) then serve
 * the four output pixels i .. i+3. */
#define QE_DW_TILE 16

typedef enum { QE_DW_PAIRS_S16 = 0, QE_DW_QUADS_S8 = 1 } qe_dw_layout;

typedef struct {
    size_t channels;       /* C */
    size_t ntaps;          /* T, the taps of the kernel window */
    size_t tap_stride;     /* tap pointers per output pixel: T rounded up to the layout's group */
    const void *w;         /* packed in the kernel's layout */
    const int8_t *w3;      /* QUADS_S8 with 9 taps: the tap triples (above), else NULL */
    const int8_t *w5;      /* QUADS_S8 with 5, 10, .. 25 taps: the tap fives (above), else NULL */
    const int32_t *init;   /* [round_up(C, 64)], kernel order: bias[c] - x_zp * sum_t w[t][c] */
    const float *scale;    /* QUADS_S8 with per-channel scales: out->scale in kernel order */
    const qe_output *out;  /* output pipeline; its bias is already in init and is ignored */
    size_t ldy;            /* output pixel stride, in elements */
} qe_dw_params;

/* PAIRS_S16: the pairs of taps, ceil(T / 2) (the tap stride of that layout is 2 per pair). */
static inline size_t qe_dw_npairs(const qe_dw_params *p) { return p->tap_stride / 2; }

/* acc[c] = init[c] + sum_{t < T} tap(px, t)[c] * w[t][c]  (int32, wrapping)
 * for `pixels` output pixels and every channel, then the output pipeline into
 * y + px * ldy * elem_size. With step 0 (the indirection), tap(px, t) = taps[px * tap_stride + t];
 * with step > 0 (a run of pixels whose windows are inside the input, step = stride_w * C bytes
 * apart), one set of tap_stride pointers serves every pixel: tap(px, t) = taps[t] + px * step.
 * A tap pointer addresses channel 0 of an input pixel, or a row of x_zp bytes for taps in the
 * padding (x_zp * w is cancelled by init). The pointers past T (up to tap_stride) weigh 0 and
 * may address any readable pixel (a kernel may read them). Pointers are readable for `channels`
 * bytes; the x_zp row for round_up(C, 64). */
typedef void (*qe_dwconv_fn)(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                             size_t step, void *y);

void qe_dwconv_u8s8_ref(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                        size_t step, void *y);
#if defined(QE_BUILD_X86)
void qe_dwconv_u8s8_up32__avx2(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               size_t step, void *y);
void qe_dwconv_u8s16_up64__avx512vnni(const qe_dw_params *p, size_t pixels,
                                      const uint8_t *const *taps, size_t step, void *y);
void qe_dwconv_u8s8_up64c4__avx512vnni(const qe_dw_params *p, size_t pixels,
                                       const uint8_t *const *taps, size_t step, void *y);
#endif
#if defined(QE_BUILD_ARM64)
void qe_dwconv_u8s8_up16__neon(const qe_dw_params *p, size_t pixels, const uint8_t *const *taps,
                               size_t step, void *y);
#endif

/* A depthwise kernel with its weight layout. */
typedef struct qe_dw_ukernel {
    qe_dwconv_fn kernel;
    qe_dw_layout layout;
    size_t tile;       /* PAIRS_S16: channels per tile */
    int unpack_order;  /* PAIRS_S16: 1 = lanes in vpunpck{l,h}wd order (qe_dw_lane_channel) */
    /* The kernel for calls with weight zero points, when this layout cannot hold w - w_zp
     * (int8); NULL when this kernel takes them. */
    const struct qe_dw_ukernel *with_w_zp;
} qe_dw_ukernel;
extern const qe_dw_ukernel qe_dw_ref;
#if defined(QE_BUILD_X86)
extern const qe_dw_ukernel qe_dw_avx2, qe_dw_avx512vnni, qe_dw_avx512vnni_s16;
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

/* QUADS_S8: the width of the channel block starting at c0 (a multiple of 64), the position of
 * channel c, and the channel count rounded up to whole blocks. */
static inline size_t qe_dwq_block_width(size_t C, size_t c0) {
    const size_t r = C - c0;
    return r > 32 ? 64 : r > 16 ? 32 : 16;
}
static inline size_t qe_dwq_position(size_t C, size_t c) {
    const size_t c0 = c / 64 * 64, W = qe_dwq_block_width(C, c0), i = c - c0;
    return c0 + (i % 16 / 4) * (W / 4) + 4 * (i / 16) + i % 4;
}
static inline size_t qe_dwq_padded_channels(size_t C) {
    const size_t c0 = C / 64 * 64;
    return c0 == C ? C : c0 + qe_dwq_block_width(C, c0);
}

/* Taps per group of a layout (the indirection's tap_stride is a multiple of it). */
static inline size_t qe_dw_tap_group(const qe_dw_ukernel *uk) {
    return uk->layout == QE_DW_QUADS_S8 ? 4 : 2;
}

/* Lay out weights wt[t][c] (taps x C, already w - w_zp; within int8 for QUADS_S8) for `uk`. */
/* Taps [t0, t0 + n) of int8 weights w[C][T] as wt[t][c] = w - w_zp (w_zp NULL: 0), the layout
 * qe_dw_pack_weights takes; with wsum, also each channel's sum of those values. */
void qe_dw_taps_by_channel(const int8_t *w, size_t T, size_t C, size_t t0, size_t n,
                           const int32_t *w_zp, int16_t *wt, int32_t *wsum);
void qe_dw_pack_weights(const qe_dw_ukernel *uk, size_t taps, size_t channels, const int16_t *wt,
                        void *dst);
/* QUADS_S8: the bytes of the quads, after which the tap triples of a 9-tap kernel start. */
static inline size_t qe_dwq_quads_bytes(size_t taps, size_t channels) {
    return qe_dwq_padded_channels(channels) * QE_DIV_UP(taps, 4) * 4;
}
static inline int qe_dwq_has_triples(size_t taps) { return taps == 9; }
static inline int qe_dwq_has_fives(size_t taps) { return taps % 5 == 0 && taps <= 25; }
/* QUADS_S8: the bytes of the triples (9 taps) or the fives (5R taps); they follow the quads. */
static inline size_t qe_dwq_extra_bytes(size_t taps, size_t channels) {
    return qe_dwq_padded_channels(channels) *
           (qe_dwq_has_triples(taps) ? 24 : qe_dwq_has_fives(taps) ? 32 * (taps / 5) : 0);
}
static inline size_t qe_dw_packed_bytes(const qe_dw_ukernel *uk, size_t taps, size_t channels) {
    if (uk->layout == QE_DW_QUADS_S8)
        return qe_dwq_quads_bytes(taps, channels) + qe_dwq_extra_bytes(taps, channels);
    return QE_ROUND_UP(channels, uk->tile) * QE_DIV_UP(taps, 2) * 2 * sizeof(int16_t);
}

/* Bytes from the start of packed weights to channel c0, a multiple of 64 (a QUADS_S8 block,
 * a whole number of PAIRS_S16 tiles): a kernel run over channels [c0, C) reads from there, and
 * its blocks, init and scales are those of the full run. */
static inline size_t qe_dw_packed_offset(const qe_dw_ukernel *uk, size_t taps, size_t c0) {
    QE_ASSERT(c0 % 64 == 0);
    if (uk->layout == QE_DW_QUADS_S8) return c0 * 4 * QE_DIV_UP(taps, 4);
    return c0 * QE_DIV_UP(taps, 2) * 2 * sizeof(int16_t);
}

/* Depthwise windows of up to this many taps may be cut at the top and bottom edges (dwconv.c). */
#define QE_DW_MAX_CUT_TAPS 64

/* ---- the packed convolution ----------------------------------------------------------------- */
/* A depthwise call's constants kept with its packed convolution (dwconv.c dw_call_consts). */
typedef struct qe_dw_consts qe_dw_consts;
void qe_dw_consts_free(qe_dw_consts *k);

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
    void *dw_packed;
    int32_t *dw_wsum;         /* [C] sum over taps of w */
    /* dwconv cuts (dwconv.c dw_cut_weights): per range of kernel rows [first, first + count),
     * the weight sums [C] (64-byte padded), then the weights packed with w_zp 0; made at first
     * use, in slot first * kernel_h + count - 1 (an atomic pointer, NULL until made) */
    void **dw_cuts;           /* NULL for windows of more than QE_DW_MAX_CUT_TAPS taps */
    uint32_t *dw_pos;         /* QUADS_S8: [C] qe_dwq_position of each channel (else NULL) */
    qe_dw_consts *dw_consts;  /* the first call's constants without w_zp (an atomic pointer) */
    size_t nbytes;
};

/* The drivers of each method (arguments validated by qe_conv_u8s8_lut). lut: NULL, or a table
 * each task applies to the uint8 outputs it has just written (qe_lut_rows_inplace). */
int qe_conv_run_gemm(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                     int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                     const uint8_t *lut, void *y, size_t ldy);
/* Column strips (conv_colstrip.c): qe_conv_run_gemm hands over the calls whose shape
 * qe_conv_colstrip_ok accepts. */
int qe_conv_colstrip_ok(const qe_conv_packed *p, const qe_conv_shape *s);
int qe_conv_run_colstrip(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                         int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                         const uint8_t *lut, void *y, size_t ldy);
/* The same with a max pool over the output (qe_conv_u8s8_maxpool, arguments validated). */
int qe_conv_run_colstrip_maxpool(const qe_conv_packed *p, const qe_conv_shape *s,
                                 const uint8_t *x, int32_t x_zp, const int32_t *w_zp,
                                 const qe_output *out, const uint8_t *lut,
                                 const qe_pool_shape *pool, uint8_t *y, size_t ldy);
int qe_conv_run_dw(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                   int32_t x_zp, const int32_t *w_zp, const qe_output *out, const uint8_t *lut,
                   void *y, size_t ldy);

#endif
