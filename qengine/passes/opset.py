"""Opset upgrade: quantized graphs need opset >= 13 (per-axis DequantizeLinear), so an older
float graph is converted first with ONNX's version converter (on the graph qengine exported
itself, never on unchecked input), then imported again."""
from __future__ import annotations

from ..errors import ModelError
from ..graph import Graph

__all__ = ["upgrade_opset"]


def upgrade_opset(graph: Graph, minimum: int = 13) -> Graph:
    """`graph` itself when its default-domain opset is >= minimum, else an upgraded copy."""
    if graph.opset.get("", graph.opset.get("ai.onnx", minimum)) >= minimum:
        return graph
    from onnx import version_converter

    from ..frontends.onnx_import import import_onnx
    from ..io.onnx_export import to_onnx
    try:
        converted = version_converter.convert_version(to_onnx(graph), minimum)
    except Exception as e:
        raise ModelError(f"cannot upgrade the model from opset {graph.opset.get('')} to "
                         f"{minimum} (needed for per-channel quantization): {e}") from None
    return import_onnx(converted.SerializeToString())
