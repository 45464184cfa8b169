"""Stress test of the shared thread pool (csrc/threadpool.c) through its C self-test
(tests/kernels/c/pool_selftest.c): every task of every job runs exactly once, whatever the
thread count, scheduling, concurrent callers or thread limit."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_runs_exactly_once(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "pool_selftest"
    srcs = [ROOT / "csrc" / "threadpool.c", ROOT / "csrc" / "dispatch.c",
            ROOT / "tests" / "kernels" / "c" / "pool_selftest.c"]
    subprocess.run([cc, "-std=c11", "-O2", "-D_GNU_SOURCE", "-Wall", "-Werror", "-pthread",
                    "-I", str(ROOT / "csrc"), *map(str, srcs), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fresh pools: first jobs complete" in out.stdout
    assert out.stdout.count("every task exactly once") == 4
