"""What this CPU can run, which kernel path is active, and how many threads the kernels use.

Read once at import: ``QENGINE_ISA=auto|avx512vnni|avx2|ref`` (``neon``/``neondot`` on aarch64)
forces a kernel path, and asking for one this CPU lacks raises :class:`qengine.errors.ISAError`;
``QENGINE_NUM_THREADS`` sets the pool size (default: the cores this process may use).
"""
from __future__ import annotations

import os
import platform

from . import _kernels
from .errors import ISAError

__all__ = ["cpu_info", "set_num_threads", "get_num_threads", "available_isas", "active_isa",
           "set_isa"]


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel may use (>= 1)."""
    _kernels.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _kernels.get_num_threads()


def available_isas() -> list[str]:
    """Kernel paths this CPU and build can run ('ref' is always one)."""
    return _kernels.available_isas()


def active_isa() -> str:
    """The kernel path new models are compiled for."""
    return _kernels.get_isa()


def set_isa(name: str) -> None:
    """Select the kernel path for models compiled from now on ('auto' = the best available)."""
    _kernels.set_isa(_kernels.best_isa() if name == "auto" else name)


def cpu_info() -> dict:
    """What the CPU has and what qengine uses: machine, features, available and active paths,
    threads."""
    return {
        "machine": platform.machine(),
        "features": _kernels.cpu_features(),
        "available_isas": available_isas(),
        "best_isa": _kernels.best_isa(),
        "isa": active_isa(),
        "num_threads": get_num_threads(),
    }


def _apply_environment() -> None:
    isa = os.environ.get("QENGINE_ISA", "auto").strip().lower() or "auto"
    if isa != "auto":
        if isa not in _kernels.ISA_NAMES:
            raise ISAError(f"QENGINE_ISA={isa!r} is not a kernel path; expected auto or one of "
                           f"{', '.join(_kernels.ISA_NAMES)}")
        if isa not in available_isas():
            raise ISAError(f"QENGINE_ISA={isa!r} asks for a path this CPU or build lacks; "
                           f"available: {', '.join(available_isas())}")
    set_isa(isa)
    threads = os.environ.get("QENGINE_NUM_THREADS", "").strip()
    if threads:
        try:
            n = int(threads)
            if n < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"QENGINE_NUM_THREADS must be a positive integer, got {threads!r}") from None
    else:
        n = _default_threads()
    set_num_threads(n)


_apply_environment()
