"""Shape arithmetic on dims that may be symbolic (str) or unknown (None), for the shape rules."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..graph import Dim, Shape

__all__ = ["broadcast", "bcast_dim", "prod", "norm_axis", "norm_axes", "is_int", "as_ints"]


def is_int(d) -> bool:
    return isinstance(d, int)


def bcast_dim(a: Dim, b: Dim) -> Dim:
    """Numpy broadcasting of two dims; ValueError when two static dims conflict."""
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if is_int(a) and is_int(b):
        raise ValueError(f"dims {a} and {b} do not broadcast")
    if is_int(a):
        return a     # b is symbolic: at run time it is 1 or a
    if is_int(b):
        return b
    return None      # two different symbols (or unknowns): either could be 1


def broadcast(*shapes: Shape) -> Shape:
    """Multidirectional (numpy) broadcast of shapes; None if any rank is unknown."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out: list = [1] * rank
    for s in shapes:
        pad = (1,) * (rank - len(s)) + tuple(s)
        try:
            out = [bcast_dim(x, y) for x, y in zip(out, pad)]
        except ValueError:
            raise ValueError("shapes " + " and ".join(str(list(t)) for t in shapes) +
                             " do not broadcast") from None
    return tuple(out)


def only_axis(shape: Sequence[int], rank: int, axis: int) -> bool:
    """True when `shape`, broadcast (right-aligned) to `rank` dims, is 1 except on `axis`."""
    full = (1,) * (rank - len(shape)) + tuple(shape)
    return all(d == 1 for i, d in enumerate(full) if i != axis)


def prod(dims: Sequence[Dim]) -> Optional[int]:
    """Product of static dims, None if any is not static."""
    p = 1
    for d in dims:
        if not is_int(d):
            return None
        p *= d
    return p


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """axis in [-rank, rank) -> [0, rank); ValueError otherwise."""
    if not -rank <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def norm_axes(axes: Sequence[int], rank: int, what: str = "axes") -> list[int]:
    out = [norm_axis(int(a), rank, what) for a in axes]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} {list(axes)} repeat an axis")
    return out


def as_ints(arr: Optional[np.ndarray]) -> Optional[list[int]]:
    """A constant integer tensor as a flat list of ints (None stays None)."""
    if arr is None:
        return None
    return [int(v) for v in np.asarray(arr).reshape(-1)]
