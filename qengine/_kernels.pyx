# cython: language_level=3
"""qengine._kernels -- the only Python that touches C.

Every function validates shape, dtype and contiguity of its arguments and raises ValueError /
TypeError before any C runs; kernels run with the GIL released. The parts live in
qengine/_bindings/*.pxi, one per kernel family, included below.
"""
from libc.stdint cimport int8_t, uint8_t, int32_t, uint64_t, uintptr_t

import numpy as np

from qengine.errors import ExecutionError, ISAError, QEngineError

ISA_NAMES = ("ref", "avx2", "avx512vnni", "neon", "neondot")
MAX_K = QE_MAX_K

_FEATURES = (
    ("avx2", QE_FEAT_AVX2), ("fma", QE_FEAT_FMA), ("avx512f", QE_FEAT_AVX512F),
    ("avx512bw", QE_FEAT_AVX512BW), ("avx512vl", QE_FEAT_AVX512VL),
    ("avx512vnni", QE_FEAT_AVX512VNNI), ("avx512vbmi", QE_FEAT_AVX512VBMI),
    ("avxvnni", QE_FEAT_AVXVNNI), ("neon", QE_FEAT_NEON), ("dotprod", QE_FEAT_DOTPROD),
)


cdef qe_isa _isa_from_name(name) except *:
    if name is None:
        return qe_get_isa()
    if not isinstance(name, str) or name not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(ISA_NAMES)}")
    cdef int idx = ISA_NAMES.index(name)
    cdef qe_isa isa = <qe_isa>idx
    if not qe_isa_available(isa):
        raise ISAError(f"ISA {name!r} is not available on this CPU or build; "
                       f"available: {', '.join(available_isas())}")
    return isa


def cpu_features():
    """{feature name: bool} as read from CPUID (x86-64) or HWCAP (aarch64)."""
    cdef unsigned f = qe_cpu_features()
    return {name: bool(f & bit) for name, bit in _FEATURES}


def available_isas():
    """Kernel paths this CPU and build can run, slowest first ('ref' is always there)."""
    return [n for i, n in enumerate(ISA_NAMES) if qe_isa_available(<qe_isa>i)]


def best_isa():
    return ISA_NAMES[<int>qe_isa_best()]


def set_isa(name):
    """Make `name` the active path for kernels packed or called from now on."""
    cdef qe_isa isa = _isa_from_name(name)
    if qe_set_isa(isa) != QE_OK:
        raise ISAError(f"ISA {name!r} could not be selected")


def get_isa():
    return ISA_NAMES[<int>qe_get_isa()]


def set_num_threads(n):
    """Size of the shared thread pool (>= 1)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= 1024:
        raise ValueError(f"number of threads must be an integer in [1, 1024], got {n!r}")
    qe_set_num_threads(<int>n)


def get_num_threads():
    return qe_get_num_threads()


def pool_jobs_dispatched():
    """Jobs the kernels have handed to the thread pool's workers so far (for tests)."""
    return qe_pool_jobs_dispatched()


def set_thread_limit(n):
    """Cap the threads used by kernels called from the calling thread (0 = no cap)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= 1024:
        raise ValueError(f"thread limit must be an integer in [0, 1024], got {n!r}")
    qe_set_thread_limit(<int>n)


def effective_threads():
    return qe_effective_threads()


def int8_peak_probe(name, iterations):
    """Run `iterations` rounds of path `name`'s peak probe on this thread (GIL released) and
    return the int8 operations done, 0 where the path has no probe ('ref'). Time the call to get
    one core's int8 peak (qengine.tools.profile.peak_gops_per_core)."""
    cdef qe_isa isa = _isa_from_name(name)
    if not isinstance(iterations, (int, np.integer)) or isinstance(iterations, bool) or \
            not 0 <= iterations <= 10 ** 12:
        raise ValueError(f"iterations must be an integer in [0, 1e12], got {iterations!r}")
    cdef uint64_t n = <uint64_t>iterations, ops
    with nogil:
        ops = qe_int8_peak_probe(isa, n)
    return int(ops)


include "_bindings/common.pxi"
include "_bindings/gemm.pxi"
include "_bindings/conv.pxi"
include "_bindings/pool.pxi"
include "_bindings/eltwise.pxi"
include "_bindings/program.pxi"
include "_bindings/runner.pxi"
include "_bindings/steps.pxi"
include "_bindings/norm.pxi"
