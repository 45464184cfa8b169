/* peak_avx512vnni.c -- 12 vpdpbusd zmm per round: 64 u8 x s8 products each, 128 operations. */
#include "peak.h"

__attribute__((noinline)) uint64_t qe_peak_probe__avx512vnni(uint64_t iterations) {
    if (iterations == 0) return 0;
    uint64_t n = iterations;
    __asm__ volatile(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "1:\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm2\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm3\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm4\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm5\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm6\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm7\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm8\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm9\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm10\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm11\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm12\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm13\n\t"
        "dec %0\n\t"
        "jnz 1b\n\t"
        "vzeroupper"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "cc");
    return iterations * 12 * 64 * 2;
}
