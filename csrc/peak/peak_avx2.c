/* peak_avx2.c -- the AVX2 tile's pair (qgemm_avx2.c): vpmaddwd of int16 pairs, 16 products per
 * ymm, then vpaddd into the accumulator; 12 pairs per round, 32 operations each. */
#include "peak.h"

__attribute__((noinline)) uint64_t qe_peak_probe__avx2(uint64_t iterations) {
    if (iterations == 0) return 0;
    uint64_t n = iterations;
#define QE_PAIR(acc) "vpmaddwd %%ymm1, %%ymm0, %%ymm14\n\tvpaddd %%ymm14, %%ymm" #acc ", %%ymm" #acc "\n\t"
#define QE_PAIR2(acc) "vpmaddwd %%ymm1, %%ymm0, %%ymm15\n\tvpaddd %%ymm15, %%ymm" #acc ", %%ymm" #acc "\n\t"
    __asm__ volatile(
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "1:\n\t"
        QE_PAIR(2) QE_PAIR2(3) QE_PAIR(4) QE_PAIR2(5) QE_PAIR(6) QE_PAIR2(7)
        QE_PAIR(8) QE_PAIR2(9) QE_PAIR(10) QE_PAIR2(11) QE_PAIR(12) QE_PAIR2(13)
        "dec %0\n\t"
        "jnz 1b\n\t"
        "vzeroupper"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
#undef QE_PAIR
#undef QE_PAIR2
    return iterations * 12 * 16 * 2;
}
