/*
 * qgemm_avx512vnni_asm.h -- the inline-asm k loops of the VNNI tiles (included only by
 * qgemm_avx512vnni.c, after its constants): 6 x 64, 5 x 64, 6 x 48 and segmented 6 x 64,
 * each storing its accumulators to acc[6][64] for the C output pipeline, and 6 x 64 plain and
 * segmented with the uint8 output pipeline in the same block.
 */
#ifndef QE_QGEMM_AVX512VNNI_ASM_H
#define QE_QGEMM_AVX512VNNI_ASM_H

/* Why asm: with 24 accumulators, 4 B vectors and a broadcast live, GCC spills accumulators
 * inside the loop (measured: half the speed; 6 x 48 loses a third), and asm operands cannot
 * carry 24 of them (GCC allows 30 operands, an in/out one counts twice). So the block owns its
 * accumulators: it starts them from the column terms (ct), runs the k loop (zmm0-3 hold B,
 * zmm4/5 alternate as the A broadcast; rows 0-2 address from a0, rows 3-5 from a3) and stores
 * them to acc[6][64], where the C code finishes the tile (tail group, output pipeline) -- or,
 * for the common uint8 tile, finishes it itself (QE_DEFINE_DOT_U8). Accumulators: row
 * r, vector v in zmm(8 + nv * r + v).
 * Each k group also prefetches 32 bytes from pf2 (qe_gemm_tile.pf: a slice of the next
 * n-block's B, or this panel again): late ResNet-18 layers' panels come from DRAM, and with
 * M = 49 their first strip waited on them (cold B, 7x7 512->512: 790 -> 700 us). */
#define QE_ASM_DOT(reg, b, c) "vpdpbusd %%" b ", %%" reg ", %%" c "\n\t"
#define QE_ASM_DOT3(reg, c0, c1, c2) \
    QE_ASM_DOT(reg, "zmm0", c0) QE_ASM_DOT(reg, "zmm1", c1) QE_ASM_DOT(reg, "zmm2", c2)
#define QE_ASM_DOT4(reg, c0, c1, c2, c3) QE_ASM_DOT3(reg, c0, c1, c2) QE_ASM_DOT(reg, "zmm3", c3)
#define QE_ASM_BCAST(base, index, reg) "vpbroadcastd " base index ", %%" reg "\n\t"
/* Accumulator c starts from the column terms at byte ct_off of ct (its vector's 16 columns). */
#define QE_ASM_INIT(c, ct_off) "vmovdqa64 " #ct_off "(%[ct]), %%" c "\n\t"
#define QE_ASM_STORE(c, off) "vmovdqa64 %%" c ", " #off "(%[acc])\n\t"
#define QE_ASM_LOOP_END(bytes)                                                         \
    "prefetcht0 (%[pf2])\n\t"                                                          \
    "add $32, %[pf2]\n\t"                                                              \
    "add $4, %[a0]\n\t"                                                                \
    "add $4, %[a3]\n\t"                                                                \
    "add $" #bytes ", %[b]\n\t"                                                        \
    "dec %[n]\n\t"                                                                     \
    "jnz 1b\n\t"
#define QE_ASM_CLOBBERS                                                                 \
    "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm8", "zmm9", "zmm10", "zmm11",    \
        "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19", "zmm20", \
        "zmm21", "zmm22", "zmm23", "zmm24", "zmm25", "zmm26", "zmm27", "zmm28", "zmm29", \
        "zmm30", "zmm31", "memory", "cc"
#define QE_ASM_OPERANDS                                                                 \
    : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [n] "+r"(groups), [pf2] "+r"(pf)       \
    : [lda] "r"(lda), [acc] "r"(acc), [ct] "r"(ct), [pf] "i"(B_PREFETCH)                \
    : QE_ASM_CLOBBERS

/* The 64-column k loops: per group, 4 B vectors, then row by row a broadcast of 4 bytes of A
 * and its 4 multiplies; A displaced by OA bytes and B by OB (strings). 6 x 64 is 5 x 64 (the
 * driver's short strips) and a sixth row. */
#define QE_ASM_K_GROUP_5x64(OA, OB)                                                                  \
    "vmovdqa64 " OB "(%[b]), %%zmm0\n\t"                                                             \
    "vmovdqa64 " OB "+64(%[b]), %%zmm1\n\t"                                                          \
    "vmovdqa64 " OB "+128(%[b]), %%zmm2\n\t"                                                         \
    "vmovdqa64 " OB "+192(%[b]), %%zmm3\n\t"                                                         \
    "prefetcht0 %c[pf]+" OB "(%[b])\n\t"                                                             \
    "prefetcht0 %c[pf]+128+" OB "(%[b])\n\t"                                                         \
    QE_ASM_BCAST(OA "(%[a0]", ")", "zmm4") QE_ASM_DOT4("zmm4", "zmm8", "zmm9", "zmm10", "zmm11")       \
    QE_ASM_BCAST(OA "(%[a0]", ",%[lda])", "zmm5") QE_ASM_DOT4("zmm5", "zmm12", "zmm13", "zmm14", "zmm15") \
    QE_ASM_BCAST(OA "(%[a0]", ",%[lda],2)", "zmm4") QE_ASM_DOT4("zmm4", "zmm16", "zmm17", "zmm18", "zmm19") \
    QE_ASM_BCAST(OA "(%[a3]", ")", "zmm5") QE_ASM_DOT4("zmm5", "zmm20", "zmm21", "zmm22", "zmm23")     \
    QE_ASM_BCAST(OA "(%[a3]", ",%[lda])", "zmm4") QE_ASM_DOT4("zmm4", "zmm24", "zmm25", "zmm26", "zmm27")
#define QE_ASM_K_GROUP_6x64(OA, OB)                                                                  \
    QE_ASM_K_GROUP_5x64(OA, OB)                                                                      \
    QE_ASM_BCAST(OA "(%[a3]", ",%[lda],2)", "zmm5") QE_ASM_DOT4("zmm5", "zmm28", "zmm29", "zmm30", "zmm31")
/* The k loop of GROUP, two groups per iteration (an odd first group alone): the pointer
 * updates and the branch take rename slots that the vpdpbusd need on 4-wide cores (Cascade
 * Lake, `python benchmarks/gemm_table.py --shapes 1024x1024x1024 --threads 1`, builds
 * alternated twice: 439-463 -> 486-499 GOPS). Leaves a0, a3, b and pf2 where one group per
 * iteration would. */
#define QE_ASM_LOOP_X2(GROUP)                                                                        \
    "test $1, %[n]\n\t"                                                                              \
    "jz 5f\n\t"                                                                                      \
    GROUP("0", "0")                                                                                  \
    "prefetcht0 (%[pf2])\n\t"                                                                        \
    "add $32, %[pf2]\n\t"                                                                            \
    "add $4, %[a0]\n\t"                                                                              \
    "add $4, %[a3]\n\t"                                                                              \
    "add $256, %[b]\n\t"                                                                             \
    "dec %[n]\n\t"                                                                                   \
    "jz 6f\n"                                                                                        \
    "5:\n\t"                                                                                         \
    "shr $1, %[n]\n\t"                                                                               \
    ".p2align 5\n"                                                                                   \
    "1:\n\t"                                                                                         \
    GROUP("0", "0")                                                                                  \
    "prefetcht0 (%[pf2])\n\t"                                                                        \
    GROUP("4", "256")                                                                                \
    "prefetcht0 32(%[pf2])\n\t"                                                                      \
    "add $64, %[pf2]\n\t"                                                                            \
    "add $8, %[a0]\n\t"                                                                              \
    "add $8, %[a3]\n\t"                                                                              \
    "add $512, %[b]\n\t"                                                                             \
    "dec %[n]\n\t"                                                                                   \
    "jnz 1b\n"                                                                                       \
    "6:\n\t"
#define QE_ASM_LOOP_5x64 QE_ASM_LOOP_X2(QE_ASM_K_GROUP_5x64)
#define QE_ASM_LOOP_6x64 QE_ASM_LOOP_X2(QE_ASM_K_GROUP_6x64)
/* The accumulators of a 5 x 64 and a 6 x 64 tile (row r, vector v in zmm(8 + 4r + v)), their
 * offsets in acc[6][64] and of their vector's column terms in ct, for X(reg, acc offset, ct
 * offset). */
#define QE_ASM_ACC_5x64(X)  \
    X("zmm8", 0, 0) X("zmm9", 64, 64) X("zmm10", 128, 128) X("zmm11", 192, 192) \
    X("zmm12", 256, 0) X("zmm13", 320, 64) X("zmm14", 384, 128) X("zmm15", 448, 192) \
    X("zmm16", 512, 0) X("zmm17", 576, 64) X("zmm18", 640, 128) X("zmm19", 704, 192) \
    X("zmm20", 768, 0) X("zmm21", 832, 64) X("zmm22", 896, 128) X("zmm23", 960, 192) \
    X("zmm24", 1024, 0) X("zmm25", 1088, 64) X("zmm26", 1152, 128) X("zmm27", 1216, 192)
#define QE_ASM_ACC_6x64(X)  \
    QE_ASM_ACC_5x64(X)      \
    X("zmm28", 1280, 0) X("zmm29", 1344, 64) X("zmm30", 1408, 128) X("zmm31", 1472, 192)
/* The 18 accumulators of a 6 x 48 tile (rows 256 bytes apart in acc, as for 6 x 64). */
#define QE_ASM_ACC_6x48(X)  \
    X("zmm8", 0, 0) X("zmm9", 64, 64) X("zmm10", 128, 128) \
    X("zmm11", 256, 0) X("zmm12", 320, 64) X("zmm13", 384, 128) \
    X("zmm14", 512, 0) X("zmm15", 576, 64) X("zmm16", 640, 128) \
    X("zmm17", 768, 0) X("zmm18", 832, 64) X("zmm19", 896, 128) \
    X("zmm20", 1024, 0) X("zmm21", 1088, 64) X("zmm22", 1152, 128) \
    X("zmm23", 1280, 0) X("zmm24", 1344, 64) X("zmm25", 1408, 128)
#define QE_ASM_INIT_AT(c, off, ct_off) QE_ASM_INIT(c, ct_off)
#define QE_ASM_STORE_AT(c, off, ct_off) QE_ASM_STORE(c, off)

/* A k loop over A rows lda apart: accumulators from the column terms, the loop, stored to acc. */
#define QE_DEFINE_DOT(name, ACC, LOOP)                                                         \
    static void name(const uint8_t *a0, size_t lda, const int8_t *b, size_t groups,          \
                     const int32_t *ct, int32_t acc[6 * 64], const char *pf) {                \
        QE_ASSERT(groups > 0);                                                                \
        const uint8_t *a3 = a0 + 3 * lda;                                                     \
        __asm__ volatile(ACC(QE_ASM_INIT_AT) LOOP ACC(QE_ASM_STORE_AT) QE_ASM_OPERANDS);      \
    }
QE_DEFINE_DOT(dot_6x64_avx512vnni, QE_ASM_ACC_6x64, QE_ASM_LOOP_6x64)
QE_DEFINE_DOT(dot_5x64_avx512vnni, QE_ASM_ACC_5x64, QE_ASM_LOOP_5x64)

/* The 6 x 64 k loop over each of nseg segments in turn (a0, a3 set from the segment pointer). */
#define QE_ASM_SEG_LOOP_6x64                         \
    "2:\n\t"                                         \
    "mov (%[seg]), %[a0]\n\t"                        \
    "lea (%[lda],%[lda],2), %[a3]\n\t"               \
    "add %[a0], %[a3]\n\t"                           \
    "mov %[groups], %[n]\n\t"                        \
    QE_ASM_LOOP_6x64                                 \
    "add $8, %[seg]\n\t"                             \
    "dec %[nseg]\n\t"                                \
    "jnz 2b\n\t"

/* The 6 x 64 k loop over segmented A (qe_gemm_tile.seg): nseg segments of `groups` k groups
 * each, B contiguous across them; the accumulators stay in registers from the column terms
 * to the end (a store and reload of the 24 per segment cost 56x56 3x3 convs, K = 576 in three
 * segments, about 3%), where FINISH stores them to acc (dot_6x64_seg_avx512vnni) or runs the
 * uint8 pipeline into o (dot_6x64_seg_u8_avx512vnni). */
#define QE_DEFINE_SEG_DOT(name, out_param, FINISH, out_inputs)                                \
    static void name(const uint8_t *const *seg, size_t nseg, size_t lda, const int8_t *b,    \
                     size_t groups, const int32_t *ct, out_param, const char *pf) {          \
        QE_ASSERT(groups > 0 && nseg > 0);                                                    \
        const uint8_t *a0, *a3;                                                               \
        size_t n;                                                                             \
        __asm__ volatile(QE_ASM_ACC_6x64(QE_ASM_INIT_AT) QE_ASM_SEG_LOOP_6x64 FINISH           \
                         : [a0] "=&r"(a0), [a3] "=&r"(a3), [b] "+r"(b), [n] "=&r"(n),         \
                           [pf2] "+r"(pf), [seg] "+r"(seg), [nseg] "+r"(nseg)                 \
                         : [lda] "r"(lda), [ct] "r"(ct), [groups] "r"(groups),                 \
                           [pf] "i"(B_PREFETCH), out_inputs                                    \
                         : QE_ASM_CLOBBERS);                                                  \
    }
QE_DEFINE_SEG_DOT(dot_6x64_seg_avx512vnni, int32_t acc[6 * 64], QE_ASM_ACC_6x64(QE_ASM_STORE_AT),
                  [acc] "r"(acc))

/* ---- 6 x 64 with the uint8 output pipeline in the same asm block ----------------------------
 * The common tile of a ReLU-fused convolution (uint8 out, qmax 255 and scales < 1 -- hi_free --,
 * symmetric weights, a whole panel stored) requantizes its 24 accumulators where they are,
 * instead of storing them to acc and reloading them in C (`python benchmarks/conv_table.py
 * --only r18.conv1`, the 7x7 stem whose K = 147 gives each tile only 37 k groups: 0.70 ->
 * 0.66 ms, 1 thread, builds alternated). The instructions are those of
 * QE_REQUANT_PACK_U8_INLANE_NOHI and the lane permutation, in the same order per element, so
 * the bytes are the C pipeline's: float32(acc) * scale, cvtps2dq (round half to even), signed
 * pack, saturating add of the zero point, unsigned pack, max with qmin, lane order, store. */
typedef struct {
    const float *scale;  /* the panel's 64 column scales */
    char *c;             /* row 0 of the tile's output */
    size_t ldc;          /* bytes */
    int16_t zp;          /* output zero point */
    uint8_t lo;          /* qmin (the byte the max clamps to) */
} qe_u8_out;


/* X(address of row r, its 4 accumulators) for the 5 or 6 rows of a tile: rows 0-2 from a0,
 * 3-5 from a3, rows `ld` (lda or ldc) bytes apart. */
#define QE_ASM_5_ROWS(X, ld)                                                    \
    X("(%[a0])", "zmm8", "zmm9", "zmm10", "zmm11")                              \
    X("(%[a0],%[" ld "])", "zmm12", "zmm13", "zmm14", "zmm15")                  \
    X("(%[a0],%[" ld "],2)", "zmm16", "zmm17", "zmm18", "zmm19")                \
    X("(%[a3])", "zmm20", "zmm21", "zmm22", "zmm23")                            \
    X("(%[a3],%[" ld "])", "zmm24", "zmm25", "zmm26", "zmm27")
#define QE_ASM_6_ROWS(X, ld) \
    QE_ASM_5_ROWS(X, ld) X("(%[a3],%[" ld "],2)", "zmm28", "zmm29", "zmm30", "zmm31")
/* Row r's 4 accumulators -> 64 bytes at dst (zmm5: g_lane_order, zmm6: zp as int16, zmm7: qmin). */
#define QE_ASM_U8_ROW(dst, z0, z1, z2, z3)                  \
    "vcvtdq2ps %%" z0 ", %%" z0 "\n\t"                      \
    "vcvtdq2ps %%" z1 ", %%" z1 "\n\t"                      \
    "vcvtdq2ps %%" z2 ", %%" z2 "\n\t"                      \
    "vcvtdq2ps %%" z3 ", %%" z3 "\n\t"                      \
    "vmulps (%[scale]), %%" z0 ", %%" z0 "\n\t"             \
    "vmulps 64(%[scale]), %%" z1 ", %%" z1 "\n\t"           \
    "vmulps 128(%[scale]), %%" z2 ", %%" z2 "\n\t"          \
    "vmulps 192(%[scale]), %%" z3 ", %%" z3 "\n\t"          \
    "vcvtps2dq %%" z0 ", %%" z0 "\n\t"                      \
    "vcvtps2dq %%" z1 ", %%" z1 "\n\t"                      \
    "vcvtps2dq %%" z2 ", %%" z2 "\n\t"                      \
    "vcvtps2dq %%" z3 ", %%" z3 "\n\t"                      \
    "vpackssdw %%" z1 ", %%" z0 ", %%" z0 "\n\t"            \
    "vpackssdw %%" z3 ", %%" z2 ", %%" z2 "\n\t"            \
    "vpaddsw %%zmm6, %%" z0 ", %%" z0 "\n\t"                \
    "vpaddsw %%zmm6, %%" z2 ", %%" z2 "\n\t"                \
    "vpackuswb %%" z2 ", %%" z0 ", %%" z0 "\n\t"            \
    "vpmaxub %%zmm7, %%" z0 ", %%" z0 "\n\t"                \
    "vpermd %%" z0 ", %%zmm5, %%" z0 "\n\t"                 \
    "vmovdqu64 %%" z0 ", " dst "\n\t"
/* The tile's ROWS (QE_ASM_5_ROWS or QE_ASM_6_ROWS), stored at c, c + ldc, c + 2 ldc (a0 now
 * addresses C) and c + 3 ldc .. (a3). */
#define QE_ASM_U8_TILE(ROWS)                                                            \
    "mov %[c], %[a0]\n\t"                                                              \
    "lea (%[ldc],%[ldc],2), %[a3]\n\t"                                                  \
    "add %[a0], %[a3]\n\t"                                                             \
    "vmovdqa64 %[lanes], %%zmm5\n\t"                                                   \
    "vpbroadcastw %[zp], %%zmm6\n\t"                                                   \
    "vpbroadcastb %[lo], %%zmm7\n\t"                                                   \
    ROWS(QE_ASM_U8_ROW, "ldc")
#define QE_ASM_U8_INPUTS(o)                                                              \
    [scale] "r"((o)->scale), [c] "r"((o)->c), [ldc] "r"((o)->ldc),                       \
        [lanes] "m"(*(const int32_t(*)[16])g_lane_order), [zp] "m"((o)->zp), [lo] "m"((o)->lo)
/* The last, partial k group (km: its bytes) of each row, A read under the mask. */
#define QE_ASM_TAIL_ROW(addr, c0, c1, c2, c3)                                             \
    "vmovdqu8 " addr ", %%xmm4%{%[km]%}%{z%}\n\t"                                        \
    "vpbroadcastd %%xmm4, %%zmm4\n\t" QE_ASM_DOT4("zmm4", c0, c1, c2, c3)
#define QE_ASM_TAIL(ROWS)                                                                \
    "kortestw %[km], %[km]\n\t"                                                         \
    "jz 3f\n\t"                                                                         \
    "vmovdqa64 (%[b]), %%zmm0\n\t"                                                      \
    "vmovdqa64 64(%[b]), %%zmm1\n\t"                                                    \
    "vmovdqa64 128(%[b]), %%zmm2\n\t"                                                   \
    "vmovdqa64 192(%[b]), %%zmm3\n\t"                                                   \
    ROWS(QE_ASM_TAIL_ROW, "lda")                                                       \
    "3:\n\t"

/* 6 x 64 and 5 x 64 over A rows lda apart, `groups` whole k groups and a partial one under km
 * (0: none), then the uint8 pipeline into o. */
#define QE_DEFINE_DOT_U8(name, ACC, LOOP, ROWS)                                                 \
    static void name(const uint8_t *a0, size_t lda, const int8_t *b, size_t groups,           \
                     __mmask16 km, const int32_t *ct, const qe_u8_out *o, const char *pf) {    \
        QE_ASSERT(groups > 0);                                                                 \
        const uint8_t *a3 = a0 + 3 * lda;                                                      \
        __asm__ volatile(ACC(QE_ASM_INIT_AT) LOOP QE_ASM_TAIL(ROWS) QE_ASM_U8_TILE(ROWS)       \
                         : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [n] "+r"(groups),       \
                           [pf2] "+r"(pf)                                                      \
                         : [lda] "r"(lda), [ct] "r"(ct), [pf] "i"(B_PREFETCH), [km] "Yk"(km), \
                           QE_ASM_U8_INPUTS(o)                                                 \
                         : QE_ASM_CLOBBERS);                                                   \
    }
QE_DEFINE_DOT_U8(dot_6x64_u8_avx512vnni, QE_ASM_ACC_6x64, QE_ASM_LOOP_6x64, QE_ASM_6_ROWS)
QE_DEFINE_DOT_U8(dot_5x64_u8_avx512vnni, QE_ASM_ACC_5x64, QE_ASM_LOOP_5x64, QE_ASM_5_ROWS)

QE_DEFINE_SEG_DOT(dot_6x64_seg_u8_avx512vnni, const qe_u8_out *o, QE_ASM_U8_TILE(QE_ASM_6_ROWS),
                  QE_ASM_U8_INPUTS(o))

static void dot_6x48_avx512vnni(const uint8_t *a0, size_t lda, const int8_t *b, size_t groups,
                                const int32_t *ct, int32_t acc[6 * 64], const char *pf) {
    QE_ASSERT(groups > 0);
    const uint8_t *a3 = a0 + 3 * lda;
    __asm__ volatile(
        QE_ASM_ACC_6x48(QE_ASM_INIT_AT)
        ".p2align 5\n"
        "1:\n\t"
        "vmovdqa64 (%[b]), %%zmm0\n\t"
        "vmovdqa64 64(%[b]), %%zmm1\n\t"
        "vmovdqa64 128(%[b]), %%zmm2\n\t"
        "prefetcht0 %c[pf](%[b])\n\t"
        QE_ASM_BCAST("(%[a0]", ")", "zmm4") QE_ASM_DOT3("zmm4", "zmm8", "zmm9", "zmm10")
        QE_ASM_BCAST("(%[a0]", ",%[lda])", "zmm5") QE_ASM_DOT3("zmm5", "zmm11", "zmm12", "zmm13")
        QE_ASM_BCAST("(%[a0]", ",%[lda],2)", "zmm4") QE_ASM_DOT3("zmm4", "zmm14", "zmm15", "zmm16")
        QE_ASM_BCAST("(%[a3]", ")", "zmm5") QE_ASM_DOT3("zmm5", "zmm17", "zmm18", "zmm19")
        QE_ASM_BCAST("(%[a3]", ",%[lda])", "zmm4") QE_ASM_DOT3("zmm4", "zmm20", "zmm21", "zmm22")
        QE_ASM_BCAST("(%[a3]", ",%[lda],2)", "zmm5") QE_ASM_DOT3("zmm5", "zmm23", "zmm24", "zmm25")
        QE_ASM_LOOP_END(192)
        QE_ASM_ACC_6x48(QE_ASM_STORE_AT)
        QE_ASM_OPERANDS);
}

#endif /* QE_QGEMM_AVX512VNNI_ASM_H */
