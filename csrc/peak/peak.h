/*
 * peak.h -- the int8 compute peak of one core, measured: each ISA's probe runs its GEMM tile's
 * multiply-accumulate instructions back to back, on 12 independent accumulators and without
 * loads, so the loop is bound by the multiply ports alone. Profiles divide achieved GOPS by this
 * figure instead of a constant from one development machine (a Zen 4 and a Cascade Lake Xeon
 * with the same ISA differ by a third).
 */
#ifndef QE_PEAK_H
#define QE_PEAK_H

#include "../qe_internal.h"

/* Runs `iterations` rounds of the probe; returns the int8 operations done (2 per
 * multiply-accumulate). Never inlined: the caller times it. */
typedef uint64_t (*qe_peak_probe_fn)(uint64_t iterations);

#if defined(QE_BUILD_X86)
uint64_t qe_peak_probe__avx2(uint64_t iterations);
uint64_t qe_peak_probe__avx512vnni(uint64_t iterations);
#endif
#if defined(QE_BUILD_ARM64)
uint64_t qe_peak_probe__neon(uint64_t iterations);
uint64_t qe_peak_probe__neondot(uint64_t iterations);
#endif

#endif
