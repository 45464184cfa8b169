"""qengine report: the per-layer fidelity report (in progress)."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("float_model")
    p.add_argument("quantized_model")


def main(args) -> int:
    raise RuntimeError("qengine report is not available in this build yet")
