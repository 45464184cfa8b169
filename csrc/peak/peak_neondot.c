/* peak_neondot.c -- the dot-product tile's instruction (qgemm_neondot.c): sdot by lane, 16
 * products per instruction; 12 per round, 32 operations each. */
#include "peak.h"

__attribute__((noinline)) uint64_t qe_peak_probe__neondot(uint64_t iterations) {
    if (iterations == 0) return 0;
    uint64_t n = iterations;
    __asm__ volatile(
        "movi v0.16b, #0\n\t"
        "movi v1.16b, #0\n\t"
        "1:\n\t"
        "sdot v2.4s, v0.16b, v1.4b[0]\n\t"
        "sdot v3.4s, v0.16b, v1.4b[1]\n\t"
        "sdot v4.4s, v0.16b, v1.4b[2]\n\t"
        "sdot v5.4s, v0.16b, v1.4b[3]\n\t"
        "sdot v6.4s, v0.16b, v1.4b[0]\n\t"
        "sdot v7.4s, v0.16b, v1.4b[1]\n\t"
        "sdot v16.4s, v0.16b, v1.4b[2]\n\t"
        "sdot v17.4s, v0.16b, v1.4b[3]\n\t"
        "sdot v18.4s, v0.16b, v1.4b[0]\n\t"
        "sdot v19.4s, v0.16b, v1.4b[1]\n\t"
        "sdot v20.4s, v0.16b, v1.4b[2]\n\t"
        "sdot v21.4s, v0.16b, v1.4b[3]\n\t"
        "subs %0, %0, #1\n\t"
        "b.ne 1b"
        : "+r"(n)
        :
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20",
          "v21", "cc");
    return iterations * 12 * 16 * 2;
}
