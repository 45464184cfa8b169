"""The fuzz driver: builds the seed corpus, runs N cases over W worker processes with a
timeout per case, and prints counts (cases, outcomes and exceptions by type, crashes, hangs).
A worker that dies (segfault, abort) or overruns its timeout is recorded and replaced; the run
goes on. Exit status 0 only when there was no error, wrong answer, crash or hang.

    python -m fuzz [--cases 10000] [--workers 2] [--seed 0] [--targets onnx,qdq,...]
                   [--timeout 60] [--save DIR] [--corpus DIR] [--json FILE]
    python -m fuzz --replay 1234 [--seed 0]      # one case, in this process, with traceback
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD = ("error", "wrong", "crash", "hang", "harness")


class Worker:
    """One worker process and the case it is running."""

    def __init__(self, args, corpus: Path, log_dir: Path, n: int):
        self.log = open(log_dir / f"worker{n}.log", "ab")
        cmd = [sys.executable, "-m", "fuzz.worker", "--corpus", str(corpus), "--seed",
               str(args.seed), "--memory-mb", str(args.memory_mb)]
        if args.targets:
            cmd += ["--targets", args.targets]
        env = dict(os.environ, PYTHONFAULTHANDLER="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", QE_FUZZ_TMP=str(log_dir))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, bufsize=0)
        self.buf = b""
        self.case = None
        self.deadline = None
        self.log_start = self.log.tell()
        hello = self._line(timeout=300)
        if hello is None:
            raise RuntimeError(f"fuzz worker did not start (see {self.log.name})")
        self.targets = json.loads(hello)["targets"]

    def _line(self, timeout: float):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            sel = selectors.DefaultSelector()
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            left = end - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def start(self, index: int, timeout: float) -> None:
        self.case = index
        self.deadline = time.monotonic() + timeout
        self.log.flush()
        self.log_start = self.log.tell()
        try:
            self.proc.stdin.write(f"{index}\n".encode())
        except OSError:      # it died since its last answer: the loop sees EOF, a crash
            pass

    def tail(self, n: int = 25) -> str:
        try:
            with open(self.log.name, "rb") as f:
                f.seek(self.log_start)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def _report(results: list, targets: list, elapsed: float, out=sys.stdout) -> dict:
    by_target = collections.defaultdict(collections.Counter)
    types = collections.defaultdict(collections.Counter)
    examples = collections.defaultdict(list)     # exception type -> a few messages
    for r in results:
        by_target[r["target"]][r["outcome"]] += 1
        if r["outcome"] in ("rejected", "error"):
            types[r["outcome"]][r["type"]] += 1
            if len(examples[r["type"]]) < 5:
                examples[r["type"]].append(r["msg"][:200])
    total = collections.Counter(r["outcome"] for r in results)
    p = lambda *a: print(*a, file=out)
    p(f"\nqengine fuzz: {len(results)} cases in {elapsed:.0f} s over targets {', '.join(targets)}")
    p(f"{'target':<10}{'cases':>7}{'ok':>7}{'rejected':>10}{'error':>7}{'wrong':>7}"
      f"{'crash':>7}{'hang':>6}")
    for t in targets:
        c = by_target.get(t, collections.Counter())
        p(f"{t:<10}{sum(c.values()):>7}{c['ok']:>7}{c['rejected']:>10}{c['error']:>7}"
          f"{c['wrong']:>7}{c['crash']:>7}{c['hang']:>6}")
    p(f"{'total':<10}{len(results):>7}{total['ok']:>7}{total['rejected']:>10}{total['error']:>7}"
      f"{total['wrong']:>7}{total['crash']:>7}{total['hang']:>6}")
    timed = sorted((r for r in results if "ms" in r), key=lambda r: -r["ms"])
    if timed:
        t = timed[0]
        p(f"slowest case: {t['ms'] / 1000:.1f} s (case {t['i']}, {t['target']} {t['seed']}); "
          f"median {timed[len(timed) // 2]['ms']:.1f} ms")
    p("qengine exceptions by type: " + ", ".join(f"{k} {v}" for k, v in
                                               types["rejected"].most_common()))
    if types["error"]:
        p("other exceptions by type:   " + ", ".join(f"{k} {v}" for k, v in
                                                   types["error"].most_common()))
    bad = [r for r in results if r["outcome"] in BAD]
    for r in bad[:40]:
        p(f"  case {r['i']} [{r['target']} {r['seed']}] {r['outcome']} {r['type']}: "
          f"{r['msg'][:160]} <- {'; '.join(map(str, r['desc']))[:200]}")
    if len(bad) > 40:
        p(f"  ... {len(bad) - 40} more")
    return {"cases": len(results), "seconds": round(elapsed, 1), "targets": targets,
            "outcomes": dict(total), "by_target": {k: dict(v) for k, v in by_target.items()},
            "rejected_types": dict(types["rejected"]), "error_types": dict(types["error"]),
            "examples": dict(examples),
            "slowest_ms": timed[0]["ms"] if timed else None}


def _save(case_dir: Path, rec: dict, corpus, seed: int, targets: list) -> None:
    from .cases import make_case
    case_dir.mkdir(parents=True, exist_ok=True)
    c = make_case(rec["i"], seed, targets, corpus)
    ext = ".keras" if c.target == "keras" else ".onnx"
    if isinstance(c.payload, (bytes, bytearray)):
        (case_dir / f"case{rec['i']}_{c.target}{ext}").write_bytes(c.payload)
    (case_dir / f"case{rec['i']}_{c.target}.json").write_text(json.dumps(rec, indent=1))


def run(args) -> int:
    from .cases import Corpus
    from .seeds import build
    tmp = Path(tempfile.mkdtemp(prefix="qe_fuzz_run_"))
    corpus_dir = Path(args.corpus) if args.corpus else tmp / "corpus"
    if not (corpus_dir / "manifest.json").exists():
        print(f"building the seed corpus in {corpus_dir} ...", flush=True)
        build(corpus_dir)
    corpus = Corpus(corpus_dir)
    workers = [Worker(args, corpus_dir, tmp, n) for n in range(args.workers)]
    targets = workers[0].targets
    print(f"targets: {', '.join(targets)}; seeds: "
          f"{ {k: len(v) for k, v in corpus.manifest.items()} }; logs in {tmp}", flush=True)
    pending = list(range(args.start, args.start + args.cases))[::-1]
    results: list = []
    t0 = time.monotonic()
    next_progress = 0

    def finish(w: Worker, rec: dict) -> None:
        results.append(rec)
        if rec["outcome"] in BAD and args.save:
            _save(Path(args.save), rec, corpus, args.seed, targets)

    def replace(k: int) -> None:
        workers[k].kill()
        workers[k] = Worker(args, corpus_dir, tmp, k)

    for w in workers:
        if pending:
            w.start(pending.pop(), args.timeout)
    while any(w.case is not None for w in workers):
        sel = selectors.DefaultSelector()
        for k, w in enumerate(workers):
            if w.case is not None:
                sel.register(w.proc.stdout, selectors.EVENT_READ, k)
        wait = max(0.05, min(w.deadline for w in workers if w.case is not None) - time.monotonic())
        ready = {key.data for key, _ in sel.select(wait)}
        sel.close()
        for k, w in enumerate(workers):
            if w.case is None:
                continue
            rec = None
            if k in ready or b"\n" in w.buf:
                line = w._line(timeout=0.01) if b"\n" not in w.buf else w._line(0)
                if line is not None:
                    rec = json.loads(line)
                elif w.proc.poll() is not None:       # EOF: the worker died
                    rc = w.proc.returncode
                    sig = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() \
                        else f"exit {rc}"
                    rec = {"i": w.case, "target": "?", "seed": "?", "desc": [],
                           "outcome": "crash", "type": sig, "msg": w.tail()}
                    _fill(rec, corpus, args.seed, targets)
                    finish(w, rec)
                    replace(k)
                    w = workers[k]
                    rec = None
                    if pending:
                        w.start(pending.pop(), args.timeout)
                    continue
            if rec is None and time.monotonic() > w.deadline:
                rec = {"i": w.case, "target": "?", "seed": "?", "desc": [], "outcome": "hang",
                       "type": f">{args.timeout:.0f}s", "msg": w.tail(10)}
                _fill(rec, corpus, args.seed, targets)
                finish(w, rec)
                replace(k)
                if pending:
                    workers[k].start(pending.pop(), args.timeout)
                continue
            if rec is not None:
                finish(w, rec)
                w.case = None
                if pending:
                    w.start(pending.pop(), args.timeout)
        if len(results) >= next_progress:
            c = collections.Counter(r["outcome"] for r in results)
            print(f"  {len(results)}/{args.cases} cases, {time.monotonic() - t0:.0f} s: "
                  f"{dict(c)}", flush=True)
            next_progress += max(args.cases // 20, 1)
    for w in workers:
        w.proc.stdin.close()
        w.kill()
    summary = _report(results, targets, time.monotonic() - t0)
    summary.update(seed=args.seed, start=args.start, timeout=args.timeout, workers=args.workers)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    failures = sum(summary["outcomes"].get(k, 0) for k in BAD)
    print(f"failures (error + wrong + crash + hang): {failures}")
    if summary["outcomes"].get("crash") or summary["outcomes"].get("hang"):
        print(f"worker logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


def _fill(rec: dict, corpus, seed: int, targets: list) -> None:
    """Target, seed and mutations of a case whose worker died (made again here)."""
    from .cases import make_case
    try:
        c = make_case(rec["i"], seed, targets, corpus)
        rec.update(target=c.target, seed=c.seed_name, desc=c.desc)
    except Exception as e:      # noqa: BLE001
        rec["desc"] = [f"(case could not be made again: {e})"]


def replay(args) -> int:
    """Run one case in this process and print its record (and traceback)."""
    from .cases import Corpus, enabled_targets, make_case
    from .seeds import build
    from .worker import run_case
    corpus_dir = Path(args.corpus or tempfile.mkdtemp(prefix="qe_fuzz_replay_"))
    if not (corpus_dir / "manifest.json").exists():
        build(corpus_dir)
    corpus = Corpus(corpus_dir)
    targets = enabled_targets(args.targets.split(",") if args.targets else None)
    case = make_case(args.replay, args.seed, targets, corpus)
    rec = run_case(case, {})
    print(json.dumps(rec, indent=1))
    if args.save and isinstance(case.payload, (bytes, bytearray)):
        _save(Path(args.save), rec, corpus, args.seed, targets)
    return 0 if rec["outcome"] not in BAD else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="", help="comma-separated subset of the targets")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (hang)")
    ap.add_argument("--memory-mb", type=int, default=4096, help="address-space cap per worker")
    ap.add_argument("--corpus", default="", help="seed corpus directory (built if missing)")
    ap.add_argument("--save", default="", help="write failing cases (payload + record) here")
    ap.add_argument("--json", default="", help="write the summary as JSON here")
    ap.add_argument("--replay", type=int, default=None, help="run one case in-process")
    args = ap.parse_args(argv)
    if args.replay is not None:
        return replay(args)
    return run(args)
