/*
 * dispatch.c -- what this CPU can run, and which kernel path is active.
 *
 * CPUID is read once (lazily, thread-safe through pthread_once). The active path starts at the
 * best available one; the Python side applies QENGINE_ISA at import through qe_set_isa().
 * Prepacked kernels (GEMM, conv) remember the path they were packed for; stateless kernels
 * (pooling, element-wise, quantize) read the active path at each call.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "qe_internal.h"

#if defined(QE_BUILD_X86)
#include <cpuid.h>
#endif
#if defined(QE_BUILD_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static unsigned g_features;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static volatile int g_isa = -1;

#if defined(QE_BUILD_X86)
static uint64_t qe_xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

static void qe_detect(void) {
    unsigned f = 0;
#if defined(QE_BUILD_X86)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
        /* The OS must save the YMM (and for AVX-512, the opmask and ZMM) state. */
        const uint64_t xcr0 = osxsave ? qe_xgetbv0() : 0;
        const int ymm_ok = avx && (xcr0 & 0x6) == 0x6;
        const int zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            if (ymm_ok && ((b >> 5) & 1)) f |= QE_FEAT_AVX2;
            if (ymm_ok && fma) f |= QE_FEAT_FMA;
            if (zmm_ok) {
                if ((b >> 16) & 1) f |= QE_FEAT_AVX512F;
                if ((b >> 30) & 1) f |= QE_FEAT_AVX512BW;
                if ((b >> 31) & 1) f |= QE_FEAT_AVX512VL;
                if ((c >> 11) & 1) f |= QE_FEAT_AVX512VNNI;
                if ((c >> 1) & 1) f |= QE_FEAT_AVX512VBMI;
            }
        }
        if (ymm_ok && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1)) f |= QE_FEAT_AVXVNNI;
    }
#elif defined(QE_BUILD_ARM64)
    f |= QE_FEAT_NEON; /* mandatory on aarch64 */
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) f |= QE_FEAT_DOTPROD;
#endif
#endif
    g_features = f;
}

unsigned qe_cpu_features(void) {
    pthread_once(&g_once, qe_detect);
    return g_features;
}

int qe_isa_available(qe_isa isa) {
    const unsigned f = qe_cpu_features();
    switch (isa) {
    case QE_ISA_REF:
        return 1;
#if defined(QE_BUILD_X86)
    case QE_ISA_AVX2:
        return (f & (QE_FEAT_AVX2 | QE_FEAT_FMA)) == (QE_FEAT_AVX2 | QE_FEAT_FMA);
    case QE_ISA_AVX512VNNI: {
        const unsigned need = QE_FEAT_AVX2 | QE_FEAT_FMA | QE_FEAT_AVX512F | QE_FEAT_AVX512BW |
                              QE_FEAT_AVX512VL | QE_FEAT_AVX512VNNI;
        return (f & need) == need;
    }
#endif
#if defined(QE_BUILD_ARM64)
    case QE_ISA_NEON:
        return (f & QE_FEAT_NEON) != 0;
    case QE_ISA_NEON_DOTPROD:
        return (f & QE_FEAT_DOTPROD) != 0;
#endif
    default:
        return 0;
    }
}

qe_isa qe_isa_best(void) {
    static const qe_isa order[] = {QE_ISA_AVX512VNNI, QE_ISA_AVX2, QE_ISA_NEON_DOTPROD, QE_ISA_NEON};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (qe_isa_available(order[i])) return order[i];
    return QE_ISA_REF;
}

int qe_set_isa(qe_isa isa) {
    if ((int)isa < 0 || isa >= QE_ISA_COUNT || !qe_isa_available(isa)) return QE_ERR_ISA;
    g_isa = (int)isa;
    return QE_OK;
}

qe_isa qe_get_isa(void) {
    if (g_isa < 0) g_isa = (int)qe_isa_best();
    return (qe_isa)g_isa;
}

const char *qe_isa_name(qe_isa isa) {
    static const char *names[QE_ISA_COUNT] = {"ref", "avx2", "avx512vnni", "neon", "neondot"};
    return ((int)isa >= 0 && isa < QE_ISA_COUNT) ? names[isa] : "unknown";
}

void qe_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "qengine: internal invariant violated at %s:%d: %s\n", file, line, cond);
    abort();
}
