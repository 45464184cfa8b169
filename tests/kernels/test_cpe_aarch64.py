"""The aarch64 paths (neon, neondot) of conv, pool and element-wise kernels, which x86 CI
cannot import: cross-compile tests/kernels/c/cpe_selftest.c with the C sources and run it under
qemu-aarch64 (or natively on an aarch64 host). Skipped when neither is possible."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["-std=c11", "-O2", "-ffp-contract=off", "-fno-strict-aliasing", "-D_GNU_SOURCE",
         "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]


def _toolchain():
    if platform.machine().lower() in ("aarch64", "arm64"):
        return shutil.which("gcc"), []
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    return (cc, [qemu]) if cc and qemu else (None, None)


def _sources():
    srcs = [ROOT / "csrc" / n for n in ("dispatch.c", "threadpool.c", "output.c")]
    for family in ("gemm", "conv", "pool", "eltwise", "peak"):
        srcs += [p for p in sorted((ROOT / "csrc" / family).glob("*.c"))
                 if not p.name.endswith(("_avx2.c", "_avx512vnni.c"))]
    return srcs + [ROOT / "tests" / "kernels" / "c" / "cpe_selftest.c"]


def test_aarch64_paths_match_reference(tmp_path):
    cc, runner = _toolchain()
    if cc is None:
        pytest.skip("no aarch64 toolchain: needs aarch64-linux-gnu-gcc and qemu-aarch64")

    def compile_one(src):
        obj = tmp_path / f"{src.parent.name}_{src.stem}.o"
        extra = ["-march=armv8.2-a+dotprod"] if src.name.endswith("_neondot.c") else []
        r = subprocess.run([cc, *FLAGS, *extra, "-I", str(ROOT / "csrc"), "-c", str(src), "-o",
                            str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}:\n{r.stderr}"
        return str(obj)

    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(compile_one, _sources()))
    exe = tmp_path / "cpe_selftest"
    static = ["-static"] if runner else []
    subprocess.run([cc, *static, "-pthread", *objects, "-o", str(exe), "-lm"], check=True,
                   capture_output=True, text=True)
    env = dict(os.environ, QEMU_CPU="max")  # qemu's "max" CPU has the dot-product extension
    out = subprocess.run([*runner, str(exe)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "neon: 900 cases bit-identical" in out.stdout
    assert "neon: peak probe 96 ops per round" in out.stdout
    if runner:  # under qemu both paths exist; real hardware may lack the dot product
        assert "neondot: 900 cases bit-identical" in out.stdout
        assert "neondot: peak probe 384 ops per round" in out.stdout
