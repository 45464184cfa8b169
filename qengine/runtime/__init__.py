"""Executors: the float reference (numpy) now; the int8 plan/executor join later."""
from __future__ import annotations

from .reference import ReferenceExecutor, run_reference

__all__ = ["ReferenceExecutor", "run_reference"]
