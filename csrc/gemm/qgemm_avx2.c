/*
 * qgemm_avx2.c -- u8 x s8 GEMM tiles for AVX2, exact.
 *
 * vpmaddubsw (u8 x s8 with pair sums in int16) saturates: 255*127*2 > 32767. We avoid it:
 * B is packed as int16 (sign-extended at pack time) in pairs of k, A is zero-extended to int16
 * once per row strip (prep_a), and vpmaddwd multiplies int16 pairs into exact int32 sums
 * (|255 * 128 * 2| << 2^31). On CPUs of this class vpmaddwd has the same multiply throughput
 * as the vpmaddubsw + vpmaddwd chain, so exactness costs no peak.
 *
 * Tile: 6 rows x 16 columns: 12 ymm accumulators, 2 B vectors, one A broadcast and one
 * product: the 16 registers. Per pair of k: 2 loads of B, 6 broadcasts, 12 vpmaddwd + 12 vpaddd.
 */
#include <immintrin.h>
#include <string.h>

#include "qgemm.h"

enum { MR = 6, NR = 16, NV_MAX = 2, KR = 2 };

#define QE_INLINE static inline __attribute__((always_inline))

QE_INLINE int32_t load_u32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* A rows -> int16 rows of K rounded up to 16 (zeros past K); returns the row stride in bytes. */
static size_t prep_a_avx2(const uint8_t *a, size_t lda, size_t rows, size_t K, void *dst) {
    const size_t kp = QE_ROUND_UP(K, 16), stride = kp * sizeof(int16_t);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = a + r * lda;
        int16_t *d = (int16_t *)((char *)dst + r * stride);
        size_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm256_storeu_si256((__m256i *)(d + k),
                                _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src + k))));
        for (; k < K; k++) d[k] = src[k];
        for (; k < kp; k++) d[k] = 0;
    }
    return stride;
}

/* 8 int32 in [0, 255] -> 8 bytes. */
QE_INLINE __m128i narrow_u8(__m256i q) {
    const __m256i w = _mm256_packus_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256());
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

/* The output pipeline of 8 accumulators (epilogue columns col..col+7), storing lanes
 * [lo, hi) of the vector. Same operations, same order as qe_output_row_ref. */
QE_INLINE void store_vec(const qe_gemm_epilogue *ep, size_t col, __m256i acc, int32_t rowterm,
                         int lo, int hi, void *dst) {
    acc = _mm256_add_epi32(acc, _mm256_load_si256((const __m256i *)(ep->colterm + col)));
    if (ep->nbzp)
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(rowterm),
                                                       _mm256_load_si256((const __m256i *)(ep->nbzp + col))));
    const int full = lo == 0 && hi == 8;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 1)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
    __m256i bits = acc;
    switch (ep->kind) {
    case QE_OUT_I32:
        break;
    case QE_OUT_F32: {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_load_ps(ep->scale + col));
        if (ep->fbias) v = _mm256_add_ps(v, _mm256_load_ps(ep->fbias + col));
        bits = _mm256_castps_si256(v);
        break;
    }
    case QE_OUT_U8: {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_load_ps(ep->scale + col));
        v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(ep->lo)), _mm256_set1_ps(ep->hi));
        const __m128i q = narrow_u8(_mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(ep->zp)));
        if (full) {
            _mm_storel_epi64((__m128i *)dst, q);
        } else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, q);
            memcpy((uint8_t *)dst + lo, tmp + lo, (size_t)(hi - lo));
        }
        return;
    }
    }
    if (full)
        _mm256_storeu_si256((__m256i *)dst, bits);
    else
        _mm256_maskstore_epi32((int *)dst, keep, bits);
}

/* Accumulators are named variables c<row><vector> (GCC keeps an array of vectors in memory);
 * rows >= mr and vectors >= nv compile out. */
#define QE_FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define QE_DECLARE_ROW(r)                                                                   \
    __attribute__((unused)) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = c##r##0;    \
    __attribute__((unused)) const char *a##r = (const char *)t->a + (r < mr ? r : 0) * t->lda;
#define QE_MADD_ROW(r)                                                                       \
    if (r < mr) {                                                                            \
        const __m256i av = _mm256_set1_epi32(load_u32(a##r + 4 * g));                        \
        c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));                      \
        if (nv > 1) c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));          \
    }
#define QE_LOAD_ACC_ROW(r)                                    \
    c##r##0 = _mm256_load_si256((const __m256i *)(acc + 16 * r));     \
    c##r##1 = _mm256_load_si256((const __m256i *)(acc + 16 * r + 8));
#define QE_STORE_VEC(r, v)                                                                    \
    if (nv > v) {                                                                             \
        const int lo = (int)QE_MAX(t->col_lo, (size_t)(8 * v)) - 8 * v;                        \
        const int hi = (int)QE_MIN(t->col_hi, (size_t)(8 * v + 8)) - 8 * v;                    \
        if (lo < hi) store_vec(&ep, t->ep_col + 8 * v, c##r##v, rowterm, lo, hi, row + 8 * v * es); \
    }
#define QE_STORE_ROW(r)                                                   \
    if (r < mr) {                                                         \
        const int32_t rowterm = ep.nbzp ? ep.rowterm[t->row0 + r] : 0;    \
        char *row = (char *)t->c + r * t->ldc * es;                       \
        QE_STORE_VEC(r, 0) QE_STORE_VEC(r, 1)                             \
    }

/* The k loop of the full 6 x 16 tile in assembly, two pairs of k per iteration: the 12
 * accumulators, 2 B vectors, the A broadcast and the product need all 16 ymm registers, and
 * GCC spills half the accumulators (measured: under half the speed). The block owns ymm0-15
 * (accumulator of row r, vector v in ymm(4 + 2r + v)) and stores them to acc[6][16]. */
#define QE_ASM_MADD(b, c) "vpmaddwd %%" b ", %%ymm2, %%ymm3\n\tvpaddd %%ymm3, %%" c ", %%" c "\n\t"
#define QE_ASM_ROW(base, index, off, c0, c1) \
    "vpbroadcastd " #off base index ", %%ymm2\n\t" QE_ASM_MADD("ymm0", c0) QE_ASM_MADD("ymm1", c1)
#define QE_ASM_PAIR(off, boff)                                                                \
    "vmovdqa " #boff "(%[b]), %%ymm0\n\t"                                                     \
    "vmovdqa " #boff "+32(%[b]), %%ymm1\n\t"                                                  \
    QE_ASM_ROW("(%[a0]", ")", off, "ymm4", "ymm5")                                            \
    QE_ASM_ROW("(%[a0]", ",%[lda])", off, "ymm6", "ymm7")                                     \
    QE_ASM_ROW("(%[a0]", ",%[lda],2)", off, "ymm8", "ymm9")                                   \
    QE_ASM_ROW("(%[a3]", ")", off, "ymm10", "ymm11")                                          \
    QE_ASM_ROW("(%[a3]", ",%[lda])", off, "ymm12", "ymm13")                                   \
    QE_ASM_ROW("(%[a3]", ",%[lda],2)", off, "ymm14", "ymm15")
#define QE_ASM_ZERO(c) "vpxor %%" c ", %%" c ", %%" c "\n\t"
#define QE_ASM_STORE(c, off) "vmovdqa %%" c ", " #off "(%[acc])\n\t"

static void dot_6x16_avx2(const char *a0, size_t lda, const char *b, size_t pairs2,
                          int32_t acc[6 * 16]) {
    QE_ASSERT(pairs2 > 0);
    const char *a3 = a0 + 3 * lda;
    __asm__ volatile(
        QE_ASM_ZERO("ymm4") QE_ASM_ZERO("ymm5") QE_ASM_ZERO("ymm6") QE_ASM_ZERO("ymm7")
        QE_ASM_ZERO("ymm8") QE_ASM_ZERO("ymm9") QE_ASM_ZERO("ymm10") QE_ASM_ZERO("ymm11")
        QE_ASM_ZERO("ymm12") QE_ASM_ZERO("ymm13") QE_ASM_ZERO("ymm14") QE_ASM_ZERO("ymm15")
        ".p2align 5\n"
        "1:\n\t"
        QE_ASM_PAIR(0, 0)
        QE_ASM_PAIR(4, 64)
        "add $8, %[a0]\n\t"
        "add $8, %[a3]\n\t"
        "add $128, %[b]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        QE_ASM_STORE("ymm4", 0) QE_ASM_STORE("ymm5", 32) QE_ASM_STORE("ymm6", 64)
        QE_ASM_STORE("ymm7", 96) QE_ASM_STORE("ymm8", 128) QE_ASM_STORE("ymm9", 160)
        QE_ASM_STORE("ymm10", 192) QE_ASM_STORE("ymm11", 224) QE_ASM_STORE("ymm12", 256)
        QE_ASM_STORE("ymm13", 288) QE_ASM_STORE("ymm14", 320) QE_ASM_STORE("ymm15", 352)
        : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [n] "+r"(pairs2)
        : [lda] "r"(lda), [acc] "r"(acc)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
}

/* The register tile: mr rows x (8 * nv) columns over all of K (A prepared as int16 rows). */
QE_INLINE void tile_avx2(const qe_gemm_tile *t, const int mr, const int nv) {
    QE_FOR_ROWS(QE_DECLARE_ROW)
    const char *b = t->b;
    const size_t pairs = QE_DIV_UP(t->K, KR);
    size_t g = 0;
    if (mr == 6 && nv == 2 && pairs >= 2) {
        int32_t acc[6 * 16] __attribute__((aligned(32)));
        dot_6x16_avx2(a0, t->lda, b, pairs / 2, acc);
        g = pairs / 2 * 2;
        b += 64 * g;
        QE_FOR_ROWS(QE_LOAD_ACC_ROW)
    }
    for (; g < pairs; g++) {
        const __m256i b0 = _mm256_load_si256((const __m256i *)b);
        const __m256i b1 = nv > 1 ? _mm256_load_si256((const __m256i *)(b + 32)) : b0;
        b += 32 * nv;
        QE_FOR_ROWS(QE_MADD_ROW)
    }
    const qe_gemm_epilogue ep = *t->ep; /* a local: stores to C would force field reloads */
    const size_t es = qe_output_elem_size(ep.kind);
    QE_FOR_ROWS(QE_STORE_ROW)
}

#define QE_AVX2_TILE(mr, cols, nv)                                                 \
    static void qe_gemm_u8s8_ukernel_##mr##x##cols##c2__avx2(const qe_gemm_tile *t) { \
        tile_avx2(t, mr, nv);                                                      \
    }
#define QE_AVX2_ROW(mr) QE_AVX2_TILE(mr, 8, 1) QE_AVX2_TILE(mr, 16, 2)
QE_AVX2_ROW(1)
QE_AVX2_ROW(2)
QE_AVX2_ROW(3)
QE_AVX2_ROW(4)
QE_AVX2_ROW(5)
QE_AVX2_ROW(6)

#define QE_AVX2_ENTRIES(mr) \
    qe_gemm_u8s8_ukernel_##mr##x8c2__avx2, qe_gemm_u8s8_ukernel_##mr##x16c2__avx2
static const qe_gemm_tile_fn g_tiles[MR * NV_MAX] = {
    QE_AVX2_ENTRIES(1), QE_AVX2_ENTRIES(2), QE_AVX2_ENTRIES(3),
    QE_AVX2_ENTRIES(4), QE_AVX2_ENTRIES(5), QE_AVX2_ENTRIES(6),
};

const qe_gemm_ukernel qe_gemm_ukernel_avx2 = {
    .name = "qgemm_u8s8_6x16c2__avx2",
    .packed_bytes = qe_gemm_panels_bytes,
    .pack = qe_gemm_pack_panels,
    .run = qe_gemm_run_blocked,
    .mr = MR,
    .nr = NR,
    .kr = KR,
    .k_pad = KR,
    .col_align = 8,
    .b_elem = 2,
    .a_bias = 0,
    .nv_max = NV_MAX,
    .tiles = g_tiles,
    .prep_a = prep_a_avx2,
    .prep_a_elem = sizeof(int16_t),
};
