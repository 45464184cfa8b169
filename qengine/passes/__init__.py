"""Graph -> graph passes: shape inference, constant folding, dead node removal, transpose
optimisation."""
from __future__ import annotations

from .fold import fold_constants, fold_shape_chains, simplify
from .shapes import infer_shapes, merge_shapes
from .transpose import optimize_transposes

__all__ = ["infer_shapes", "merge_shapes", "fold_constants", "fold_shape_chains", "simplify",
           "optimize_transposes"]
