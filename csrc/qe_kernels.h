/*
 * qe_kernels.h -- the C API of qengine's int8 kernels.
 *
 * The kernels know nothing of graphs or Python. A caller passes pointers, sizes, strides and a
 * parameter struct; a kernel never calls back into Python and never allocates in its hot loop
 * (weight packing allocates once; per-thread scratch grows rarely, see qe_scratch()).
 *
 * Quantization semantics (normative; ../shared/DESIGN.md and docs/quantization.md):
 *   q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)
 *   acc[m][n] = sum_k (a[m][k] - a_zp) * (b[k][n] - b_zp[n]) + bias[n]     (int32, wraps mod 2^32)
 *   requant:  y = clamp(round_half_even(float32(acc) * mult[n]) + out_zp, lo, hi)
 * Rounding happens before the zero point is added. Every float operation is float32 and none is
 * contracted into an FMA (the build uses -ffp-contract=off), so every ISA path is bit-identical
 * to the portable reference.
 *
 * Layout: activations are NHWC, uint8 with a per-tensor zero point. Weights are int8, symmetric
 * per output channel by default; an optional per-column weight zero point serves foreign models.
 *
 * Every function that can fail returns QE_OK (0) or a negative QE_ERR_* code. Arguments are
 * validated by the Python bindings before any kernel runs; kernels still assert cheap invariants.
 */
#ifndef QE_KERNELS_H
#define QE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Status                                                                                     */
/* ------------------------------------------------------------------------------------------ */
enum {
    QE_OK = 0,
    QE_ERR_ARG = -1,      /* an argument is out of its documented range */
    QE_ERR_NOMEM = -2,    /* an allocation failed */
    QE_ERR_ISA = -3,      /* the requested ISA path is not available on this CPU or build */
    QE_ERR_OVERFLOW = -4, /* K is too large: the int32 accumulator could overflow */
};

/* Largest reduction length for which sum_k (a - a_zp) * (b - b_zp) cannot overflow int32:
 * |a - a_zp| <= 255, |b - b_zp| <= 255 (uint8 weights shifted by their zero point) would give
 * 2^31 / 65025 = 33025; with symmetric int8 weights |b| <= 128 the bound is 2^31/32640 = 65793.
 * We use one bound for every path and every operand: 32768 (covers both cases). */
#define QE_MAX_K 32768

/* ------------------------------------------------------------------------------------------ */
/* ISA dispatch (csrc/dispatch.c)                                                             */
/* ------------------------------------------------------------------------------------------ */
typedef enum {
    QE_ISA_REF = 0,         /* portable C: the reference every other path must equal */
    QE_ISA_AVX2 = 1,        /* x86-64 AVX2 + FMA; exact int16 pair products (vpmaddwd) */
    QE_ISA_AVX512VNNI = 2,  /* x86-64 AVX-512 F/BW/VL + VNNI (vpdpbusd) */
    QE_ISA_NEON = 3,        /* aarch64 Advanced SIMD */
    QE_ISA_NEON_DOTPROD = 4,/* aarch64 with the dot-product extension (sdot/udot) */
    QE_ISA_COUNT = 5
} qe_isa;

/* CPU feature bits reported by qe_cpu_features(). */
#define QE_FEAT_AVX2 (1u << 0)
#define QE_FEAT_FMA (1u << 1)
#define QE_FEAT_AVX512F (1u << 2)
#define QE_FEAT_AVX512BW (1u << 3)
#define QE_FEAT_AVX512VL (1u << 4)
#define QE_FEAT_AVX512VNNI (1u << 5)
#define QE_FEAT_AVX512VBMI (1u << 6)
#define QE_FEAT_AVXVNNI (1u << 7)
#define QE_FEAT_NEON (1u << 8)
#define QE_FEAT_DOTPROD (1u << 9)

unsigned qe_cpu_features(void);
/* 1 when this CPU can run the path and this build contains it. */
int qe_isa_available(qe_isa isa);
/* The best path available (what QENGINE_ISA=auto picks). */
qe_isa qe_isa_best(void);
/* Select the active path for kernels without prepacked state; QE_ERR_ISA if unavailable. */
int qe_set_isa(qe_isa isa);
qe_isa qe_get_isa(void);
const char *qe_isa_name(qe_isa isa);
/* The int8 operations (2 per multiply-accumulate) of `iterations` rounds of the path's peak
 * probe (csrc/peak/peak.h): its GEMM tile's multiply-accumulate instructions with no loads, on
 * the calling thread; time it to get one core's peak. 0 for the reference path or an ISA this
 * CPU or build lacks. */
uint64_t qe_int8_peak_probe(qe_isa isa, uint64_t iterations);

/* ------------------------------------------------------------------------------------------ */
/* Thread pool (csrc/threadpool.c)                                                            */
/* ------------------------------------------------------------------------------------------ */
/* One pool for every kernel. Work is split into tasks whose results do not depend on which
 * thread runs them, so outputs are identical for every thread count. */
int qe_set_num_threads(int n); /* n >= 1; QE_ERR_ARG otherwise */
int qe_get_num_threads(void);
/* Jobs handed to the pool's workers since the process started (a job the caller ran alone is
 * not counted): lets tests check that a tiny kernel call stays on the calling thread. */
uint64_t qe_pool_jobs_dispatched(void);

/* ------------------------------------------------------------------------------------------ */
/* Output pipeline: what a kernel does with its int32 accumulators                            */
/* ------------------------------------------------------------------------------------------ */
typedef enum {
    QE_OUT_U8 = 0,  /* requantize: clamp(rint(float(acc) * scale[n]) + zero_point, qmin, qmax) */
    QE_OUT_I32 = 1, /* raw int32 accumulators (+ bias), as MatMulInteger / ConvInteger */
    QE_OUT_F32 = 2, /* dequantize: float(acc) * scale[n] (+ fbias[n]) for a float consumer */
} qe_out_kind;

typedef struct {
    qe_out_kind kind;
    const int32_t *bias;  /* [N] int32 bias added to acc, or NULL */
    const float *scale;   /* U8: requant multipliers; F32: dequant scales. [N] or [1] */
    int per_channel;      /* 1: scale has N entries; 0: one entry */
    int32_t zero_point;   /* U8: output zero point */
    int32_t qmin, qmax;   /* U8: clamp range; carries fused ReLU/ReLU6/Clip; 0 <= qmin <= qmax <= 255 */
    const float *fbias;   /* F32: optional float bias [N] added after scaling, or NULL */
} qe_output;

/* ------------------------------------------------------------------------------------------ */
/* GEMM: C[M][N] = output(A[M][K] (uint8) x B[K][N] (int8))  (csrc/gemm/)                      */
/* ------------------------------------------------------------------------------------------ */
/* Prepacked B with its column sums. The layout belongs to the ISA it was packed for; the packed
 * object remembers that ISA and always runs its kernels. */
typedef struct qe_gemm_packed qe_gemm_packed;

/* Pack B, element (k, n) at b[k * stride_k + n * stride_n]. `b_is_u8`: B holds uint8 values
 * (stored as bytes) that are shifted by -128 while packing; the caller then passes its zero
 * point minus 128. Returns NULL on bad arguments (K > QE_MAX_K, zero sizes) or no memory. */
qe_gemm_packed *qe_gemm_pack(const void *b, size_t K, size_t N, ptrdiff_t stride_k,
                             ptrdiff_t stride_n, int b_is_u8, qe_isa isa);
void qe_gemm_packed_free(qe_gemm_packed *p);
size_t qe_gemm_packed_k(const qe_gemm_packed *p);
size_t qe_gemm_packed_n(const qe_gemm_packed *p);
size_t qe_gemm_packed_nbytes(const qe_gemm_packed *p);
qe_isa qe_gemm_packed_isa(const qe_gemm_packed *p);
/* The register tile of the kernels p runs: mr rows x nr columns, K in groups of kr bytes */
void qe_gemm_packed_tile_shape(const qe_gemm_packed *p, size_t *mr, size_t *nr, size_t *kr);
/* sum_k b[k][n] (after the u8 shift), length N */
const int32_t *qe_gemm_packed_col_sums(const qe_gemm_packed *p);
/* A prefetch hint: the packed B a model multiplies by after this one (NULL: none). While a run
 * of p goes through its last block of B panels, it asks for the first part of next's panels
 * (the next layer's weights stream from DRAM otherwise: ResNet-18's late layers waited on
 * theirs). p records where next's panels lie and nothing else: that memory is only prefetched,
 * never read, so next may be freed first (a stale hint costs useless prefetches). It changes
 * no result. qe_gemm_packed_next_data: the address the hint names (NULL: none), and
 * qe_gemm_packed_data: where p's own panels start (tests). */
void qe_gemm_packed_set_next(qe_gemm_packed *p, const qe_gemm_packed *next);
const void *qe_gemm_packed_next_data(const qe_gemm_packed *p);
const void *qe_gemm_packed_data(const qe_gemm_packed *p);

/* C = output(sum_k (A[m][k] - a_zp) * (B[k][n] - b_zp[n])).
 * A: M rows of K uint8, row stride lda >= K. b_zp: NULL (symmetric weights) or [N] values in
 * [-128, 127] (after the u8 shift). C: M rows, row stride ldc (in elements of the output type).
 * Parallel over the thread pool; releases nothing (the caller releases the GIL). */
int qe_gemm_u8s8(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                 int32_t a_zp, const int32_t *b_zp, const qe_output *out, void *c, size_t ldc);
/* The same with a uint8 output (out->kind QE_OUT_U8) that then goes through an Add with a row
 * vector add_b of N values: C = add(C, add_b) as qe_add_u8's channel form computes it (C is
 * operand a, params add_p, below), in each task on the rows it has just written -- a MatMul's
 * bias Add run inside it, with the bits of the two steps. */
struct qe_binary_params;
int qe_gemm_u8s8_add(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                     int32_t a_zp, const int32_t *b_zp, const qe_output *out,
                     const uint8_t *add_b, const struct qe_binary_params *add_p, void *c,
                     size_t ldc);

/* MatMul of two uint8 activations (attention), batched: for i < batch,
 *   C_i = output(sum_k (A_i[m][k] - a_zp) * (B_i[k][n] - b_zp))
 * with A_i at a + i * a_stride (bytes; 0 repeats one matrix, as a broadcast), rows lda >= K
 * apart; B_i at b + i * b_stride, K rows of N, ldb >= N apart -- or, with b_trans, N rows of
 * K (B_i[k][n] at n * ldb + k, ldb >= K: a transposed key matrix read in place); C_i at
 * c + i * c_stride elements, rows ldc >= N apart. a_zp, b_zp in [0, 255]. B is packed at each
 * call into per-thread scratch. Parallel over the thread pool; the result does not depend on
 * it. */
typedef struct {
    size_t batch, M, K, N;
    size_t lda, ldb, ldc;
    size_t a_stride, b_stride, c_stride;
    int b_trans;
} qe_matmul_shape;
int qe_matmul_u8u8(const qe_matmul_shape *s, const uint8_t *a, int32_t a_zp, const uint8_t *b,
                   int32_t b_zp, const qe_output *out, void *c, qe_isa isa);

/* ------------------------------------------------------------------------------------------ */
/* Convolution, NHWC (csrc/conv/)                                                             */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    size_t batch, in_h, in_w, in_c;   /* input  [batch][in_h][in_w][in_c] */
    size_t out_h, out_w, out_c;       /* output [batch][out_h][out_w][out_c] */
    size_t kernel_h, kernel_w;
    size_t stride_h, stride_w;
    size_t dilation_h, dilation_w;
    size_t pad_top, pad_left, pad_bottom, pad_right;
    size_t groups;                    /* in_c % groups == 0 and out_c % groups == 0 */
} qe_conv_shape;

/* Every size, pad, stride and dilation of a conv or pool shape is <= QE_MAX_DIM, so that no
 * index computation can overflow (sizes of real tensors are far below it). */
#define QE_MAX_DIM ((size_t)1 << 24)

/* Checks the shape's internal consistency: sizes, strides, dilations > 0 (pads >= 0), all
 * <= QE_MAX_DIM; groups divide both channel counts; the padded input holds one dilated kernel;
 * out_h = (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1 (same
 * for w); K = kernel_h * kernel_w * in_c / groups <= QE_MAX_K.
 * Returns QE_OK, QE_ERR_ARG, or QE_ERR_OVERFLOW (K too large). */
int qe_conv_shape_check(const qe_conv_shape *s);

/* Weights int8 [out_c][kernel_h][kernel_w][in_c / groups] (NHWC order of the reduction).
 * Chooses the method once, from the fixed part of the shape (channels, kernel, strides,
 * dilations, pads, groups; batch, in_h, in_w, out_h, out_w are ignored here):
 *   "dwconv"      groups == in_c == out_c: a direct depthwise kernel over channels;
 *   "gemm_1x1"    1x1 kernel, stride 1, no pads: the input pixels are the GEMM's A rows;
 *   "gemm_im2col" otherwise: im2col rows (padded with x_zp) in blocks, one packed GEMM B per
 *                 group.
 * Returns NULL on a bad shape, an unavailable ISA, or no memory. */
typedef struct qe_conv_packed qe_conv_packed;
qe_conv_packed *qe_conv_pack(const qe_conv_shape *s, const int8_t *w, qe_isa isa);
void qe_conv_packed_free(qe_conv_packed *p);
size_t qe_conv_packed_nbytes(const qe_conv_packed *p);
qe_isa qe_conv_packed_isa(const qe_conv_packed *p);
const char *qe_conv_packed_method(const qe_conv_packed *p); /* one of the names above */
/* The packed B of group g of a GEMM method (gemm_1x1, gemm_im2col), NULL for dwconv. */
qe_gemm_packed *qe_conv_packed_gemm(const qe_conv_packed *p, size_t g);

/* y = output(conv(x - x_zp, w - w_zp)); pad positions read as x_zp, so they add nothing.
 * acc[c] = sum over taps and input channels of the group of (x - x_zp) * (w - w_zp[c]) + bias[c]
 * (int32, wrapping), then the output pipeline with out_c per-channel entries.
 * s: the run's full shape; batch and spatial sizes may differ from the packing shape, the fixed
 * part may not (QE_ERR_ARG). x_zp in [0, 255]; w_zp NULL (symmetric) or [out_c] in [-128, 127].
 * y: [batch][out_h][out_w] pixels of out_c values with pixel stride ldy >= out_c (elements),
 * so a Concat slice can be written in place. Parallel over the thread pool; the result does not
 * depend on the thread count. */
int qe_conv_u8s8(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x, int32_t x_zp,
                 const int32_t *w_zp, const qe_output *out, void *y, size_t ldy);
/* The same, then y = table[y] for every uint8 output (out->kind must be QE_OUT_U8): an
 * element-wise lookup (HardSwish, SiLU, ... as glue's 256-entry table) fused into the
 * convolution, applied by each task to the outputs it has just written, while they are in its
 * core's cache. table NULL: qe_conv_u8s8. */
int qe_conv_u8s8_lut(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                     int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                     const uint8_t table[256], void *y, size_t ldy);

/* ------------------------------------------------------------------------------------------ */
/* Pooling, NHWC uint8 (csrc/pool/)                                                           */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    size_t batch, in_h, in_w, channels, out_h, out_w;
    size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    size_t pad_top, pad_left, pad_bottom, pad_right;
} qe_pool_shape;

/* Sizes, kernel, strides, dilations > 0, all <= QE_MAX_DIM, kernel_h * kernel_w <= 2^16; the
 * padded input holds one dilated window; out_h is either the floor form
 *   (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1
 * or the ceil_mode form (the same division rounded up), where a last window that would start
 * in the bottom padding is dropped, as ONNX and PyTorch do (same for w). */
int qe_pool_shape_check(const qe_pool_shape *s);

/* A convolution and a max pool over its uint8 output in one call (out->kind QE_OUT_U8, with an
 * optional table applied before the pool): y = maxpool(conv(...)), [batch][pool->out_h]
 * [pool->out_w] pixels of out_c values, pixel stride ldy >= out_c; the convolution's output is
 * never stored. pool: batch, in_h, in_w, channels equal to the convolution's output, dilations
 * 1, a valid pool shape (qe_pool_shape_check); the max as qe_maxpool_u8 computes it. Only the
 * shapes qe_conv_maxpool_ok accepts (convolutions run by column strips: short kernel rows,
 * one group); QE_ERR_ARG otherwise. */
int qe_conv_maxpool_ok(const qe_conv_packed *p, const qe_conv_shape *s);
int qe_conv_u8s8_maxpool(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                         int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                         const uint8_t table[256], const qe_pool_shape *pool, uint8_t *y,
                         size_t ldy);

/* y[c] = max of x[c] over the window's taps inside the input (padding never wins). A window
 * with no tap inside the input (only possible with dilation or ceil_mode) gives 0. y is
 * [batch][out_h][out_w][channels], contiguous. */
int qe_maxpool_u8(const qe_pool_shape *s, const uint8_t *x, uint8_t *y);

/* acc = sum over the window's taps inside the input of (x - x_zp);
 * count = (count_include_pad) the taps inside the padded input, rows [-pad_top, in_h +
 *         pad_bottom) and columns alike (kernel_h * kernel_w except for ceil_mode windows that
 *         overhang the padding), else the taps inside the input;
 * y = clamp(rint(float(acc) * (mult / (float)count)) + y_zp, qmin, qmax), mult = s_x / s_y,
 * both divisions float32; a window with count 0 gives clamp(y_zp, qmin, qmax).
 * mult finite and > 0, zero points and 0 <= qmin <= qmax <= 255 (QE_ERR_ARG otherwise). */
int qe_avgpool_u8(const qe_pool_shape *s, int count_include_pad, const uint8_t *x, int32_t x_zp,
                  float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y);

/* Global average over H*W per channel; same formula with count = hw (hw <= 2^23, so the int32
 * sum cannot overflow). x [batch][hw][channels], y [batch][channels]. */
int qe_global_avgpool_u8(size_t batch, size_t hw, size_t channels, const uint8_t *x, int32_t x_zp,
                         float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y);

/* ------------------------------------------------------------------------------------------ */
/* Element-wise (csrc/eltwise/)                                                               */
/* ------------------------------------------------------------------------------------------ */
/* Stateless: each call runs the active path (qe_get_isa()); larger calls are split over the
 * thread pool in fixed chunks. Multipliers and scales must be finite and > 0, zero points and
 * clamp ranges inside the storage type (QE_ERR_ARG otherwise). n == 0 or rows == 0 is a no-op. */

/* Binary ops over `rows` x `cols` elements; a and y are contiguous [rows][cols]. b is
 *   b_scalar = 1:                 one value b[0] broadcast everywhere (b_row_stride ignored);
 *   b_row_stride == cols:         a full [rows][cols] tensor;
 *   b_row_stride == 0:            a per-channel vector of length cols broadcast over rows.
 * add: v = float(a - a_zp) * a_mult + float(b - b_zp) * b_mult        (a_mult = s_a/s_y, ...)
 * mul: v = float((a - a_zp) * (b - b_zp)) * a_mult                     (a_mult = s_a*s_b/s_y;
 *      b_mult is ignored)
 * y = clamp(rint(v) + y_zp, qmin, qmax), the clamp done on v as in qe_requant_one.
 * Every float operation is float32, the add is not fused with the multiplies. */
typedef struct qe_binary_params {
    int32_t a_zp, b_zp, y_zp;
    float a_mult, b_mult;
    int32_t qmin, qmax;
} qe_binary_params;
int qe_add_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b, size_t b_row_stride,
              int b_scalar, const qe_binary_params *p, uint8_t *y);
int qe_mul_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b, size_t b_row_stride,
              int b_scalar, const qe_binary_params *p, uint8_t *y);

/* Requantize rows of `cols` uint8 from one scale to another into a strided output (Concat):
 * y = clamp(rint(float(x - x_zp) * mult) + y_zp, qmin, qmax). ldx, ldy >= cols. */
int qe_requantize_u8(size_t rows, size_t cols, const uint8_t *x, size_t ldx, int32_t x_zp,
                     float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y, size_t ldy);

/* y[i] = table[x[i]]: any element-wise function of one uint8 input (activations). x and y may
 * be the same buffer. */
int qe_lut_u8(size_t n, const uint8_t *x, const uint8_t table[256], uint8_t *y);
/* y[i] = table[x[i]] into float32: an element-wise function of one uint8 input whose result
 * stays float (a lookup region at a model's float output). */
int qe_lut_u8_f32(size_t n, const uint8_t *x, const float table[256], float *y);

/* Quantize: v = x / scale (a true float32 division, as ONNX); NaN -> 0; y = clamp(rint(v) + zp,
 * qmin, qmax) (+inf -> qmax, -inf -> qmin). Per-tensor, or per-channel over the innermost
 * dimension of length `channels` (n % channels == 0; scale/zp arrays of that length; pass
 * channels = 1 for per-tensor). zp and [qmin, qmax] inside the output type, qmin <= qmax. */
int qe_quantize_f32_u8(size_t n, size_t channels, const float *x, const float *scale,
                       const int32_t *zp, int32_t qmin, int32_t qmax, uint8_t *y);
int qe_quantize_f32_s8(size_t n, size_t channels, const float *x, const float *scale,
                       const int32_t *zp, int32_t qmin, int32_t qmax, int8_t *y);
/* Dequantize: y = float(x - zp) * scale, per-tensor or per innermost channel (as above). */
int qe_dequantize_u8_f32(size_t n, size_t channels, const uint8_t *x, const float *scale,
                         const int32_t *zp, float *y);
int qe_dequantize_s8_f32(size_t n, size_t channels, const int8_t *x, const float *scale,
                         const int32_t *zp, float *y);
int qe_dequantize_s32_f32(size_t n, size_t channels, const int32_t *x, const float *scale,
                          float *y);

/* ------------------------------------------------------------------------------------------ */
/* Layout (csrc/layout/)                                                                      */
/* ------------------------------------------------------------------------------------------ */
/* dst (contiguous, `shape`, ndim <= 8) = the strided view of src: dst element (i_0..i_{n-1})
 * is src at byte offset sum_k i_k * src_strides[k]; elem 1, 2, 4 or 8 bytes. Relayouts
 * (NCHW <-> NHWC) and Transposes. */
int qe_permute_copy(size_t ndim, const size_t *shape, const ptrdiff_t *src_strides, size_t elem,
                    const void *src, void *dst);
/* dst (contiguous, `shape`) gathers src along every axis: dst element (i_0..i_{n-1}) is src at
 * byte offset sum_k maps[k][i_k] * src_strides[k] (nearest-neighbour resizing). */
int qe_gather_axes(size_t ndim, const size_t *shape, const ptrdiff_t *src_strides,
                   const int32_t *const *maps, size_t elem, const void *src, void *dst);

/* ------------------------------------------------------------------------------------------ */
/* Float ops left in quantized models (csrc/float/)                                           */
/* ------------------------------------------------------------------------------------------ */
/* Softmax (log_form = 0) or log-softmax (1) of each of `rows` rows of `cols` float32 values:
 * y = exp(x - max) / sum, or (x - max) - log(sum). x and y may be the same buffer. */
int qe_softmax_f32(size_t rows, size_t cols, const float *x, float *y, int log_form);
/* Layer normalization of each row: y = (x - mean) / sqrt(var + eps) * gamma + beta (beta may be
 * NULL); gamma and beta have `cols` entries. */
int qe_layernorm_f32(size_t rows, size_t cols, const float *x, const float *gamma,
                     const float *beta, float eps, float *y);
/* y = x (op) c for n float32 values and a float32 constant c: one IEEE operation each (what
 * numpy computes for a float32 array and scalar). RSUB is c - x, RDIV c / x. x and y may be
 * the same buffer. */
typedef enum {
    QE_SCALAR_MUL = 0, QE_SCALAR_ADD = 1, QE_SCALAR_SUB = 2, QE_SCALAR_RSUB = 3,
    QE_SCALAR_DIV = 4, QE_SCALAR_RDIV = 5
} qe_scalar_op;
int qe_scalar_f32(size_t n, const float *x, qe_scalar_op op, float c, float *y);
/* Local response normalization across channels (ONNX LRN) of `batch` images of `channels` x
 * `pixels` float32 values, channels_last = 0: planes (NCHW, pixel q of channel c at
 * c * pixels + q), 1: channels last (NHWC, at q * channels + c):
 *   y = x / (bias + alpha_over_size * sum of x^2 over channels [c - (size-1)/2, + size)) ^ beta
 * with the window cut at the edges. y must not overlap x. */
int qe_lrn_f32(size_t batch, size_t channels, size_t pixels, int channels_last, const float *x,
               float *y, size_t size, float alpha_over_size, float bias, float beta);

#ifdef __cplusplus
}
#endif
#endif /* QE_KERNELS_H */
