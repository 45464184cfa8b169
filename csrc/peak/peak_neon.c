/* peak_neon.c -- the NEON tile's instruction (qgemm_neon.c): smlal / smlal2 of int16 lanes into
 * int32, 4 products each; 12 per round, 8 operations each. */
#include "peak.h"

__attribute__((noinline)) uint64_t qe_peak_probe__neon(uint64_t iterations) {
    if (iterations == 0) return 0;
    uint64_t n = iterations;
    __asm__ volatile(
        "movi v0.16b, #0\n\t"
        "movi v1.16b, #0\n\t"
        "1:\n\t"
        "smlal v2.4s, v0.4h, v1.h[0]\n\t"
        "smlal2 v3.4s, v0.8h, v1.h[0]\n\t"
        "smlal v4.4s, v0.4h, v1.h[1]\n\t"
        "smlal2 v5.4s, v0.8h, v1.h[1]\n\t"
        "smlal v6.4s, v0.4h, v1.h[2]\n\t"
        "smlal2 v7.4s, v0.8h, v1.h[2]\n\t"
        "smlal v16.4s, v0.4h, v1.h[3]\n\t"
        "smlal2 v17.4s, v0.8h, v1.h[3]\n\t"
        "smlal v18.4s, v0.4h, v1.h[4]\n\t"
        "smlal2 v19.4s, v0.8h, v1.h[4]\n\t"
        "smlal v20.4s, v0.4h, v1.h[5]\n\t"
        "smlal2 v21.4s, v0.8h, v1.h[5]\n\t"
        "subs %0, %0, #1\n\t"
        "b.ne 1b"
        : "+r"(n)
        :
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20",
          "v21", "cc");
    return iterations * 12 * 4 * 2;
}
