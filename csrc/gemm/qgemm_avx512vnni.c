/*
 * qgemm_avx512vnni.c -- u8 x s8 GEMM tiles with vpdpbusd (AVX-512 VNNI).
 *
 * One vpdpbusd multiplies 16 columns x 4 k of B (int8, the packed panel's group) by 4 bytes of
 * one A row broadcast to every lane (uint8) and adds the four products into int32: exact, no
 * intermediate saturation. The main tile is 6 rows x 64 columns: 24 zmm accumulators, 4 B
 * vectors and one A broadcast fit the 32 registers; per k-group it issues 24 vpdpbusd against
 * 4 loads of B and 6 broadcasts of A, so the multiplier, not memory, is the bottleneck. The k
 * loops of the full-height tiles (6 x 64, 6 x 48) and of 5 x 64 (the driver's short strips)
 * are inline asm (qgemm_avx512vnni_asm.h) from QE_ASM_MIN_GROUPS k-groups on, and the common
 * uint8 6 x 64 and 5 x 64 tiles run their output pipeline in the same asm block;
 * the remainder tiles (fewer rows, narrower panels) are the same C instantiated smaller, and a
 * 1-row tile with two accumulator sets serves M = 1 (memory-bound: more loads in flight).
 * Segmented 6-row tiles (seg_tiles: the 6 x 64 one in asm, narrower panels in C) read a
 * convolution's interior pixels in place, one k loop per kernel row on the same accumulators
 * (qe_gemm_run_segmented).
 *
 * A is read in place, 4 bytes at a time; the last partial group of K is loaded with a byte
 * mask (no read past the row), and the packed B is zero there anyway. Outputs are stored with
 * masks, so a tile writes exactly its columns [col_lo, col_hi).
 */
#include <immintrin.h>
#include <string.h>

#include "../eltwise/requant_simd.h"
#include "qgemm.h"

enum { MR = 6, NR = 64, NV_MAX = 4, KR = 4 };
/* Prefetch distance of the B stream, bytes ahead of the group being multiplied. Within noise
 * from 0 to 4096 when B sits in L2 (the hardware prefetcher follows the panel); kept for B
 * streamed from L3. */
enum { B_PREFETCH = 1024 };
/* K groups from which the full-height tiles take the asm k loop. Below it the C loop is faster
 * (measured, 1x1 convs with K = 16..64: 3-8%): the asm block hands its sums to the output
 * pipeline through memory, a cost that a short k loop does not amortize. */
enum { QE_ASM_MIN_GROUPS = 16 };

#define QE_INLINE static inline __attribute__((always_inline))

QE_INLINE int32_t load_u32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The output pipeline, in the reference's order (qe_output_row_ref): int32 terms first, then
 * for U8 float32 multiply and QE_REQUANT_PACK_U8_INLANE (requant_simd.h: the clamp, rounding
 * half to even and zero point of qe_requant_one); for F32 multiply, then add the float bias.
 * No FMA. The column term (bias, a_zp * column sum) is not added here: every tile starts its
 * accumulators from it (QE_INIT_ROW, the asm blocks' QE_ASM_INIT), which saves an add and a
 * load per 16 outputs of the epilogue (7-14% of 1x1 convs with K <= 32) -- int32 sums wrap, so
 * the order of the terms changes no bit. */
QE_INLINE __m512i add_terms(const qe_gemm_epilogue *ep, size_t col, __m512i acc, int32_t rowterm) {
    if (ep->nbzp)
        acc = _mm512_add_epi32(
            acc, _mm512_mullo_epi32(_mm512_set1_epi32(rowterm), _mm512_load_si512(ep->nbzp + col)));
    return acc;
}

QE_INLINE __m512 dequant(const qe_gemm_epilogue *ep, size_t col, __m512i acc) {
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_load_ps(ep->scale + col));
    return ep->fbias ? _mm512_add_ps(v, _mm512_load_ps(ep->fbias + col)) : v;
}

/* The packs of the uint8 pipeline work per 128-bit lane; this dword permutation puts the 64
 * output bytes of a row back in column order (the C pipeline and the asm one both use it). */
static const int32_t g_lane_order[16] __attribute__((aligned(64))) = {0, 4, 8, 12, 1, 5, 9, 13,
                                                                      2, 6, 10, 14, 3, 7, 11, 15};

/* Lanes of panel columns [lo, hi), 64 bits for the 4 vectors of a panel. */
QE_INLINE uint64_t column_mask(size_t lo, size_t hi) {
    const uint64_t upto_hi = hi >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
    return upto_hi & ~(((uint64_t)1 << lo) - 1);
}

/* The accumulators are named variables c<row><vector>, not an array: GCC keeps an array of
 * vectors in memory, named variables in registers. Rows >= mr and vectors >= nv are compiled
 * out (mr, nv are constants in every instantiation). */
#define QE_FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define QE_DECLARE_ROW(r)                                                               \
    __attribute__((unused)) __m512i c##r##0 = _mm512_setzero_si512(),                    \
                                    c##r##1 = _mm512_setzero_si512(),                    \
                                    c##r##2 = _mm512_setzero_si512(),                    \
                                    c##r##3 = _mm512_setzero_si512();                    \
    __attribute__((unused)) const uint8_t *a##r = t->a + (r < mr ? r : 0) * t->lda;
/* One k-group of row r: broadcast 4 bytes of A (read by `load`), multiply by the B vectors. */
#define QE_MULTIPLY_ROW(r, load)                                     \
    if (r < mr) {                                                   \
        const __m512i av = load(a##r);                              \
        if (nv > 0) c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0); \
        if (nv > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1); \
        if (nv > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2); \
        if (nv > 3) c##r##3 = _mm512_dpbusd_epi32(c##r##3, av, b3); \
    }
#define QE_LOAD_GROUP(p) _mm512_set1_epi32(load_u32((p) + KR * g))
#define QE_LOAD_TAIL(p) _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(km, (p) + KR * groups))
#define QE_MULTIPLY_GROUP(r) QE_MULTIPLY_ROW(r, QE_LOAD_GROUP)
#define QE_MULTIPLY_TAIL(r) QE_MULTIPLY_ROW(r, QE_LOAD_TAIL)
#define QE_LOAD_B()                                                 \
    const __m512i b0 = _mm512_load_si512(b);                        \
    const __m512i b1 = nv > 1 ? _mm512_load_si512(b + 64) : b0;     \
    const __m512i b2 = nv > 2 ? _mm512_load_si512(b + 128) : b0;    \
    const __m512i b3 = nv > 3 ? _mm512_load_si512(b + 192) : b0;
/* k groups [0, count) of the C tiles: B's next vectors, a prefetch ahead, the rows' multiplies
 * (A from a0..a5, the group's bytes at KR * g) */
#define QE_K_LOOP(count)                                                               \
    for (size_t g = 0; g < (count); g++) {                                             \
        QE_LOAD_B()                                                                     \
        _mm_prefetch((const char *)b + B_PREFETCH, _MM_HINT_T0);                        \
        if (nv > 2) _mm_prefetch((const char *)b + B_PREFETCH + 128, _MM_HINT_T0);      \
        b += 64 * nv;                                                                   \
        QE_FOR_ROWS(QE_MULTIPLY_GROUP)                                                  \
    }
#define QE_TERMS(r, v) \
    (nv > v ? add_terms(&ep, t->ep_col + 16 * v, c##r##v, rowterm) : _mm512_setzero_si512())
#define QE_STORE_I32(r, v)                                                               \
    if (nv > v && (__mmask16)(cols >> (16 * v)))                                         \
        _mm512_mask_storeu_epi32(row + 64 * v, (__mmask16)(cols >> (16 * v)), QE_TERMS(r, v));
#define QE_STORE_F32(r, v)                                                               \
    if (nv > v && (__mmask16)(cols >> (16 * v)))                                         \
        _mm512_mask_storeu_ps(row + 64 * v, (__mmask16)(cols >> (16 * v)),              \
                              dequant(&ep, t->ep_col + 16 * v, QE_TERMS(r, v)));
#define QE_SCALED(r, v)                                                                    \
    (nv > v ? _mm512_mul_ps(_mm512_cvtepi32_ps(QE_TERMS(r, v)),                           \
                            _mm512_load_ps(ep.scale + t->ep_col + 16 * v))                \
            : _mm512_setzero_ps())
/* The 64 uint8 outputs of row r in column order (g_lane_order); nohi: a constant, the
 * epilogue's hi_free. */
#define QE_REQUANT_ROW(r)                                                                    \
    _mm512_permutexvar_epi32(                                                                \
        lane_order,                                                                          \
        nohi ? QE_REQUANT_PACK_U8_INLANE_NOHI(_mm512_, QE_SCALED(r, 0), QE_SCALED(r, 1),      \
                                              QE_SCALED(r, 2), QE_SCALED(r, 3), u8_zp16,      \
                                              u8_lo8)                                         \
             : QE_REQUANT_PACK_U8_INLANE(_mm512_, QE_SCALED(r, 0), QE_SCALED(r, 1),           \
                                         QE_SCALED(r, 2), QE_SCALED(r, 3), u8_hi, u8_zp16,    \
                                         u8_lo8))
#define QE_STORE_ROW(r)                                                                   \
    if (r < mr) {                                                                         \
        const int32_t rowterm = ep.nbzp ? ep.rowterm[t->row0 + r] : 0;                    \
        char *row = (char *)t->c + r * t->ldc * es;                                       \
        if (kind == QE_OUT_I32) {                                                         \
            QE_STORE_I32(r, 0) QE_STORE_I32(r, 1) QE_STORE_I32(r, 2) QE_STORE_I32(r, 3)   \
        } else if (kind == QE_OUT_F32) {                                                  \
            QE_STORE_F32(r, 0) QE_STORE_F32(r, 1) QE_STORE_F32(r, 2) QE_STORE_F32(r, 3)   \
        } else {                                                                          \
            _mm512_mask_storeu_epi8(row, cols, QE_REQUANT_ROW(r));                        \
        }                                                                                 \
    }
/* A panel of 16 columns (nv = 1, all of them there: N = 16, or the last 16 of N): one pack chain
 * takes 4 rows -- it packs 4 vectors, of which a row alone would fill one and zeros the rest --
 * and each row's 16 bytes are stored from their lane (plain stores: masked ones are slow on Zen
 * 4). The same values as QE_STORE_ROW; only which vectors share a pack changes. YOLO's stem (3
 * -> 16 channels, K = 27, 160 x 160 outputs; a loop over benchmarks/conv_layers.py's
 * qengine_runner, 1 thread): 0.171-0.173 -> 0.154-0.157 ms. */
#define QE_ROWTERM(r) (ep.nbzp ? ep.rowterm[t->row0 + (r)] : 0)
#define QE_SCALED_16(r)                                                                        \
    (r < mr ? _mm512_mul_ps(_mm512_cvtepi32_ps(add_terms(&ep, t->ep_col, c##r##0, QE_ROWTERM(r))), \
                            _mm512_load_ps(ep.scale + t->ep_col))                              \
            : _mm512_setzero_ps())
#define QE_STORE_16(r, q, i)                                                                    \
    if (r < mr)                                                                                 \
        _mm_storeu_si128((__m128i *)((char *)t->c + r * t->ldc), _mm512_extracti32x4_epi32(q, i));
/* Rows r0..r3 (those below mr) through one chain; v2, v3: rows r2, r3 scaled, or zeros where
 * the tile has no such rows (rows 6 and 7 are never stored: mr <= 6). */
#define QE_STORE_4_ROWS_16(r0, r1, r2, r3, v2, v3)                                              \
    if (r0 < mr) {                                                                              \
        const __m512 v0 = QE_SCALED_16(r0), v1 = QE_SCALED_16(r1);                              \
        const __m512i q = _mm512_permutexvar_epi32(                                             \
            lane_order, nohi ? QE_REQUANT_PACK_U8_INLANE_NOHI(_mm512_, v0, v1, v2, v3, u8_zp16,  \
                                                              u8_lo8)                           \
                             : QE_REQUANT_PACK_U8_INLANE(_mm512_, v0, v1, v2, v3, u8_hi,        \
                                                         u8_zp16, u8_lo8));                     \
        QE_STORE_16(r0, q, 0) QE_STORE_16(r1, q, 1) QE_STORE_16(r2, q, 2) QE_STORE_16(r3, q, 3)  \
    }
#define QE_STORE_ROWS_16(nohi_)                                                                 \
    do {                                                                                       \
        const int nohi = nohi_;                                                                \
        QE_STORE_4_ROWS_16(0, 1, 2, 3, QE_SCALED_16(2), QE_SCALED_16(3))                       \
        QE_STORE_4_ROWS_16(4, 5, 6, 7, _mm512_setzero_ps(), _mm512_setzero_ps())               \
    } while (0)
#define QE_STORE_ROWS(k, nohi_)                           \
    do {                                                 \
        const qe_out_kind kind = k;                      \
        const int nohi = nohi_;                          \
        const size_t es = k == QE_OUT_U8 ? 1 : 4;        \
        QE_FOR_ROWS(QE_STORE_ROW)                        \
    } while (0)
/* The output pipeline of a whole tile, one expansion per output kind. The epilogue is copied
 * to a local: stores to C could alias it, and GCC would reload every field after each store. */
#define QE_STORE_TILE()                                              \
    do {                                                             \
        const qe_gemm_epilogue ep = *t->ep;                          \
        const uint64_t cols = column_mask(t->col_lo, t->col_hi);     \
        const __m512 u8_hi = _mm512_set1_ps(ep.hi);                  \
        const __m512i u8_zp16 = _mm512_set1_epi16((int16_t)ep.zp);   \
        const __m512i u8_lo8 = _mm512_set1_epi8((char)((int32_t)ep.lo + ep.zp)); \
        const __m512i lane_order = _mm512_load_si512(g_lane_order);  \
        switch (ep.kind) {                                           \
        case QE_OUT_I32: QE_STORE_ROWS(QE_OUT_I32, 0); break;        \
        case QE_OUT_F32: QE_STORE_ROWS(QE_OUT_F32, 0); break;        \
        case QE_OUT_U8:                                              \
            if (nv == 1 && cols == 0xFFFF) {                         \
                if (ep.hi_free)                                      \
                    QE_STORE_ROWS_16(1);                             \
                else                                                 \
                    QE_STORE_ROWS_16(0);                             \
            } else if (ep.hi_free)                                   \
                QE_STORE_ROWS(QE_OUT_U8, 1);                         \
            else                                                     \
                QE_STORE_ROWS(QE_OUT_U8, 0);                         \
            break;                                                   \
        }                                                            \
    } while (0)

#include "qgemm_avx512vnni_asm.h"

/* Row r's accumulators start from the column terms of the tile's columns. */
#define QE_INIT_ROW(r)                 \
    if (r < mr) {                      \
        if (nv > 0) c##r##0 = ct0;     \
        if (nv > 1) c##r##1 = ct1;     \
        if (nv > 2) c##r##2 = ct2;     \
        if (nv > 3) c##r##3 = ct3;     \
    }
#define QE_LOAD_COLTERMS()                                                                  \
    const int32_t *ct = t->ep->colterm + t->ep_col;                                         \
    __attribute__((unused)) const __m512i ct0 = _mm512_load_si512(ct),                      \
                                          ct1 = nv > 1 ? _mm512_load_si512(ct + 16) : ct0,  \
                                          ct2 = nv > 2 ? _mm512_load_si512(ct + 32) : ct0,  \
                                          ct3 = nv > 3 ? _mm512_load_si512(ct + 48) : ct0;

#define QE_LOAD_ACC_ROW(r)                                              \
    if (r < mr) {                                                       \
        c##r##0 = _mm512_load_si512(acc + 64 * r);                      \
        c##r##1 = _mm512_load_si512(acc + 64 * r + 16);                 \
        c##r##2 = _mm512_load_si512(acc + 64 * r + 32);                 \
        if (nv > 3) c##r##3 = _mm512_load_si512(acc + 64 * r + 48);     \
    }

/* Whether a 6 x 64 tile takes the asm uint8 pipeline (see qe_u8_out), and its output. */
QE_INLINE int u8_fused(const qe_gemm_tile *t, qe_u8_out *o) {
    const qe_gemm_epilogue *ep = t->ep;
    if (ep->kind != QE_OUT_U8 || !ep->hi_free || ep->nbzp || t->col_lo != 0 || t->col_hi != 64)
        return 0;
    *o = (qe_u8_out){.scale = ep->scale + t->ep_col, .c = t->c, .ldc = t->ldc,
                     .zp = (int16_t)ep->zp, .lo = (uint8_t)((int32_t)ep->lo + ep->zp)};
    return 1;
}

/* The register tile: mr rows x (16 * nv) columns over all of K. */
QE_INLINE void tile_vnni(const qe_gemm_tile *t, const int mr, const int nv) {
    QE_FOR_ROWS(QE_DECLARE_ROW)
    const int8_t *b = t->b;
    const size_t groups = t->K / KR;
    const int32_t *ct = t->ep->colterm + t->ep_col;
    qe_u8_out o;
    if ((mr == 6 || mr == 5) && nv == 4 && groups >= QE_ASM_MIN_GROUPS && u8_fused(t, &o)) {
        (mr == 6 ? dot_6x64_u8_avx512vnni : dot_5x64_u8_avx512vnni)(
            a0, t->lda, b, groups, (__mmask16)((1u << (t->K % KR)) - 1), ct, &o,
            t->pf ? t->pf : (const char *)b);
        return;
    }
    if (((mr == 6 && nv >= 3) || (mr == 5 && nv == 4)) && groups >= QE_ASM_MIN_GROUPS) {
        int32_t acc[6 * 64] __attribute__((aligned(64)));
        (mr == 5 ? dot_5x64_avx512vnni : nv == 4 ? dot_6x64_avx512vnni : dot_6x48_avx512vnni)(
            a0, t->lda, b, groups, ct, acc, t->pf ? t->pf : (const char *)b);
        b += 64 * nv * groups;
        QE_FOR_ROWS(QE_LOAD_ACC_ROW)
    } else {
        {
            QE_LOAD_COLTERMS()
            QE_FOR_ROWS(QE_INIT_ROW)
        }
        QE_K_LOOP(groups)
    }
    if (t->K % KR) { /* the last, partial group: read only the bytes that exist */
        const __mmask16 km = (__mmask16)((1u << (t->K % KR)) - 1);
        QE_LOAD_B()
        QE_FOR_ROWS(QE_MULTIPLY_TAIL)
    }
    QE_STORE_TILE();
}

/* 6 x 64 over segmented A (qe_gemm_tile.seg): each segment's k loop adds to the same sums,
 * then the output pipeline. Integer sums are exact, so the order of the segments changes
 * nothing: the result equals the tile over the materialized rows. */
static void qe_gemm_u8s8_ukernel_6x64c4_seg__avx512vnni(const qe_gemm_tile *t) {
    enum { mr = 6, nv = 4 };
    QE_ASSERT(t->rows == 6 && t->seg && t->seg_len % KR == 0 && t->nseg * t->seg_len == t->K);
    int32_t acc[6 * 64] __attribute__((aligned(64)));
    const int8_t *b = t->b;
    const size_t groups = t->seg_len / KR;
    const int32_t *ct = t->ep->colterm + t->ep_col;
    /* the prefetch slice runs on across the segments (32 bytes per k group) */
    const char *pf = t->pf ? t->pf : (const char *)b;
    qe_u8_out o;
    if (u8_fused(t, &o)) {
        dot_6x64_seg_u8_avx512vnni(t->seg, t->nseg, t->lda, b, groups, ct, &o, pf);
        return;
    }
    dot_6x64_seg_avx512vnni(t->seg, t->nseg, t->lda, b, groups, ct, acc, pf);
    QE_FOR_ROWS(QE_DECLARE_ROW)
    QE_FOR_ROWS(QE_LOAD_ACC_ROW)
    QE_STORE_TILE();
}

/* 6 rows x 16 nv columns over segmented A (nv < 4: a panel of 16, 32 or 48 columns, N's last):
 * tile_vnni's k loop once per segment, the row pointers moved to each segment's start, on the
 * same accumulators. A convolution with 16 or 32 output channels reads its interior in place
 * as the 6 x 64 tile does, where it had copied every window (YOLO's 3 x 3 convolutions of
 * 16 -> 16 and 32 -> 32 channels). */
QE_INLINE void tile_vnni_seg(const qe_gemm_tile *t, const int nv) {
    enum { mr = 6 };
    QE_ASSERT(t->rows == 6 && t->seg && t->seg_len % KR == 0 && t->nseg * t->seg_len == t->K);
    QE_FOR_ROWS(QE_DECLARE_ROW)
    const int8_t *b = t->b;
    const size_t groups = t->seg_len / KR;
    {
        QE_LOAD_COLTERMS()
        QE_FOR_ROWS(QE_INIT_ROW)
    }
#define QE_SEG_ROW(r) a##r = t->seg[s] + r * t->lda;
    for (size_t s = 0; s < t->nseg; s++) {
        QE_FOR_ROWS(QE_SEG_ROW)
        QE_K_LOOP(groups)
    }
#undef QE_SEG_ROW
    QE_STORE_TILE();
}
static void qe_gemm_u8s8_ukernel_6x16c4_seg__avx512vnni(const qe_gemm_tile *t) { tile_vnni_seg(t, 1); }
static void qe_gemm_u8s8_ukernel_6x32c4_seg__avx512vnni(const qe_gemm_tile *t) { tile_vnni_seg(t, 2); }
static void qe_gemm_u8s8_ukernel_6x48c4_seg__avx512vnni(const qe_gemm_tile *t) { tile_vnni_seg(t, 3); }

/* M = 1 over a full panel: even and odd groups into separate accumulators, so twice as many
 * independent loads and multiplies are in flight on this memory-bound shape. The hardware
 * prefetcher follows the panel's one sequential stream; software prefetch only cost issue
 * slots here (measured). */
static void qe_gemm_u8s8_ukernel_1x64c4__avx512vnni(const qe_gemm_tile *t) {
    enum { mr = 1, nv = 4 };
    QE_FOR_ROWS(QE_DECLARE_ROW) /* only row 0 is used */
    const int8_t *b = t->b;
    const size_t groups = t->K / KR;
    QE_LOAD_COLTERMS()
    __m512i e0 = ct0, e1 = ct1, e2 = ct2, e3 = ct3; /* even groups, from the column terms */
    __m512i d0 = c00, d1 = c00, d2 = c00, d3 = c00; /* odd groups */
    size_t g = 0;
    for (; g + 2 <= groups; g += 2, b += 512) {
        const __m512i x = _mm512_set1_epi32(load_u32(a0 + KR * g));
        const __m512i y = _mm512_set1_epi32(load_u32(a0 + KR * g + KR));
        e0 = _mm512_dpbusd_epi32(e0, x, _mm512_load_si512(b));
        e1 = _mm512_dpbusd_epi32(e1, x, _mm512_load_si512(b + 64));
        e2 = _mm512_dpbusd_epi32(e2, x, _mm512_load_si512(b + 128));
        e3 = _mm512_dpbusd_epi32(e3, x, _mm512_load_si512(b + 192));
        d0 = _mm512_dpbusd_epi32(d0, y, _mm512_load_si512(b + 256));
        d1 = _mm512_dpbusd_epi32(d1, y, _mm512_load_si512(b + 320));
        d2 = _mm512_dpbusd_epi32(d2, y, _mm512_load_si512(b + 384));
        d3 = _mm512_dpbusd_epi32(d3, y, _mm512_load_si512(b + 448));
    }
    if (g < groups) { /* one whole group left */
        const __m512i x = _mm512_set1_epi32(load_u32(a0 + KR * g));
        e0 = _mm512_dpbusd_epi32(e0, x, _mm512_load_si512(b));
        e1 = _mm512_dpbusd_epi32(e1, x, _mm512_load_si512(b + 64));
        e2 = _mm512_dpbusd_epi32(e2, x, _mm512_load_si512(b + 128));
        e3 = _mm512_dpbusd_epi32(e3, x, _mm512_load_si512(b + 192));
        b += 256;
    }
    if (t->K % KR) { /* the partial group */
        const __mmask16 km = (__mmask16)((1u << (t->K % KR)) - 1);
        const __m512i x = _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(km, a0 + KR * groups));
        d0 = _mm512_dpbusd_epi32(d0, x, _mm512_load_si512(b));
        d1 = _mm512_dpbusd_epi32(d1, x, _mm512_load_si512(b + 64));
        d2 = _mm512_dpbusd_epi32(d2, x, _mm512_load_si512(b + 128));
        d3 = _mm512_dpbusd_epi32(d3, x, _mm512_load_si512(b + 192));
    }
    c00 = _mm512_add_epi32(e0, d0);
    c01 = _mm512_add_epi32(e1, d1);
    c02 = _mm512_add_epi32(e2, d2);
    c03 = _mm512_add_epi32(e3, d3);
    QE_STORE_TILE();
}

/* The table of tiles, [rows - 1][nv - 1]; names say rows x columns, K groups of 4, ISA. */
#define QE_VNNI_TILE(mr, cols, nv)                                                        \
    static void qe_gemm_u8s8_ukernel_##mr##x##cols##c4__avx512vnni(const qe_gemm_tile *t) { \
        tile_vnni(t, mr, nv);                                                             \
    }
#define QE_VNNI_ROW(mr) \
    QE_VNNI_TILE(mr, 16, 1) QE_VNNI_TILE(mr, 32, 2) QE_VNNI_TILE(mr, 48, 3)
QE_VNNI_ROW(1)
QE_VNNI_ROW(2)
QE_VNNI_ROW(3)
QE_VNNI_ROW(4)
QE_VNNI_ROW(5)
QE_VNNI_ROW(6)
QE_VNNI_TILE(2, 64, 4)
QE_VNNI_TILE(3, 64, 4)
QE_VNNI_TILE(4, 64, 4)
QE_VNNI_TILE(5, 64, 4)
QE_VNNI_TILE(6, 64, 4)

#define QE_VNNI_ENTRIES(mr)                                                                 \
    qe_gemm_u8s8_ukernel_##mr##x16c4__avx512vnni, qe_gemm_u8s8_ukernel_##mr##x32c4__avx512vnni, \
        qe_gemm_u8s8_ukernel_##mr##x48c4__avx512vnni, qe_gemm_u8s8_ukernel_##mr##x64c4__avx512vnni
static const qe_gemm_tile_fn g_seg_tiles[NV_MAX] = {
    qe_gemm_u8s8_ukernel_6x16c4_seg__avx512vnni, qe_gemm_u8s8_ukernel_6x32c4_seg__avx512vnni,
    qe_gemm_u8s8_ukernel_6x48c4_seg__avx512vnni, qe_gemm_u8s8_ukernel_6x64c4_seg__avx512vnni,
};

static const qe_gemm_tile_fn g_tiles[MR * NV_MAX] = {
    QE_VNNI_ENTRIES(1), QE_VNNI_ENTRIES(2), QE_VNNI_ENTRIES(3),
    QE_VNNI_ENTRIES(4), QE_VNNI_ENTRIES(5), QE_VNNI_ENTRIES(6),
};

const qe_gemm_ukernel qe_gemm_ukernel_avx512vnni = {
    .name = "qgemm_u8s8_6x64c4__avx512vnni",
    .packed_bytes = qe_gemm_panels_bytes,
    .pack = qe_gemm_pack_panels,
    .run = qe_gemm_run_blocked,
    .mr = MR,
    .nr = NR,
    .kr = KR,
    .k_pad = KR,
    .col_align = 16,
    .b_elem = 1,
    .a_bias = 0,
    .nv_max = NV_MAX,
    .tiles = g_tiles,
    .seg_tiles = g_seg_tiles,
    .short_strips = 1, /* 5 x 64 runs at the 6 x 64 rate; 1 x 64 waits on L2 */
};
