/*
 * qgemm_avx512vnni.c -- u8 x s8 GEMM tiles with vpdpbusd (AVX-512 VNNI).
 *
 * One vpdpbusd multiplies 16 columns x 4 k of B (int8, the packed panel's group) by 4 bytes of
 * one A row broadcast to every lane (uint8) and adds the four products into int32: exact, no
 * intermediate saturation. The main tile is 6 rows x 64 columns: 24 zmm accumulators, 4 B
 * vectors and one A broadcast fit the 32 registers; per k-group it issues 24 vpdpbusd against
 * 4 loads of B and 6 broadcasts of A, so the multiplier, not memory, is the bottleneck.
 * Tiles of fewer rows or narrower panels (the remainders) are the same code instantiated
 * smaller; a 1-row tile with two accumulator sets serves M = 1 (memory-bound: it keeps more
 * loads in flight).
 *
 * A is read in place, 4 bytes at a time; the last partial group of K is loaded with a byte
 * mask (no read past the row), and the packed B is zero there anyway.
 */
#include <immintrin.h>
#include <string.h>

#include "qgemm.h"

enum { MR = 6, NR = 64, NV_MAX = 4, KR = 4 };
/* Prefetch distance of the B stream, in bytes ahead of the group being multiplied. */
enum { B_PREFETCH = 1024 };

#define QE_INLINE static inline __attribute__((always_inline))

QE_INLINE int32_t load_u32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The output pipeline of one vector of 16 accumulators (columns col..col+15 of the epilogue
 * arrays), stored under `mask`. Same operations, same order as qe_output_row_ref. */
QE_INLINE void store_vec(const qe_gemm_epilogue *ep, size_t col, __m512i acc, int32_t rowterm,
                         __mmask16 mask, void *dst) {
    acc = _mm512_add_epi32(acc, _mm512_load_si512(ep->colterm + col));
    if (ep->nbzp)
        acc = _mm512_add_epi32(
            acc, _mm512_mullo_epi32(_mm512_set1_epi32(rowterm), _mm512_load_si512(ep->nbzp + col)));
    switch (ep->kind) {
    case QE_OUT_I32:
        _mm512_mask_storeu_epi32(dst, mask, acc);
        break;
    case QE_OUT_F32: {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_load_ps(ep->scale + col));
        if (ep->fbias) v = _mm512_add_ps(v, _mm512_load_ps(ep->fbias + col));
        _mm512_mask_storeu_ps(dst, mask, v);
        break;
    }
    case QE_OUT_U8: {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_load_ps(ep->scale + col));
        v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(ep->lo)), _mm512_set1_ps(ep->hi));
        const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(ep->zp));
        _mm_mask_storeu_epi8(dst, mask, _mm512_cvtepi32_epi8(q)); /* q is in [0, 255] */
        break;
    }
    }
}

/* Lanes of panel columns [lo, hi), 64 bits for the 4 vectors of a panel. */
QE_INLINE uint64_t column_mask(size_t lo, size_t hi) {
    const uint64_t upto_hi = hi >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
    return upto_hi & ~(((uint64_t)1 << lo) - 1);
}

QE_INLINE void store_tile(const qe_gemm_tile *t, const int mr, const int nv,
                          __m512i acc[MR][NV_MAX]) {
    const qe_gemm_epilogue *ep = t->ep;
    const size_t es = qe_output_elem_size(ep->kind);
    const uint64_t cols = column_mask(t->col_lo, t->col_hi);
    for (int r = 0; r < mr; r++) {
        const int32_t rowterm = ep->nbzp ? ep->rowterm[t->row0 + r] : 0;
        char *row = (char *)t->c + r * t->ldc * es;
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = (__mmask16)(cols >> (16 * v));
            if (m) store_vec(ep, t->ep_col + 16 * v, acc[r][v], rowterm, m, row + 16 * v * es);
        }
    }
}

/* The register tile: mr rows x (16 * nv) columns over all of K. */
QE_INLINE void tile_vnni(const qe_gemm_tile *t, const int mr, const int nv) {
    __m512i acc[MR][NV_MAX];
    const uint8_t *ar[MR];
    for (int r = 0; r < mr; r++) {
        ar[r] = t->a + r * t->lda;
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_si512();
    }
    const int8_t *b = t->b;
    const size_t groups = t->K / KR;
    for (size_t g = 0; g < groups; g++) {
        __m512i bv[NV_MAX];
        for (int v = 0; v < nv; v++) bv[v] = _mm512_load_si512(b + 64 * v);
        _mm_prefetch((const char *)b + B_PREFETCH, _MM_HINT_T0);
        if (nv > 2) _mm_prefetch((const char *)b + B_PREFETCH + 128, _MM_HINT_T0);
        b += 64 * nv;
        for (int r = 0; r < mr; r++) {
            const __m512i av = _mm512_set1_epi32(load_u32(ar[r] + KR * g));
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
        }
    }
    if (t->K % KR) { /* the last, partial group: read only the bytes that exist */
        const __mmask16 km = (__mmask16)((1u << (t->K % KR)) - 1);
        __m512i bv[NV_MAX];
        for (int v = 0; v < nv; v++) bv[v] = _mm512_load_si512(b + 64 * v);
        for (int r = 0; r < mr; r++) {
            const __m512i av =
                _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(km, ar[r] + KR * groups));
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
        }
    }
    store_tile(t, mr, nv, acc);
}

/* M = 1 over a full panel: even and odd groups into separate accumulators, so twice as many
 * independent loads and multiplies are in flight on this memory-bound shape. */
static void qe_gemm_u8s8_ukernel_1x64c4__avx512vnni(const qe_gemm_tile *t) {
    __m512i acc[MR][NV_MAX], odd[NV_MAX];
    for (int v = 0; v < NV_MAX; v++) acc[0][v] = odd[v] = _mm512_setzero_si512();
    const uint8_t *a = t->a;
    const int8_t *b = t->b;
    const size_t groups = t->K / KR;
    size_t g = 0;
    for (; g + 2 <= groups; g += 2) {
        const __m512i a0 = _mm512_set1_epi32(load_u32(a + KR * g));
        const __m512i a1 = _mm512_set1_epi32(load_u32(a + KR * g + KR));
        _mm_prefetch((const char *)b + 2 * B_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 192, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 256, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 320, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 384, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2 * B_PREFETCH + 448, _MM_HINT_T0);
        for (int v = 0; v < NV_MAX; v++) {
            acc[0][v] = _mm512_dpbusd_epi32(acc[0][v], a0, _mm512_load_si512(b + 64 * v));
            odd[v] = _mm512_dpbusd_epi32(odd[v], a1, _mm512_load_si512(b + 256 + 64 * v));
        }
        b += 512;
    }
    for (; g < groups; g++) {
        const __m512i a0 = _mm512_set1_epi32(load_u32(a + KR * g));
        for (int v = 0; v < NV_MAX; v++)
            acc[0][v] = _mm512_dpbusd_epi32(acc[0][v], a0, _mm512_load_si512(b + 64 * v));
        b += 256;
    }
    if (t->K % KR) {
        const __mmask16 km = (__mmask16)((1u << (t->K % KR)) - 1);
        const __m512i a0 = _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(km, a + KR * groups));
        for (int v = 0; v < NV_MAX; v++)
            acc[0][v] = _mm512_dpbusd_epi32(acc[0][v], a0, _mm512_load_si512(b + 64 * v));
    }
    for (int v = 0; v < NV_MAX; v++) acc[0][v] = _mm512_add_epi32(acc[0][v], odd[v]);
    store_tile(t, 1, NV_MAX, acc);
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
};
