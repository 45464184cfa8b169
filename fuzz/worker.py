"""A fuzz worker: reads case numbers on stdin, runs each case, writes one JSON line per case on
its (private copy of) stdout. Anything the code under test prints goes to stderr, so it cannot
corrupt the protocol. A segfault kills only this process; the driver notices and respawns it.

    python -m fuzz.worker --corpus DIR --seed S [--targets a,b] [--memory-mb M]
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
import traceback
import warnings


# Causes that mean a bug in qengine even when a qengine exception wraps them (the compiler
# and the executor wrap whatever escapes a step, so that users only ever see qengine errors;
# the fuzzer still counts these as failures to fix).
INTERNAL = (TypeError, AttributeError, KeyError, IndexError, AssertionError, NameError,
            RecursionError, ZeroDivisionError, NotImplementedError)


def classify(exc: BaseException) -> tuple[str, str]:
    """('rejected' | 'error' | 'wrong', type name) of an exception a case raised. A wrapped
    cause is named too: 'ExecutionError(MemoryError)'."""
    from qengine.errors import QEngineError

    from .targets import Wrong
    if isinstance(exc, Wrong):
        return "wrong", "Wrong"
    if not isinstance(exc, QEngineError):
        return "error", type(exc).__name__
    name = type(exc).__name__
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, QEngineError):
        name += f"({type(cause).__name__})"
        if isinstance(cause, INTERNAL):
            return "error", name
    if not str(exc).strip():
        return "error", f"{name}(empty message)"
    return "rejected", name


def run_case(case, state: dict) -> dict:
    """Run one case in this process; the result record (never raises, except for crashes)."""
    from qengine import _kernels as K

    from .targets import TARGETS
    rng = case.rng
    K.set_isa(rng.choice(K.available_isas()))
    K.set_num_threads(rng.choice([1, 2]))
    t0 = time.perf_counter()
    rec = {"i": case.index, "target": case.target, "seed": case.seed_name, "desc": case.desc,
           "outcome": "ok", "type": "", "msg": ""}
    state.pop("last_desc", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TARGETS[case.target].run(case.payload, case.seed_name, rng, state)
    except Exception as e:     # noqa: BLE001 -- classifying every exception is the point
        rec["outcome"], rec["type"] = classify(e)
        rec["msg"] = str(e)[:300]
        if rec["outcome"] != "rejected":     # where it went wrong: the innermost cause
            root = e
            while root.__cause__ is not None:
                root = root.__cause__
            rec["trace"] = "".join(traceback.format_exception(root)[-8:])[-3000:]
    if "last_desc" in state:
        rec["desc"] = rec["desc"] + [state["last_desc"]]
    rec["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return rec


def _limit_memory(mb: int) -> None:
    """Cap the address space so a case that asks for terabytes fails with MemoryError here
    instead of taking the machine down."""
    if mb <= 0 or "libasan" in os.environ.get("LD_PRELOAD", ""):
        return       # (AddressSanitizer maps terabytes of shadow; it caps allocations itself)
    import resource
    lim = mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="")
    ap.add_argument("--memory-mb", type=int, default=0)
    args = ap.parse_args(argv)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                       # stray prints (C or Python) go to stderr
    sys.stdout = sys.stderr
    faulthandler.enable()               # a segfault prints the Python stack to stderr
    from .cases import Corpus, enabled_targets, make_case
    corpus = Corpus(args.corpus)
    targets = enabled_targets(args.targets.split(",") if args.targets else None)
    import qengine  # noqa: F401  (imported before the memory cap: the import itself maps a lot)
    _limit_memory(args.memory_mb)
    state: dict = {}
    out.write(json.dumps({"ready": True, "targets": targets}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        index = int(line)
        case = make_case(index, args.seed, targets, corpus)
        out.write(json.dumps(run_case(case, state)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
