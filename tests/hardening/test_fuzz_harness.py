"""The fuzz driver itself (fuzz/run.py): a case that segfaults, aborts or hangs kills or
stalls only its worker, is counted as a crash or a hang, and the run goes on; a bare Python
exception counts as an error and a qengine exception as a rejection. Without this, "0 crashes"
from the fuzz job would mean nothing."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"ok": "ok", "reject": "rejected", "error": "error", "wrong": "wrong", "segv": "crash",
         "abort": "crash", "hang": "hang"}


def test_every_outcome_is_counted_and_the_run_survives(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"{k}.bin" for k in KINDS]
    for n in names:
        (corpus / n).write_bytes(b"x")
    (corpus / "manifest.json").write_text(json.dumps({"selftest": names}))
    cases = 16
    env = dict(os.environ, QE_FUZZ_SELFTEST="1")
    if "asan" in env.get("LD_PRELOAD", ""):
        # under .ci/sanitize: the deliberate segfault and abort are not sanitizer findings
        env["ASAN_OPTIONS"] = "detect_leaks=0:handle_segv=0:handle_abort=0:" \
                              "allocator_may_return_null=1"
    r = subprocess.run([sys.executable, "-m", "fuzz", "--targets", "selftest", "--cases",
                        str(cases), "--workers", "2", "--timeout", "4", "--corpus", str(corpus),
                        "--json", str(tmp_path / "summary.json")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "summary.json").exists(), (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    summary = json.loads((tmp_path / "summary.json").read_text())
    # what each case was (made again here, as the driver does)
    monkeypatch.setenv("QE_FUZZ_SELFTEST", "1")
    sys.path.insert(0, str(ROOT))
    import importlib

    import fuzz.targets
    importlib.reload(fuzz.targets)
    import fuzz.cases
    importlib.reload(fuzz.cases)
    c = fuzz.cases.Corpus(corpus)
    expected = collections.Counter(
        KINDS[fuzz.cases.make_case(i, 0, ["selftest"], c).seed_name.split(".")[0]]
        for i in range(cases))
    assert summary["cases"] == cases
    assert summary["outcomes"] == dict(expected), r.stdout[-3000:]
    assert expected["crash"] and expected["hang"]      # the sample exercises both
    assert r.returncode == 1                          # failures make the job fail
    assert "crash SIG" in r.stdout and "hang" in r.stdout
