"""benchmarks/tile_cost.py end to end: one row per K for the active kernel path, the extra
work per tile computed from its own numbers, and a clear exit on the path without k groups."""
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from qengine import _kernels

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "tile_cost.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("isa", [i for i in _kernels.available_isas() if i != "ref"])
def test_one_row_per_k_with_consistent_extra(isa):
    r = run("--isa", isa, "--ks", "16", "100")
    assert r.returncode == 0, r.stderr
    head = re.search(r"tile (\d+) x (\d+), k groups of (\d+);.*peak (\d+) GOPS", r.stdout)
    assert head, r.stdout
    mr, nr, kr, peak = map(int, head.groups())
    assert (mr, nr, kr) == _kernels.GemmPacked(np.ones((1, 1), np.int8), isa=isa).tile
    rows = [line.split() for line in r.stdout.splitlines()
            if re.match(r"\s+\d+\s+\d+\s+\d+\s", line)]
    assert [int(row[0]) for row in rows] == [16, 100]
    for row in rows:
        K, M, groups = map(int, row[:3])
        assert groups == -(-K // kr) and M % mr == 0
        for gops, extra in ((float(row[3]), float(row[5])), (float(row[6]), float(row[8]))):
            # extra = time per tile in peak work minus the tile's groups: back from GOPS
            tile_time = 2 * M * nr * K / (gops * 1e9) / (M // mr)
            want = tile_time * peak * 1e9 / (2 * mr * nr * kr) - groups
            assert 0 < gops < 1.05 * peak and abs(extra - want) < 0.05 * groups + 0.5


def test_the_reference_path_is_refused():
    r = run("--isa", "ref", "--ks", "16")
    assert r.returncode != 0 and "no k groups" in r.stderr
