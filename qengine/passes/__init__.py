"""Graph -> graph passes: shape inference, constant folding, dead node removal."""
from __future__ import annotations

from .fold import fold_constants, fold_shape_chains, simplify
from .shapes import infer_shapes, merge_shapes

__all__ = ["infer_shapes", "merge_shapes", "fold_constants", "fold_shape_chains", "simplify"]
