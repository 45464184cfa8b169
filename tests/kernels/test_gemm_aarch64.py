"""The aarch64 GEMM paths (neon, neondot), which x86 CI cannot import: cross-compile the C
self-test (tests/kernels/c/gemm_selftest.c) with the GEMM sources and run it under
qemu-aarch64, or natively on an aarch64 host. Skipped when neither is possible."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Per-file flags as setup.py gives them on aarch64 (the *_neondot.c suffix adds dotprod).
BASE = ["-std=c11", "-O2", "-ffp-contract=off", "-fno-strict-aliasing", "-D_GNU_SOURCE",
        "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]
DOTPROD = ["-march=armv8.2-a+dotprod"]


def _toolchain():
    if platform.machine().lower() in ("aarch64", "arm64"):
        return shutil.which("gcc"), []
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    return (cc, [qemu]) if cc and qemu else (None, None)


def _sources():
    # the element-wise family too: a GEMM's task can apply a fused bias Add (qe_gemm_u8s8_add)
    gemm = [p for family in ("gemm", "eltwise")
            for p in sorted((ROOT / "csrc" / family).glob("*.c"))
            if not p.name.endswith(("_avx2.c", "_avx512vnni.c"))]
    return [ROOT / "csrc" / n for n in ("dispatch.c", "threadpool.c", "output.c")] + gemm + [
        ROOT / "tests" / "kernels" / "c" / "gemm_selftest.c"]


def test_aarch64_paths_match_reference(tmp_path):
    cc, runner = _toolchain()
    if cc is None:
        pytest.skip("no aarch64 toolchain: needs aarch64-linux-gnu-gcc and qemu-aarch64")
    def compile_one(src):
        obj = tmp_path / (src.stem + ".o")
        flags = BASE + (DOTPROD if src.name.endswith("_neondot.c") else [])
        subprocess.run([cc, *flags, "-I", str(ROOT / "csrc"), "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, text=True)
        return str(obj)

    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(compile_one, _sources()))
    exe = tmp_path / "gemm_selftest"
    static = ["-static"] if runner else []
    subprocess.run([cc, *static, "-pthread", *objects, "-o", str(exe), "-lm"], check=True,
                   capture_output=True, text=True)
    env = dict(os.environ, QEMU_CPU="max")  # qemu's "max" CPU has the dot-product extension
    out = subprocess.run([*runner, str(exe)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "neon: 400 cases bit-identical" in out.stdout
    if runner:  # under qemu both paths exist; on real hardware dotprod may be absent
        assert "neondot: 400 cases bit-identical" in out.stdout
