"""Model files out: qengine graphs (float or quantized QDQ) as standard ONNX."""
from .onnx_export import save_onnx, to_onnx

__all__ = ["to_onnx", "save_onnx"]
