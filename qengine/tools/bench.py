"""qengine bench: the benchmark harness (in progress)."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("model", help="float or quantized ONNX model")


def main(args) -> int:
    raise RuntimeError("qengine bench is not available in this build yet")
