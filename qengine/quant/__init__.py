"""Quantization math (params.py) and calibration observers (observers.py) -- numpy only; the C
kernels are an optional fast path for quantize() on large arrays. Semantics: DESIGN.md
("Quantization semantics") and docs/quantization.md."""
from .observers import OBSERVERS, Observer, make_observer
from .params import (QParams, dequantize, fake_quantize, int_range, qparams_from_range, quantize,
                     quantize_bias, requant_multiplier)

__all__ = ["QParams", "int_range", "qparams_from_range", "quantize", "dequantize",
           "fake_quantize", "quantize_bias", "requant_multiplier", "Observer", "OBSERVERS",
           "make_observer"]
