"""Build qengine's C kernels and their Cython bindings as one extension, `qengine._kernels`.

Per-ISA kernel files are compiled with their own flags, so one build runs on every CPU and the
fast paths are chosen at run time from CPUID (csrc/dispatch.c):
    *_avx2.c         -mavx2 -mfma                                    (x86-64 only)
    *_avx512vnni.c   -mavx512f -mavx512bw -mavx512vl -mavx512vnni    (x86-64 only)
    *_neon.c         the aarch64 baseline                            (aarch64 only)
    *_neondot.c      -march=armv8.2-a+dotprod                        (aarch64 only)
Everything else is portable C11 compiled with the baseline flags.

Environment:
    QENGINE_SANITIZE=1   build with -fsanitize=address,undefined at -O1 (.ci/sanitize builds and
                         runs such a copy; docs/hardening.md)
    QENGINE_DEBUG=1      -O0 -g
"""
import glob
import os
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MACHINE = platform.machine().lower()
IS_X86 = MACHINE in ("x86_64", "amd64")
IS_ARM64 = MACHINE in ("aarch64", "arm64")

ISA_FLAGS = {
    "_avx2.c": ["-mavx2", "-mfma"] if IS_X86 else None,
    "_avx512vnni.c": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl",
                      "-mavx512dq", "-mavx512vnni"] if IS_X86 else None,
    "_neon.c": [] if IS_ARM64 else None,
    "_neondot.c": ["-march=armv8.2-a+dotprod"] if IS_ARM64 else None,
}

# -ffp-contract=off: no FMA contraction anywhere, so every path rounds like the reference.
# -fno-trapping-math: floating-point exceptions never trap here, so float selects may be
# if-converted (vectorized); it changes no result (no reassociation, no contraction).
# -falign-functions=64: the ~3 us call of a one-node model moved by 0.15 us when an unrelated
# kernel grew (benchmarks/overhead.py, 2026-11-27); aligned functions keep its hot path laid
# out the same whatever the code before it.
# -fno-math-errno: math calls never set errno (nothing reads it), so loops of sqrtf vectorize;
# sqrt is correctly rounded either way.
BASE_FLAGS = ["-std=c11", "-O3", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno",
              "-fno-strict-aliasing", "-falign-functions=64",
              "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-D_GNU_SOURCE"]
LINK_FLAGS = ["-pthread"]
if os.environ.get("QENGINE_DEBUG") == "1":
    BASE_FLAGS = [f for f in BASE_FLAGS if f != "-O3"] + ["-O0", "-g"]
if os.environ.get("QENGINE_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    # -O1: the usual sanitizer level; compiles the generated Cython C several times faster
    BASE_FLAGS = [f for f in BASE_FLAGS if f != "-O3"] + san + ["-O1", "-g", "-UNDEBUG"]
    LINK_FLAGS += san


def isa_of(path):
    for suffix, flags in ISA_FLAGS.items():
        if path.endswith(suffix):
            return suffix, flags
    return None, []


class BuildExtPerISA(build_ext):
    """Compile each per-ISA C file with its own flags, then link everything into one module."""

    def build_extension(self, ext):
        plain, objects = [], []
        for src in ext.sources:
            suffix, flags = isa_of(src)
            if suffix is None:
                plain.append(src)
            elif flags is not None:  # an ISA of this architecture
                objects += self.compiler.compile(
                    [src], output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    extra_postargs=BASE_FLAGS + flags, depends=ext.depends)
        ext.sources = plain
        ext.extra_objects = list(ext.extra_objects or []) + objects
        # setuptools relinks only when ext.sources or ext.depends changed: keep the per-ISA
        # files visible to that check, or editing one of them would leave a stale module.
        ext.depends = list(ext.depends or []) + objects
        super().build_extension(ext)


c_sources = sorted(glob.glob("csrc/*.c") + glob.glob("csrc/*/*.c"))
headers = sorted(glob.glob("csrc/*.h") + glob.glob("csrc/*/*.h"))

kernels = Extension(
    "qengine._kernels",
    sources=["qengine/_kernels.pyx"] + c_sources,
    include_dirs=["csrc", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    depends=headers + sorted(glob.glob("qengine/_bindings/*.pxi")) + ["qengine/_kernels.pxd"],
    extra_compile_args=BASE_FLAGS,
    extra_link_args=LINK_FLAGS,
)

setup(
    ext_modules=cythonize(
        [kernels],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False, "embedsignature": True},
        include_path=["qengine"],
    ),
    cmdclass={"build_ext": BuildExtPerISA},
)
