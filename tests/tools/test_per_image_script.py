"""benchmarks/per_image.py end to end: one row per mode, 'off' the unit of the ratios, and the
outputs of every mode checked identical (the script raises otherwise)."""
import pathlib
import re
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "per_image.py"


def test_one_row_per_mode():
    r = subprocess.run([sys.executable, str(SCRIPT), "--models", "eltwise", "--threads", "2",
                        "--batch", "3", "--rounds", "2", "--modes", "auto,all"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines()
            if line.startswith("| eltwise")]
    assert [c[3].strip() for c in rows] == ["off", "auto", "all"], r.stdout
    steps = {c[3].strip(): re.match(r"\s*(\d+) of (\d+)", c[4]).groups() for c in rows}
    assert steps["off"][0] == "0" and int(steps["all"][0]) > 0, steps
    assert float(rows[0][6]) == 1.0 and all(float(c[5]) > 0 for c in rows)
