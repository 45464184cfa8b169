/*
 * qgemm.h -- inside the int8 GEMM: the packed-weights object, the per-ISA kernel family
 * descriptor, the tile interface of the blocked driver, and the single-threaded entry that the
 * convolution driver calls on its own tiles.
 *
 * C[m][n] = output( sum_k A[m][k] * B[k][n] - a_zp * colsum[n]
 *                   - b_zp[n] * (rowsum[m] - K * a_zp) )                   (int32, wrapping)
 * which equals sum_k (A - a_zp)(B - b_zp) exactly; colsum is computed once at pack time.
 *
 * Two kinds of family exist:
 *  - the reference (qgemm_ref.c): its own layout and its own `run`; slow, the definition.
 *  - blocked SIMD families: B packed in panels (qgemm_pack.c), `run` = qe_gemm_run_blocked
 *    (qgemm_driver.c), which blocks for the caches and calls the family's register tiles.
 */
#ifndef QE_QGEMM_H
#define QE_QGEMM_H

#include "../output.h"

typedef struct qe_gemm_ukernel qe_gemm_ukernel;

struct qe_gemm_packed {
    size_t K, N;
    qe_isa isa;
    const qe_gemm_ukernel *uk; /* the kernel family this layout belongs to */
    void *data;                /* packed B, layout defined by uk */
    size_t data_bytes;
    int32_t *col_sums;         /* [N] sum_k B[k][n] */
    /* prefetch hint (qe_gemm_packed_set_next): where the B multiplied next lies; only
     * prefetched, never dereferenced, so it may outlive that B */
    const void *next_data;
    size_t next_bytes;
};

/* ---- the blocked families' tile interface --------------------------------------------------
 * Packed B layout of a blocked family (qe_gemm_pack_panels): columns in panels of `nr`; K padded
 * with zeros to a multiple of `k_pad` and cut into groups of `kr`; a panel stores, for each
 * group, its columns one after the other, each column's kr values contiguous:
 *     panel[g][col][kk]   (elements int8, or int16 when b_elem == 2)
 * The last panel is only round_up(remaining columns, col_align) wide, so narrow N costs little.
 */

/* Per-run column data of the output pipeline, indexed by column minus the run's first panel
 * base (so every panel reads it at the same offsets as its packed columns). Arrays are padded
 * to whole panels; columns outside the run's range hold zeros. */
typedef struct {
    qe_out_kind kind;
    const int32_t *colterm; /* bias[n] + (a_bias - a_zp) * colsum[n] (wrapping) */
    const float *scale;     /* U8/F32: per column (a per-tensor scale is replicated) */
    const float *fbias;     /* F32: float bias per column, or NULL */
    const int32_t *nbzp;    /* -b_zp[n], or NULL when the weights are symmetric */
    const int32_t *rowterm; /* [M] rowsum[m] - K * a_zp, when nbzp */
    float lo, hi;           /* U8: clamp bounds qmin - zp, qmax - zp */
    int32_t zp;             /* U8: output zero point */
    int hi_free;            /* U8: qmax is 255 and every scale < 1, so a tile may leave the top
                             * clamp to the packs (QE_REQUANT_PACK_U8_INLANE_NOHI) */
} qe_gemm_epilogue;

/* One register tile: rows x (panel width) outputs over the whole of K, then the output
 * pipeline, storing columns [col_lo, col_hi) of the panel. */
typedef struct {
    size_t rows;            /* 1..mr */
    size_t K;               /* the true reduction length */
    const uint8_t *a;       /* A rows (or the family's prepared copy), row stride lda */
    size_t lda;
    const void *b;          /* the packed panel */
    size_t col_lo, col_hi;  /* stored columns within the panel, 0 <= lo < hi <= width */
    const qe_gemm_epilogue *ep;
    size_t ep_col;          /* index of the panel's first column in the epilogue arrays */
    size_t row0;            /* index of the tile's first row in ep->rowterm */
    void *c;                /* C at (tile row 0, panel column 0) */
    size_t ldc;             /* in elements of the output type */
    /* Segmented A (seg_tile only): row r of A is the concatenation over s < nseg of the
     * seg_len bytes at seg[s] + r * lda -- a convolution's interior pixels read in place,
     * one segment per kernel row, instead of an im2col copy. */
    const uint8_t *const *seg;
    size_t nseg, seg_len;
    /* Packed B of the next n-block to prefetch while this tile runs (the asm k loops ask for
     * 32 bytes per k group from here on), or NULL. */
    const char *pf;
} qe_gemm_tile;

typedef void (*qe_gemm_tile_fn)(const qe_gemm_tile *t);

/* Optional: copy `rows` rows of A (K bytes each, stride lda) into the family's preferred form
 * in `dst` (room for rows of K + 64 elements), returning its row stride in bytes; called once
 * per row strip and n-block. */
typedef size_t (*qe_gemm_prep_a_fn)(const uint8_t *a, size_t lda, size_t rows, size_t K,
                                    void *dst);

/* A per-ISA GEMM implementation. */
struct qe_gemm_ukernel {
    const char *name;
    /* Bytes of packed data for K x N. */
    size_t (*packed_bytes)(const qe_gemm_ukernel *uk, size_t K, size_t N);
    /* Fill p->data from B (element (k, n) at b[k*stride_k + n*stride_n]; xor128 flips uint8 to
     * int8 by subtracting 128). p->data is zeroed beforehand. */
    void (*pack)(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k, ptrdiff_t stride_n,
                 int xor128);
    /* Rows [0, M) and columns [n_begin, n_end) of C on the calling thread. */
    void (*run)(const qe_gemm_packed *p, size_t M, const uint8_t *a, size_t lda, int32_t a_zp,
                const int32_t *b_zp, const qe_output *out, size_t n_begin, size_t n_end, void *c,
                size_t ldc);
    /* Register tile (rows, panel width): the threaded driver splits work in multiples. */
    size_t mr, nr;
    /* ---- blocked families only ---- */
    size_t kr, k_pad, col_align, b_elem; /* packed layout, see above */
    int32_t a_bias;            /* the tile computes sum (a - a_bias) * b (neondot: 128) */
    size_t nv_max;             /* panel width / vector width */
    const qe_gemm_tile_fn *tiles; /* [mr][nv_max]: tiles[(rows-1)*nv_max + nv-1] */
    qe_gemm_prep_a_fn prep_a;  /* NULL: tiles read A in place */
    size_t prep_a_elem;        /* bytes per element of the prepared A (scratch sizing) */
    /* Optional: the mr-row tiles over segmented A (qe_gemm_tile.seg), [nv_max]: seg_tiles[nv-1]
     * for a panel of nv vectors; NULL: the family has none and callers materialize A. */
    const qe_gemm_tile_fn *seg_tiles;
    /* Nonzero: the (mr - 1)-row tiles compute at the full tile's rate and the 1-3-row ones do
     * not, so the driver covers a remainder of 1-3 rows with strips of mr - 1 rows
     * (qgemm_driver.c, short_strips_from). Zero (AVX2: its 5-row tile is slower than a 6-row
     * one): strips of mr rows and one short last strip. */
    int short_strips;
};

extern const qe_gemm_ukernel qe_gemm_ukernel_ref;
#if defined(QE_BUILD_X86)
extern const qe_gemm_ukernel qe_gemm_ukernel_avx2;
extern const qe_gemm_ukernel qe_gemm_ukernel_avx512vnni;
#endif
#if defined(QE_BUILD_ARM64)
extern const qe_gemm_ukernel qe_gemm_ukernel_neon;
extern const qe_gemm_ukernel qe_gemm_ukernel_neondot;
#endif

/* Generic panel packing of the blocked families (qgemm_pack.c). */
size_t qe_gemm_panels_bytes(const qe_gemm_ukernel *uk, size_t K, size_t N);
void qe_gemm_pack_panels(qe_gemm_packed *p, const uint8_t *b, ptrdiff_t stride_k,
                         ptrdiff_t stride_n, int xor128);
/* Byte offset of panel `j` and its width in columns (inline: the drivers ask per tile). */
static inline size_t qe_gemm_panel_offset(const qe_gemm_ukernel *uk, size_t K, size_t j) {
    return j * QE_ROUND_UP(K, uk->k_pad) * uk->nr * uk->b_elem;
}
static inline size_t qe_gemm_panel_width(const qe_gemm_ukernel *uk, size_t N, size_t j) {
    const size_t left = N - j * uk->nr;
    return left >= uk->nr ? uk->nr : QE_ROUND_UP(left, uk->col_align);
}

/* The blocked driver of the SIMD families (qgemm_driver.c). */
void qe_gemm_run_blocked(const qe_gemm_packed *p, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out, size_t n_begin,
                         size_t n_end, void *c, size_t ldc);

/* Segmented A (a convolution's interior read in place, see qe_gemm_tile.seg) and the rows
 * that could not be (borders, leftovers), materialized: `strips` strips of mr rows, strip i
 * with segments seg[i * nseg + s] (row r of segment s at seg[...] + r * seg_lda), its rows
 * written at c + row0[i] * ldc; then `rows` rows at a (stride lda), written at c_rows (stride
 * ldc_rows, same columns as C). */
typedef struct {
    size_t strips;
    const uint8_t *const *seg;
    size_t nseg, seg_len, seg_lda;
    const size_t *row0;
    size_t rows;
    const uint8_t *a;
    size_t lda;
    void *c_rows;
    size_t ldc_rows;
} qe_gemm_seg_a;

/* Whether p's family can run segments of seg_len bytes over columns [n_begin, n_end), and the
 * run itself, both kinds of rows through each n-block of B in turn. Symmetric weights only
 * (no b_zp). Same results as qe_gemm_u8s8_serial on the materialized rows. */
int qe_gemm_segments_ok(const qe_gemm_packed *p, size_t seg_len, size_t n_begin, size_t n_end);
void qe_gemm_run_segmented(const qe_gemm_packed *p, const qe_gemm_seg_a *sa, int32_t a_zp,
                           const qe_output *out, size_t n_begin, size_t n_end, void *c,
                           size_t ldc);

/* Column split granularity of a packed object: a column range [n_begin, n_end) whose ends are
 * multiples of this (or N) costs no extra work; other ends recompute the panel they cut. */
static inline size_t qe_gemm_packed_tile_n(const qe_gemm_packed *p) { return p->uk->nr; }
static inline size_t qe_gemm_packed_tile_m(const qe_gemm_packed *p) { return p->uk->mr; }

/* Single-threaded GEMM on the calling thread over columns [n_begin, n_end) (conv uses this to
 * run its own im2col tiles inside its own parallel loop). Arguments as qe_gemm_u8s8; c points
 * at column 0 of C. Uses scratch slots 0 and 1 of the calling thread. */
void qe_gemm_u8s8_serial(const qe_gemm_packed *b, size_t M, const uint8_t *a, size_t lda,
                         int32_t a_zp, const int32_t *b_zp, const qe_output *out, size_t n_begin,
                         size_t n_end, void *c, size_t ldc);

#endif
