/*
 * peak.c -- the probe of each ISA (peak.h); the reference path has none (its speed is the
 * compiler's, not a port limit).
 */
#include "peak.h"

static const qe_peak_probe_fn g_probes[QE_ISA_COUNT] = {
#if defined(QE_BUILD_X86)
    [QE_ISA_AVX2] = qe_peak_probe__avx2,
    [QE_ISA_AVX512VNNI] = qe_peak_probe__avx512vnni,
#endif
#if defined(QE_BUILD_ARM64)
    [QE_ISA_NEON] = qe_peak_probe__neon,
    [QE_ISA_NEON_DOTPROD] = qe_peak_probe__neondot,
#endif
};

uint64_t qe_int8_peak_probe(qe_isa isa, uint64_t iterations) {
    if ((unsigned)isa >= QE_ISA_COUNT || !g_probes[isa] || !qe_isa_available(isa)) return 0;
    return g_probes[isa](iterations);
}
