/*
 * dwconv_avx512vnni.c -- the AVX-512 VNNI depthwise kernels (layouts in conv.h):
 *
 * qe_dwconv_u8s8_up64c4__avx512vnni (QUADS_S8, calls without weight zero points): per block of
 * up to 64 channels and quad of taps, four loads, four vpunpck{l,h}bw and four vpunpck{l,h}wd
 * give four vectors of [tap0 tap1 tap2 tap3] bytes per channel, each multiplied by one
 * vpdpbusd: 12 instructions for 256 multiply-adds, about half the shuffles of the pairs kernel
 * below. Blocks of 64 channels run in zmm, a last block of 32 or 16 in ymm / xmm (on Zen 4 a
 * zmm instruction costs two ymm ones, so a narrower vector does not waste half its work).
 * The accumulators hold channels in the block order of conv.h; uint8 results come back to the
 * natural order through two in-lane packs, int32 / float results through a small copy.
 * u8 x s8 products summed four at a time into int32 by vpdpbusd are exact (no saturation).
 *
 * qe_dwconv_u8s16_up64__avx512vnni (PAIRS_S16, the kernel for calls with weight zero points,
 * whose w - w_zp needs 9 bits): 32 channels per tile and up to 64 at a time.
 * Per tile of 32 channels and pair of taps: each tap's 32 bytes are widened to int16
 * (vpmovzxbw), the two taps interleaved by vpunpck{l,h}wd, and each half multiplied with its
 * weight pairs by one vpdpwssd: 6 instructions for 64 multiply-adds. The unpacks work inside
 * 128-bit lanes, so the accumulators hold channels in the order qe_dw_lane_channel (the weights
 * are packed in that order); one vpermt2d per 16 channels restores the natural order before the
 * output pipeline. Products are exact (|x * w| <= 255 * 255) and accumulation wraps like the
 * reference. A partial last tile uses masked loads: no byte past the channel count is read.
 */
#include "../eltwise/requant_simd.h"
#include "conv.h"

/* The output pipeline with its constants in registers: loaded once per call, because stores
 * through the output pointer would otherwise force reloads of every qe_output field. */
typedef struct {
    qe_out_kind kind;
    int per_channel;
    const float *scale, *fbias;
    __m512 s1, lo, hi;
    __m512i zp;
    float s1f, hi1;      /* the same as scalars, for narrower vectors */
    int32_t zp1, qmin1;
} dw_out_avx512;

static inline dw_out_avx512 dw_out_setup(const qe_output *o) {
    dw_out_avx512 d = {.kind = o->kind, .per_channel = o->per_channel, .scale = o->scale,
                       .fbias = o->fbias};
    d.s1 = _mm512_set1_ps(o->kind == QE_OUT_I32 ? 0.0f : o->scale[0]);
    d.lo = _mm512_set1_ps((float)(o->qmin - o->zero_point));
    d.hi = _mm512_set1_ps((float)(o->qmax - o->zero_point));
    d.zp = _mm512_set1_epi32(o->zero_point);
    d.s1f = o->kind == QE_OUT_I32 ? 0.0f : o->scale[0];
    d.hi1 = (float)(o->qmax - o->zero_point);
    d.zp1 = o->zero_point;
    d.qmin1 = o->qmin;
    return d;
}

/* The output pipeline of 16 channels [c, c+16) under mask m. */
static inline void dw_output_avx512(const dw_out_avx512 *o, __m512i acc, size_t c, __mmask16 m,
                                    void *dst) {
    if (o->kind == QE_OUT_I32) {
        qe_store_epi32_avx512(dst, acc, m);
        return;
    }
    const __m512 s = o->per_channel ? _mm512_maskz_loadu_ps(m, o->scale + c) : o->s1;
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
    if (o->kind == QE_OUT_F32) {
        if (o->fbias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, o->fbias + c));
        qe_store_ps_avx512(dst, v, m);
        return;
    }
    qe_store_u8x16_avx512(dst, qe_requant_ps_avx512(v, o->lo, o->hi, o->zp), m);
}

/* NT tiles (1 or 2) of 32 channels starting at channel c; `last` masks the last tile. */
static inline __attribute__((always_inline)) void dw_tiles_avx512(
    const qe_dw_params *p, const dw_out_avx512 *out, const uint8_t *const *tp, size_t off,
    size_t c, int nt, __mmask32 last, char *dst, size_t es) {
    const size_t np = qe_dw_npairs(p);
    const int16_t *w = (const int16_t *)p->w + (c / 32) * np * 64;
    __m512i lo[2], hi[2];
    __mmask32 m[2];
    for (int i = 0; i < nt; i++) {
        m[i] = i == nt - 1 ? last : ~(__mmask32)0;
        lo[i] = hi[i] = _mm512_setzero_si512();
    }
    for (size_t j = 0; j < np; j++) {
        const uint8_t *a = tp[2 * j] + off + c, *b = tp[2 * j + 1] + off + c;
        for (int i = 0; i < nt; i++) {
            const __m512i va = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m[i], a + 32 * i));
            const __m512i vb = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m[i], b + 32 * i));
            const int16_t *wp = w + ((size_t)i * np + j) * 64;
            lo[i] = _mm512_dpwssd_epi32(lo[i], _mm512_unpacklo_epi16(va, vb), _mm512_loadu_si512(wp));
            hi[i] = _mm512_dpwssd_epi32(hi[i], _mm512_unpackhi_epi16(va, vb), _mm512_loadu_si512(wp + 32));
        }
    }
    /* channels 0-15: lanes q0 of lo, q0 of hi, q1 of lo, q1 of hi; 16-31: the q2, q3 lanes */
    const __m512i idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i idx1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int i = 0; i < nt; i++) {
        const size_t c0 = c + 32 * (size_t)i;
        const __m512i a0 = _mm512_add_epi32(_mm512_permutex2var_epi32(lo[i], idx0, hi[i]),
                                            _mm512_loadu_si512(p->init + c0));
        const __m512i a1 = _mm512_add_epi32(_mm512_permutex2var_epi32(lo[i], idx1, hi[i]),
                                            _mm512_loadu_si512(p->init + c0 + 16));
        dw_output_avx512(out, a0, c0, (__mmask16)m[i], dst + c0 * es);
        if ((__mmask16)(m[i] >> 16))
            dw_output_avx512(out, a1, c0 + 16, (__mmask16)(m[i] >> 16), dst + (c0 + 16) * es);
    }
}

void qe_dwconv_u8s16_up64__avx512vnni(const qe_dw_params *p, size_t pixels,
                                      const uint8_t *const *taps, size_t step, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->ntaps > 0 &&
              p->tap_stride == QE_ROUND_UP(p->ntaps, 2));
    const size_t C = p->channels, T2 = p->tap_stride, es = qe_output_elem_size(p->out->kind);
    const dw_out_avx512 out = dw_out_setup(p->out);
    for (size_t px = 0; px < pixels; px++) {
        const uint8_t *const *tp = step ? taps : taps + px * T2;
        const size_t off = px * step;
        char *dst = (char *)y + px * p->ldy * es;
        size_t c = 0;
        for (; c + 64 <= C; c += 64)
            dw_tiles_avx512(p, &out, tp, off, c, 2, ~(__mmask32)0, dst, es);
        if (c + 32 <= C) {
            dw_tiles_avx512(p, &out, tp, off, c, 1, ~(__mmask32)0, dst, es);
            c += 32;
        }
        if (c < C)
            dw_tiles_avx512(p, &out, tp, off, c, 1, (__mmask32)(((uint64_t)1 << (C - c)) - 1),
                            dst, es);
    }
}

const qe_dw_ukernel qe_dw_avx512vnni_s16 = {.kernel = qe_dwconv_u8s16_up64__avx512vnni,
                                            .layout = QE_DW_PAIRS_S16, .tile = 32,
                                            .unpack_order = 1};

/* ---- QUADS_S8 ----------------------------------------------------------------------------- */

/* Per-width helpers with one name each, so that the block below is written once. */
#define DWQ_LOAD512(p) _mm512_loadu_si512((const void *)(p))
#define DWQ_LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))
#define DWQ_LOAD128(p) _mm_loadu_si128((const __m128i *)(p))
#define DWQ_STORE512(p, v) _mm512_storeu_si512((void *)(p), v)
#define DWQ_STORE256(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define DWQ_STORE128(p, v) _mm_storeu_si128((__m128i *)(p), v)

/* The int32 / float outputs: the block's accumulators (block order, init added) into natural
 * order, then the 16-channel pipeline of the pairs kernel. n channels from c0. */
static void dwq_output_natural(const dw_out_avx512 *o, const int32_t *acc, size_t lanes,
                               size_t c0, size_t n, char *dst, size_t es) {
    int32_t nat[64];
    const size_t nl = 4 * lanes; /* dwords per accumulator */
    for (size_t j = 0; j < lanes; j++)
        for (size_t k = 0; k < 4; k++)
            for (size_t e = 0; e < 4; e++) nat[16 * j + 4 * k + e] = acc[k * nl + 4 * j + e];
    for (size_t i = 0; i < n; i += 16) {
        const size_t r = QE_MIN(16, n - i);
        const __mmask16 m = (__mmask16)(r == 16 ? 0xFFFF : (1u << r) - 1);
        dw_output_avx512(o, _mm512_maskz_loadu_epi32(m, nat + i), c0 + i, m, dst + (c0 + i) * es);
    }
}

/* Input bytes of a block: a plain load when the block is whole, else only the n real ones. */
#define DWQ_LOAD_X(P, LOAD, ptr) (n == W ? LOAD(ptr) : P##maskz_loadu_epi8(m, ptr))

/* One quad of taps (r >= 1 of them real) of one pixel into its accumulators acc##0..3. */
#define DWQ_QUAD(P, VI, LOAD, acc, tp, off)                                                        \
    do {                                                                                        \
        const VI x0 = DWQ_LOAD_X(P, LOAD, tp[t] + off + c0);                                       \
        const VI x1 = r > 1 ? DWQ_LOAD_X(P, LOAD, tp[t + 1] + off + c0) : z;                       \
        const VI x2 = r > 2 ? DWQ_LOAD_X(P, LOAD, tp[t + 2] + off + c0) : z;                       \
        const VI x3 = r > 3 ? DWQ_LOAD_X(P, LOAD, tp[t + 3] + off + c0) : z;                       \
        const VI l01 = P##unpacklo_epi8(x0, x1), h01 = P##unpackhi_epi8(x0, x1);                \
        const VI l23 = P##unpacklo_epi8(x2, x3), h23 = P##unpackhi_epi8(x2, x3);                \
        acc##0 = P##dpbusd_epi32(acc##0, P##unpacklo_epi16(l01, l23), w0);                      \
        acc##1 = P##dpbusd_epi32(acc##1, P##unpackhi_epi16(l01, l23), w1);                      \
        acc##2 = P##dpbusd_epi32(acc##2, P##unpacklo_epi16(h01, h23), w2);                      \
        acc##3 = P##dpbusd_epi32(acc##3, P##unpackhi_epi16(h01, h23), w3);                      \
    } while (0)

/* The constants of DWQ_OUTPUT for the block at c0: scales s0..s3 (per channel, in block order,
 * or the one scale), the top of the float clamp, zero point and qmin. */
#define DWQ_OUTPUT_CONSTANTS(P, VI, VF)                                                          \
    const float *sc = p->scale + c0;                                                            \
    const VF s = P##set1_ps(o->s1f), hi = P##set1_ps(o->hi1);                                   \
    const VF s0 = p->scale ? P##loadu_ps(sc) : s, s1 = p->scale ? P##loadu_ps(sc + NL) : s;     \
    const VF s2 = p->scale ? P##loadu_ps(sc + 2 * NL) : s;                                      \
    const VF s3 = p->scale ? P##loadu_ps(sc + 3 * NL) : s;                                      \
    const VI zp16 = P##set1_epi16((int16_t)o->zp1), lo8 = P##set1_epi8((char)o->qmin1)

/* The output pipeline of one pixel's accumulators acc##0..3 into dst. */
#define DWQ_OUTPUT(P, VI, VF, STORE, acc, dst)                                                  \
    do {                                                                                        \
        if (o->kind != QE_OUT_U8) {                                                             \
            int32_t nat_[4 * NL];                                                               \
            STORE(nat_, acc##0);                                                                \
            STORE(nat_ + NL, acc##1);                                                           \
            STORE(nat_ + 2 * NL, acc##2);                                                       \
            STORE(nat_ + 3 * NL, acc##3);                                                       \
            dwq_output_natural(o, nat_, LN, c0, n, dst, es);                                    \
            break;                                                                              \
        }                                                                                       \
        const VF v0 = P##mul_ps(P##cvtepi32_ps(acc##0), s0);                                    \
        const VF v1 = P##mul_ps(P##cvtepi32_ps(acc##1), s1);                                    \
        const VF v2 = P##mul_ps(P##cvtepi32_ps(acc##2), s2);                                    \
        const VF v3 = P##mul_ps(P##cvtepi32_ps(acc##3), s3);                                    \
        /* the in-lane packs also undo the block order: lane j gets channels 16j .. 16j + 15 */ \
        const VI b = QE_REQUANT_PACK_U8_INLANE(P, v0, v1, v2, v3, hi, zp16, lo8);               \
        if (n == W)                                                                             \
            STORE(dst + c0, b);                                                                 \
        else                                                                                    \
            P##mask_storeu_epi8(dst + c0, m, b);                                                \
    } while (0)

/* One block of W = 16 * LANES channels at c0, n <= W of them real (byte mask m), for one output
 * pixel (a) or two (a and b, sharing the weight loads and giving the core two independent
 * chains of vpdpbusd). VI / VF: the vector types; P: the intrinsic prefix; MASK: the byte-mask
 * type. */
#define DWQ_BLOCK(NAME, VI, VF, MASK, P, LOAD, STORE, ZERO, LANES)                                \
    static inline __attribute__((always_inline)) void NAME(                                      \
        const qe_dw_params *p, const dw_out_avx512 *o, int two, const uint8_t *const *tpa,       \
        size_t offa, char *dsta, const uint8_t *const *tpb, size_t offb, char *dstb, size_t T,   \
        size_t c0, size_t n, MASK m, size_t es) {                                                \
        enum { W = 16 * (LANES), NL = 4 * (LANES), LN = LANES };                               \
        const int8_t *w = (const int8_t *)p->w + c0 * 4 * QE_DIV_UP(T, 4);                       \
        VI a0 = LOAD(p->init + c0), a1 = LOAD(p->init + c0 + NL);                                \
        VI a2 = LOAD(p->init + c0 + 2 * NL), a3 = LOAD(p->init + c0 + 3 * NL);                   \
        VI b0 = a0, b1 = a1, b2 = a2, b3 = a3;                                                   \
        const VI z = ZERO;                                                                       \
        for (size_t t = 0;; t += 4, w += 4 * W) {                                                \
            const size_t r = T - t; /* taps left: >= 1 */                                        \
            const VI w0 = LOAD(w), w1 = LOAD(w + W), w2 = LOAD(w + 2 * W), w3 = LOAD(w + 3 * W); \
            DWQ_QUAD(P, VI, LOAD, a, tpa, offa);                                                   \
            if (two) DWQ_QUAD(P, VI, LOAD, b, tpb, offb);                                        \
            if (r <= 4) break;                                                                   \
        }                                                                                        \
        DWQ_OUTPUT_CONSTANTS(P, VI, VF);                                                         \
        DWQ_OUTPUT(P, VI, VF, STORE, a, dsta);                                                   \
        if (two) DWQ_OUTPUT(P, VI, VF, STORE, b, dstb);                                          \
    }

/* A block function in each width: NAME_512 (zmm, 64 channels), NAME_256, NAME_128. */
#define DWQ_EACH_WIDTH(BLOCK, NAME)                                                             \
    BLOCK(NAME##_512, __m512i, __m512, __mmask64, _mm512_, DWQ_LOAD512, DWQ_STORE512,          \
          _mm512_setzero_si512(), 4)                                                            \
    BLOCK(NAME##_256, __m256i, __m256, __mmask32, _mm256_, DWQ_LOAD256, DWQ_STORE256,          \
          _mm256_setzero_si256(), 2)                                                            \
    BLOCK(NAME##_128, __m128i, __m128, __mmask16, _mm_, DWQ_LOAD128, DWQ_STORE128,             \
          _mm_setzero_si128(), 1)

DWQ_EACH_WIDTH(DWQ_BLOCK, dwq_block)

/* Every block of one or two pixels (two and T: compile-time constants after inlining where the
 * caller passes literals). */
static inline __attribute__((always_inline)) void dwq_pixels(
    const qe_dw_params *p, const dw_out_avx512 *o, int two, const uint8_t *const *tpa, size_t offa,
    char *dsta, const uint8_t *const *tpb, size_t offb, char *dstb, size_t T, size_t es) {
    const size_t C = p->channels, c_full = C / 64 * 64, r = C - c_full;
    for (size_t c0 = 0; c0 < c_full; c0 += 64)
        dwq_block_512(p, o, two, tpa, offa, dsta, tpb, offb, dstb, T, c0, 64, ~(__mmask64)0, es);
    if (r > 32)
        dwq_block_512(p, o, two, tpa, offa, dsta, tpb, offb, dstb, T, c_full, r,
                      ((__mmask64)1 << r) - 1, es);
    else if (r > 16)
        dwq_block_256(p, o, two, tpa, offa, dsta, tpb, offb, dstb, T, c_full, r,
                      (__mmask32)(((uint64_t)1 << r) - 1), es);
    else if (r > 0)
        dwq_block_128(p, o, two, tpa, offa, dsta, tpb, offb, dstb, T, c_full, r,
                      (__mmask16)((1u << r) - 1), es);
}

/* The pixels two at a time. */
static inline __attribute__((always_inline)) void dwq_run(const qe_dw_params *p,
                                                         const dw_out_avx512 *o, size_t pixels,
                                                         const uint8_t *const *taps, size_t step,
                                                         size_t ts, void *y, size_t T, size_t es) {
    size_t px = 0;
    for (; px + 2 <= pixels; px += 2) {
        char *dst = (char *)y + px * p->ldy * es;
        dwq_pixels(p, o, 1, taps + px * ts, px * step, dst, taps + (px + 1) * ts,
                   (px + 1) * step, dst + p->ldy * es, T, es);
    }
    if (px < pixels)
        dwq_pixels(p, o, 0, taps + px * ts, px * step, (char *)y + px * p->ldy * es, NULL, 0,
                   NULL, T, es);
}

/* ---- QUADS_S8, tap triples over adjacent pixels --------------------------------------------
 * For a run of output pixels S = 1 or 2 input pixels apart (3 x 3 windows, stride 1 or 2) whose
 * taps 3g .. 3g+2 address adjacent pixels, output pixel px reads in triple g the input pixels
 * i .. i + 2 of one row (i = S * px). One quad of input pixels i .. i + 3 (vpunpck{l,h}bw of two
 * byte pairs, then vpunpck{l,h}wd) serves two outputs:
 *   S = 1: px with the weights (w0 w1 w2 0) and px + 1 with (0 w0 w1 w2) (the triples, conv.h);
 *   S = 2: px with (w0 w1 w2 0); the quad i + 2 .. i + 5 serves px + 1 with the same weights.
 * The byte pairs of the last two input pixels of a pair of outputs begin the next pair's quad:
 * interleaved once and carried. Per pair of outputs and 64 channels, S = 1 takes 6 input loads
 * and 18 shuffles, S = 2 12 and 36, against the quads kernel's 18 and 48 (its shuffles bound
 * it); all take 24 vpdpbusd. Blocks outer, pixels inner, so that the carried pairs, init and
 * scales stay in registers along the run. */
#define DWT_BLOCK(NAME, VI, VF, MASK, P, LOAD, STORE, ZERO, LANES)                                \
    static inline __attribute__((always_inline)) void NAME(                                      \
        const qe_dw_params *p, const dw_out_avx512 *o, size_t pixels, const uint8_t *const *taps, \
        const size_t S, char *y, size_t c0, size_t n, MASK m, size_t es) {                       \
        enum { W = 16 * (LANES), NL = 4 * (LANES), LN = LANES };                               \
        const size_t C = p->channels, ldy = p->ldy * es;                                         \
        const int8_t *w = p->w3 + c0 * 24;                                                       \
        const VI i0 = LOAD(p->init + c0), i1 = LOAD(p->init + c0 + NL);                          \
        const VI i2 = LOAD(p->init + c0 + 2 * NL), i3 = LOAD(p->init + c0 + 3 * NL);             \
        DWQ_OUTPUT_CONSTANTS(P, VI, VF);                                                         \
        const VI z = ZERO;                                                                       \
        const uint8_t *r0 = taps[0] + c0, *r1 = taps[3] + c0, *r2 = taps[6] + c0;                \
        /* the carried byte pairs of input pixels (i, i + 1), low and high half, per triple */   \
        VI l0 = P##unpacklo_epi8(DWQ_LOAD_X(P, LOAD, r0), DWQ_LOAD_X(P, LOAD, r0 + C));          \
        VI h0 = P##unpackhi_epi8(DWQ_LOAD_X(P, LOAD, r0), DWQ_LOAD_X(P, LOAD, r0 + C));          \
        VI l1 = P##unpacklo_epi8(DWQ_LOAD_X(P, LOAD, r1), DWQ_LOAD_X(P, LOAD, r1 + C));          \
        VI h1 = P##unpackhi_epi8(DWQ_LOAD_X(P, LOAD, r1), DWQ_LOAD_X(P, LOAD, r1 + C));          \
        VI l2 = P##unpacklo_epi8(DWQ_LOAD_X(P, LOAD, r2), DWQ_LOAD_X(P, LOAD, r2 + C));          \
        VI h2 = P##unpackhi_epi8(DWQ_LOAD_X(P, LOAD, r2), DWQ_LOAD_X(P, LOAD, r2 + C));          \
        size_t px = 0;                                                                           \
        /* pairs while every input pixel read is in a window: S = 2 reads i + 5, which is in    \
         * the window of px + 2 (the carry for it) */                                           \
        for (; px + 2 + (S - 1) <= pixels; px += 2) {                                            \
            VI a0 = i0, a1 = i1, a2 = i2, a3 = i3, b0 = i0, b1 = i1, b2 = i2, b3 = i3;           \
            DWT_TRIPLE(P, VI, LOAD, 0, r0);                                                      \
            DWT_TRIPLE(P, VI, LOAD, 1, r1);                                                      \
            DWT_TRIPLE(P, VI, LOAD, 2, r2);                                                      \
            DWQ_OUTPUT(P, VI, VF, STORE, a, y + px * ldy);                                       \
            DWQ_OUTPUT(P, VI, VF, STORE, b, y + (px + 1) * ldy);                                 \
        }                                                                                        \
        for (; px < pixels; px++) { /* the last pixels alone: their own three input pixels */   \
            VI a0 = i0, a1 = i1, a2 = i2, a3 = i3;                                               \
            DWT_SINGLE(P, VI, LOAD, 0, r0);                                                      \
            DWT_SINGLE(P, VI, LOAD, 1, r1);                                                      \
            DWT_SINGLE(P, VI, LOAD, 2, r2);                                                      \
            DWQ_OUTPUT(P, VI, VF, STORE, a, y + px * ldy);                                       \
        }                                                                                        \
    }

/* The quad k of a triple: input pixels (i, i+1) from the pairs l / h, (i+2, i+3) from nl / nh. */
#define DWT_QUADS(P, l, h, nl, nh)                                                               \
    P##unpacklo_epi16(l, nl), P##unpackhi_epi16(l, nl), P##unpacklo_epi16(h, nh),               \
        P##unpackhi_epi16(h, nh)

/* Triple g (input row r) of the pair of outputs (px, px + 1). */
#define DWT_TRIPLE(P, VI, LOAD, g, r)                                                          \
    do {                                                                                        \
        const uint8_t *x = r + S * px * C; /* input pixel i */                                  \
        const VI x2 = DWQ_LOAD_X(P, LOAD, x + 2 * C), x3 = DWQ_LOAD_X(P, LOAD, x + 3 * C);      \
        const VI nl = P##unpacklo_epi8(x2, x3), nh = P##unpackhi_epi8(x2, x3);                  \
        const VI q[4] = {DWT_QUADS(P, l##g, h##g, nl, nh)};                                     \
        const int8_t *wa = w + (g) * 8 * W, *wb = wa + 4 * W;                                   \
        const VI wa0 = LOAD(wa), wa1 = LOAD(wa + W), wa2 = LOAD(wa + 2 * W);                    \
        const VI wa3 = LOAD(wa + 3 * W);                                                        \
        a0 = P##dpbusd_epi32(a0, q[0], wa0);                                                    \
        a1 = P##dpbusd_epi32(a1, q[1], wa1);                                                    \
        a2 = P##dpbusd_epi32(a2, q[2], wa2);                                                    \
        a3 = P##dpbusd_epi32(a3, q[3], wa3);                                                    \
        if (S == 1) {                                                                           \
            b0 = P##dpbusd_epi32(b0, q[0], LOAD(wb));                                           \
            b1 = P##dpbusd_epi32(b1, q[1], LOAD(wb + W));                                       \
            b2 = P##dpbusd_epi32(b2, q[2], LOAD(wb + 2 * W));                                   \
            b3 = P##dpbusd_epi32(b3, q[3], LOAD(wb + 3 * W));                                   \
            l##g = nl;                                                                          \
            h##g = nh;                                                                          \
        } else { /* S = 2: px + 1 reads i + 2 .. i + 5 */                                       \
            const VI x4 = DWQ_LOAD_X(P, LOAD, x + 4 * C), x5 = DWQ_LOAD_X(P, LOAD, x + 5 * C);  \
            const VI ml = P##unpacklo_epi8(x4, x5), mh = P##unpackhi_epi8(x4, x5);              \
            const VI q2[4] = {DWT_QUADS(P, nl, nh, ml, mh)};                                    \
            b0 = P##dpbusd_epi32(b0, q2[0], wa0);                                               \
            b1 = P##dpbusd_epi32(b1, q2[1], wa1);                                               \
            b2 = P##dpbusd_epi32(b2, q2[2], wa2);                                               \
            b3 = P##dpbusd_epi32(b3, q2[3], wa3);                                               \
            l##g = ml;                                                                          \
            h##g = mh;                                                                          \
        }                                                                                       \
    } while (0)

/* Triple g of output px alone: input pixels i .. i + 2 and a zero for i + 3 (weight 0). */
#define DWT_SINGLE(P, VI, LOAD, g, r)                                                          \
    do {                                                                                        \
        const uint8_t *x = r + S * px * C;                                                      \
        const VI x0 = DWQ_LOAD_X(P, LOAD, x), x1 = DWQ_LOAD_X(P, LOAD, x + C);                   \
        const VI x2 = DWQ_LOAD_X(P, LOAD, x + 2 * C);                                            \
        const VI q[4] = {DWT_QUADS(P, P##unpacklo_epi8(x0, x1), P##unpackhi_epi8(x0, x1),       \
                                   P##unpacklo_epi8(x2, z), P##unpackhi_epi8(x2, z))};          \
        const int8_t *wa = w + (g) * 8 * W;                                                     \
        a0 = P##dpbusd_epi32(a0, q[0], LOAD(wa));                                               \
        a1 = P##dpbusd_epi32(a1, q[1], LOAD(wa + W));                                           \
        a2 = P##dpbusd_epi32(a2, q[2], LOAD(wa + 2 * W));                                       \
        a3 = P##dpbusd_epi32(a3, q[3], LOAD(wa + 3 * W));                                       \
    } while (0)

DWQ_EACH_WIDTH(DWT_BLOCK, dwt_block)

/* The stride of the triples for this call (1 or 2 input pixels per output), or 0 when they do
 * not serve it: 9 taps, a stepped run, and each triple's taps on adjacent pixels. */
static size_t dwt_stride(const qe_dw_params *p, const uint8_t *const *taps, size_t step) {
    const size_t C = p->channels;
    if (!p->w3 || p->ntaps != 9 || (step != C && step != 2 * C)) return 0;
    for (size_t g = 0; g < 3; g++)
        if (taps[3 * g + 1] != taps[3 * g] + C || taps[3 * g + 2] != taps[3 * g] + 2 * C) return 0;
    return step / C;
}

/* Every block (S: a literal, so that each block is compiled per stride). */
static inline __attribute__((always_inline)) void dwt_run(const qe_dw_params *p,
                                                         const dw_out_avx512 *o, size_t pixels,
                                                         const uint8_t *const *taps,
                                                         const size_t S, void *y, size_t es) {
    const size_t C = p->channels, c_full = C / 64 * 64, r = C - c_full;
    for (size_t c0 = 0; c0 < c_full; c0 += 64)
        dwt_block_512(p, o, pixels, taps, S, y, c0, 64, ~(__mmask64)0, es);
    if (r > 32)
        dwt_block_512(p, o, pixels, taps, S, y, c_full, r, ((__mmask64)1 << r) - 1, es);
    else if (r > 16)
        dwt_block_256(p, o, pixels, taps, S, y, c_full, r, (__mmask32)(((uint64_t)1 << r) - 1),
                      es);
    else if (r > 0)
        dwt_block_128(p, o, pixels, taps, S, y, c_full, r, (__mmask16)((1u << r) - 1), es);
}

/* ---- QUADS_S8, tap fives over adjacent pixels ----------------------------------------------
 * For a run of output pixels whose taps 5g .. 5g+4 (row g of R) address pixels one step apart,
 * the step being the run's own (5-wide windows with stride_w == dilation_w: the OCR backbone's
 * 5 x 5 convolutions and their cuts), four outputs px .. px+3 read in row g the input pixels
 * i .. i+7 (i = px). Their two quads, i .. i+3 and i+4 .. i+7, are interleaved once and serve
 * all four with the row's weights shifted by the output's offset (conv.h w5). Per four outputs,
 * row and 64 channels: 8 input loads, 16 shuffles and 32 vpdpbusd (with the weights as memory
 * operands), against the quads kernel's 22 loads, 45 shuffles and 22 vpdpbusd (5.6 quads),
 * whose shuffles, all on one port, bound it. A last 1-3 outputs take the same quads with input
 * pixels i+5 .. i+7 zero (their weights are 0), one output at a time. */

/* The four quads q##0..3 of input pixels x, x + u, x + 2u, x + 3u (in the block order). */
#define DWF_QUADS(P, VI, q, v0, v1, v2, v3)                                                      \
    const VI q##l01 = P##unpacklo_epi8(v0, v1), q##h01 = P##unpackhi_epi8(v0, v1);              \
    const VI q##l23 = P##unpacklo_epi8(v2, v3), q##h23 = P##unpackhi_epi8(v2, v3);              \
    const VI q##0 = P##unpacklo_epi16(q##l01, q##l23), q##1 = P##unpackhi_epi16(q##l01, q##l23); \
    const VI q##2 = P##unpacklo_epi16(q##h01, q##h23), q##3 = P##unpackhi_epi16(q##h01, q##h23)

/* Output offset j's accumulators acc##0..3 += the quads q##0..3 (half h) times its weights in
 * row wr. */
#define DWF_MAC(P, LOAD, acc, j, q, h)                                                           \
    do {                                                                                        \
        const int8_t *wj = wr + ((j) * 2 + (h)) * 4 * W;                                        \
        acc##0 = P##dpbusd_epi32(acc##0, q##0, LOAD(wj));                                       \
        acc##1 = P##dpbusd_epi32(acc##1, q##1, LOAD(wj + W));                                   \
        acc##2 = P##dpbusd_epi32(acc##2, q##2, LOAD(wj + 2 * W));                               \
        acc##3 = P##dpbusd_epi32(acc##3, q##3, LOAD(wj + 3 * W));                               \
    } while (0)

/* Row g of output px's window: its first input pixel x and its weights wr. */
#define DWF_ROW()                                                                     \
    const uint8_t *x = taps[5 * g] + c0 + px * u;                                               \
    const int8_t *wr = w + g * 32 * W

#define DWF_INIT(VI, LOAD, acc)                                                                  \
    VI acc##0 = LOAD(p->init + c0), acc##1 = LOAD(p->init + c0 + NL);                            \
    VI acc##2 = LOAD(p->init + c0 + 2 * NL), acc##3 = LOAD(p->init + c0 + 3 * NL)

/* One block of W = 16 * LANES channels at c0 (n real, byte mask m) over the run; R rows of five
 * taps, u bytes between input pixels (the run's step). The 16 accumulators of four outputs
 * leave 16 registers: each half's quads are used up before the next half's are made, and the
 * output constants are loaded only after the rows. */
#define DWF_BLOCK(NAME, VI, VF, MASK, P, LOAD, STORE, ZERO, LANES)                                \
    static inline __attribute__((always_inline)) void NAME(                                      \
        const qe_dw_params *p, const dw_out_avx512 *o, size_t pixels, const uint8_t *const *taps, \
        const size_t R, const size_t u, char *y, size_t c0, size_t n, MASK m, size_t es) {       \
        enum { W = 16 * (LANES), NL = 4 * (LANES), LN = LANES };                               \
        const size_t ldy = p->ldy * es;                                                          \
        const int8_t *w = p->w5 + c0 * 32 * R;                                                   \
        const VI z = ZERO;                                                                       \
        size_t px = 0;                                                                           \
        for (; px + 4 <= pixels; px += 4) {                                                      \
            DWF_INIT(VI, LOAD, a);                                                               \
            DWF_INIT(VI, LOAD, b);                                                               \
            DWF_INIT(VI, LOAD, d);                                                               \
            DWF_INIT(VI, LOAD, e);                                                               \
            _Pragma("GCC unroll 5") for (size_t g = 0; g < R; g++) {                            \
                DWF_ROW();                                                            \
                {                                                                                \
                    DWF_QUADS(P, VI, q, DWQ_LOAD_X(P, LOAD, x), DWQ_LOAD_X(P, LOAD, x + u),      \
                              DWQ_LOAD_X(P, LOAD, x + 2 * u), DWQ_LOAD_X(P, LOAD, x + 3 * u));   \
                    DWF_MAC(P, LOAD, a, 0, q, 0);                                                \
                    DWF_MAC(P, LOAD, b, 1, q, 0);                                                \
                    DWF_MAC(P, LOAD, d, 2, q, 0);                                                \
                    DWF_MAC(P, LOAD, e, 3, q, 0);                                                \
                }                                                                                \
                {                                                                                \
                    DWF_QUADS(P, VI, q, DWQ_LOAD_X(P, LOAD, x + 4 * u),                          \
                              DWQ_LOAD_X(P, LOAD, x + 5 * u), DWQ_LOAD_X(P, LOAD, x + 6 * u),    \
                              DWQ_LOAD_X(P, LOAD, x + 7 * u));                                   \
                    DWF_MAC(P, LOAD, a, 0, q, 1);                                                \
                    DWF_MAC(P, LOAD, b, 1, q, 1);                                                \
                    DWF_MAC(P, LOAD, d, 2, q, 1);                                                \
                    DWF_MAC(P, LOAD, e, 3, q, 1);                                                \
                }                                                                                \
            }                                                                                    \
            DWQ_OUTPUT_CONSTANTS(P, VI, VF);                                                     \
            char *dst = y + px * ldy;                                                            \
            DWQ_OUTPUT(P, VI, VF, STORE, a, dst);                                                \
            DWQ_OUTPUT(P, VI, VF, STORE, b, dst + ldy);                                          \
            DWQ_OUTPUT(P, VI, VF, STORE, d, dst + 2 * ldy);                                      \
            DWQ_OUTPUT(P, VI, VF, STORE, e, dst + 3 * ldy);                                      \
        }                                                                                        \
        for (; px < pixels; px++) { /* reads i .. i+4 only */                                    \
            DWF_INIT(VI, LOAD, a);                                                               \
            for (size_t g = 0; g < R; g++) {                                                     \
                DWF_ROW();                                                            \
                {                                                                                \
                    DWF_QUADS(P, VI, q, DWQ_LOAD_X(P, LOAD, x), DWQ_LOAD_X(P, LOAD, x + u),      \
                              DWQ_LOAD_X(P, LOAD, x + 2 * u), DWQ_LOAD_X(P, LOAD, x + 3 * u));   \
                    DWF_MAC(P, LOAD, a, 0, q, 0);                                                \
                }                                                                                \
                {                                                                                \
                    DWF_QUADS(P, VI, q, DWQ_LOAD_X(P, LOAD, x + 4 * u), z, z, z);                \
                    DWF_MAC(P, LOAD, a, 0, q, 1);                                                \
                }                                                                                \
            }                                                                                    \
            DWQ_OUTPUT_CONSTANTS(P, VI, VF);                                                     \
            DWQ_OUTPUT(P, VI, VF, STORE, a, y + px * ldy);                                       \
        }                                                                                        \
    }

DWQ_EACH_WIDTH(DWF_BLOCK, dwf_block)

/* The rows R of tap fives for this call, or 0 when they do not serve it: a stepped run, a
 * window of 5R taps with its fives packed, each five on pixels one step apart. */
static size_t dwf_rows(const qe_dw_params *p, const uint8_t *const *taps, size_t step) {
    if (!p->w5 || step == 0) return 0;
    for (size_t g = 0; g < p->ntaps / 5; g++)
        for (size_t k = 1; k < 5; k++)
            if (taps[5 * g + k] != taps[5 * g] + k * step) return 0;
    return p->ntaps / 5;
}

/* Every block (R: a literal, so that each block is compiled per row count). */
static inline __attribute__((always_inline)) void dwf_run(const qe_dw_params *p,
                                                         const dw_out_avx512 *o, size_t pixels,
                                                         const uint8_t *const *taps,
                                                         const size_t R, size_t u, void *y,
                                                         size_t es) {
    const size_t C = p->channels, c_full = C / 64 * 64, r = C - c_full;
    for (size_t c0 = 0; c0 < c_full; c0 += 64)
        dwf_block_512(p, o, pixels, taps, R, u, y, c0, 64, ~(__mmask64)0, es);
    if (r > 32)
        dwf_block_512(p, o, pixels, taps, R, u, y, c_full, r, ((__mmask64)1 << r) - 1, es);
    else if (r > 16)
        dwf_block_256(p, o, pixels, taps, R, u, y, c_full, r,
                      (__mmask32)(((uint64_t)1 << r) - 1), es);
    else if (r > 0)
        dwf_block_128(p, o, pixels, taps, R, u, y, c_full, r, (__mmask16)((1u << r) - 1), es);
}

void qe_dwconv_u8s8_up64c4__avx512vnni(const qe_dw_params *p, size_t pixels,
                                       const uint8_t *const *taps, size_t step, void *y) {
    QE_ASSERT(p && taps && y && p->out && p->out->bias == NULL && p->ntaps > 0 &&
              p->tap_stride == QE_ROUND_UP(p->ntaps, 4));
    QE_ASSERT(p->out->kind == QE_OUT_I32 || !p->out->per_channel || p->scale != NULL);
    const size_t es = qe_output_elem_size(p->out->kind), ts = step ? 0 : p->tap_stride;
    const dw_out_avx512 out = dw_out_setup(p->out);
    const size_t S = dwt_stride(p, taps, step), R = dwf_rows(p, taps, step);
    if (R == 5)
        dwf_run(p, &out, pixels, taps, 5, step, y, es);
    else if (R == 4)
        dwf_run(p, &out, pixels, taps, 4, step, y, es);
    else if (R == 3)
        dwf_run(p, &out, pixels, taps, 3, step, y, es);
    else if (R > 0)
        dwf_run(p, &out, pixels, taps, R, step, y, es);
    else if (S == 1)
        dwt_run(p, &out, pixels, taps, 1, y, es);
    else if (S == 2)
        dwt_run(p, &out, pixels, taps, 2, y, es);
    else if (p->ntaps == 9) /* 3 x 3: the quad loop unrolled, the tail quad's checks folded */
        dwq_run(p, &out, pixels, taps, step, ts, y, 9, es);
    else
        dwq_run(p, &out, pixels, taps, step, ts, y, p->ntaps, es);
}

const qe_dw_ukernel qe_dw_avx512vnni = {.kernel = qe_dwconv_u8s8_up64c4__avx512vnni,
                                        .layout = QE_DW_QUADS_S8,
                                        .with_w_zp = &qe_dw_avx512vnni_s16};
