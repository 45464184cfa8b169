"""Shape-changing data movement: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Expand,
Shape, Size, Identity, SpaceToDepth, DepthToSpace."""
from __future__ import annotations

from collections import Counter

import numpy as np

from . import dims
from .registry import Op, register

_I64 = np.dtype(np.int64)


def sym_prod(ds):
    """Product of dims: an int if all are static, the symbol if exactly one dim is symbolic
    and the rest multiply to 1, else None."""
    syms = [d for d in ds if not isinstance(d, int)]
    p = dims.prod([d for d in ds if isinstance(d, int)])
    if not syms:
        return p
    if len(syms) == 1 and p == 1 and syms[0] is not None:
        return syms[0]
    return None


def _solve_minus_one(src, known):
    """The dim a -1 stands for: prod(src) / prod(known), with symbols cancelled when they
    match; None when it cannot be told."""
    if any(d is None for d in list(src) + list(known)):
        return None
    num = Counter(d for d in src if isinstance(d, str))
    den = Counter(d for d in known if isinstance(d, str))
    if den - num:
        return None
    rest = num - den
    pi = dims.prod([d for d in src if isinstance(d, int)])
    qi = dims.prod([d for d in known if isinstance(d, int)])
    if not rest:
        if qi == 0:
            return 0 if pi == 0 else None
        if pi % qi:
            raise ValueError(f"cannot reshape {list(src)} elements into {list(known)} x -1")
        return pi // qi
    if sum(rest.values()) == 1 and qi and pi == qi:
        return next(iter(rest))
    return None


def reshape_dims(src, spec, allowzero: bool):
    """Output dims of Reshape(src, spec) with ONNX's 0 (copy) and -1 (infer) entries."""
    if spec.count(-1) > 1:
        raise ValueError(f"shape {spec} has more than one -1")
    out = []
    for i, s in enumerate(spec):
        if s == 0 and not allowzero:
            if src is None or i >= len(src):
                if src is not None:
                    raise ValueError(f"shape {spec}: 0 at position {i} but the input has "
                                     f"rank {len(src)}")
                out.append(None)
            else:
                out.append(src[i])
        elif s < -1:
            raise ValueError(f"shape {spec} has an invalid entry {s}")
        else:
            out.append(s)
    if -1 in out:
        i = out.index(-1)
        out[i] = None if src is None else _solve_minus_one(src, out[:i] + out[i + 1:])
    elif src is not None and all(isinstance(d, int) for d in list(src) + out) and \
            dims.prod(src) != dims.prod(out):
        raise ValueError(f"cannot reshape {list(src)} into {out}: "
                         f"{dims.prod(src)} != {dims.prod(out)} elements")
    return tuple(out)


@register("Reshape", since=5)
class Reshape(Op):
    int8_role = "movement"

    n_inputs = (2, 2)

    def parse(self, a):
        self.allowzero = bool(a.int("allowzero", 0))

    def infer(self, ins, consts):
        if ins[1].dtype is not None and ins[1].dtype != np.int64:
            raise self.error(f"the shape input must be int64, got {ins[1].dtype}")
        if ins[1].shape is not None and len(ins[1].shape) != 1:
            raise self.error(f"the shape input must be 1-D, got {list(ins[1].shape)}")
        spec = dims.as_ints(consts[1])
        if spec is None:
            s = ins[1].shape
            rank = s[0] if s is not None and len(s) == 1 and isinstance(s[0], int) else None
            return [(None if rank is None else (None,) * rank, ins[0].dtype)]
        try:
            return [(reshape_dims(ins[0].shape, spec, self.allowzero), ins[0].dtype)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, x, shape):
        spec = dims.as_ints(shape)
        try:
            spec = list(reshape_dims(x.shape, spec, self.allowzero))   # validates 0 and -1
            return (x.reshape(spec),)
        except ValueError as e:
            raise self.error(f"cannot reshape {list(x.shape)} into {spec}: {e}") from None


@register("Flatten")
class Flatten(Op):
    int8_role = "movement"

    def parse(self, a):
        self.axis = a.int("axis", 1)

    def _axis(self, rank):
        if not -rank <= self.axis <= rank:
            raise self.error(f"axis {self.axis} is out of range for rank {rank}")
        return self.axis + rank if self.axis < 0 else self.axis

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None:
            return [((None, None), ins[0].dtype)]
        ax = self._axis(len(x))
        return [((sym_prod(x[:ax]), sym_prod(x[ax:])), ins[0].dtype)]

    def run(self, x):
        ax = self._axis(x.ndim)
        return (x.reshape(int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:]))),)


@register("Transpose")
class Transpose(Op):
    int8_role = "movement"

    def parse(self, a):
        self.perm = a.ints("perm", None)

    def _perm(self, rank):
        if self.perm is None:
            return list(range(rank))[::-1]
        if sorted(self.perm) != list(range(rank)):
            raise self.error(f"perm {self.perm} is not a permutation of rank {rank}")
        return self.perm

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None:
            return [(None if self.perm is None else (None,) * len(self.perm), ins[0].dtype)]
        return [(tuple(x[p] for p in self._perm(len(x))), ins[0].dtype)]

    def run(self, x):
        return (x.transpose(self._perm(x.ndim)).copy(),)


class _AxesOp(Op):
    """Squeeze/Unsqueeze: axes is an attribute before opset 13, an input since. Subclasses
    give ``_out(shape, axes)``, which raises ValueError on bad axes."""

    n_inputs = (1, 2)

    def parse(self, a):
        self.axes = a.ints("axes", None) if self.opset < 13 else None
        if self.opset < 13 and len(self.node.inputs) > 1:
            raise self.error("axes is an attribute before opset 13, not an input")

    def _get_axes(self, arr):
        return self.axes if self.opset < 13 else dims.as_ints(arr)

    def infer(self, ins, consts):
        x = ins[0].shape
        given = len(ins) > 1 and ins[1] is not None
        if x is None or (given and consts[1] is None):
            return [(None, ins[0].dtype)]
        try:
            return [(self._out(x, self._get_axes(consts[1] if given else None)), ins[0].dtype)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, x, axes=None):
        try:
            return (x.reshape(self._out(x.shape, self._get_axes(axes))),)
        except ValueError as e:
            raise self.error(str(e)) from None


@register("Squeeze")
class Squeeze(_AxesOp):
    int8_role = "movement"

    def _out(self, x, axes):
        if axes is None:    # squeeze every 1: needs every dim known
            return tuple(d for d in x if d != 1) if all(isinstance(d, int) for d in x) else None
        ax = dims.norm_axes(axes, len(x))
        for i in ax:
            if isinstance(x[i], int) and x[i] != 1:
                raise ValueError(f"cannot squeeze axis {i} of size {x[i]}")
        return tuple(d for i, d in enumerate(x) if i not in ax)


@register("Unsqueeze")
class Unsqueeze(_AxesOp):
    int8_role = "movement"

    def _out(self, x, axes):
        if axes is None:
            raise ValueError("axes is required")
        r = len(x) + len(axes)
        ax = set(dims.norm_axes(axes, r))
        it = iter(x)
        return tuple(1 if i in ax else next(it) for i in range(r))


@register("Expand")
class Expand(Op):
    int8_role = "movement"

    n_inputs = (2, 2)

    def infer(self, ins, consts):
        spec = dims.as_ints(consts[1])
        if spec is None:
            return [(None, ins[0].dtype)]
        try:
            return [(dims.broadcast(ins[0].shape, tuple(spec)), ins[0].dtype)]
        except ValueError as e:
            raise self.error(str(e)) from None

    def run(self, x, shape):
        out = np.broadcast_shapes(x.shape, tuple(dims.as_ints(shape)))
        return (np.array(np.broadcast_to(x, out)),)


@register("Shape")
class Shape(Op):
    """The input's shape as int64, optionally sliced [start, end) (opset 15)."""

    def parse(self, a):
        self.start = a.int("start", 0)
        self.end = a.int("end", None)

    def _slice(self, shape):
        return tuple(shape)[slice(self.start, self.end)]

    def infer(self, ins, consts):
        x = ins[0].shape
        return [((None if x is None else len(self._slice(x)),), _I64)]

    def run(self, x):
        return (np.array(self._slice(x.shape), dtype=np.int64),)

    def fold_static(self, ins):
        x = ins[0].shape
        if x is None:
            return None
        part = self._slice(x)
        if all(isinstance(d, int) for d in part):
            return (np.array(part, dtype=np.int64),)
        return None


@register("Size")
class Size(Op):
    def infer(self, ins, consts):
        return [((), _I64)]

    def run(self, x):
        return (np.array(x.size, dtype=np.int64),)

    def fold_static(self, ins):
        n = dims.prod(ins[0].shape) if ins[0].shape is not None else None
        return None if n is None else (np.array(n, dtype=np.int64),)


@register("Identity")
class Identity(Op):
    int8_role = "movement"

    def infer(self, ins, consts):
        return [(ins[0].shape, ins[0].dtype)]

    def run(self, x):
        return (x,)


class _Blocks(Op):
    int8_role = "movement"

    def parse(self, a):
        self.b = a.int("blocksize", lo=1)
        self.mode = a.str("mode", "DCR", choices=("DCR", "CRD"))

    def _check(self, x):
        if x is not None and len(x) != 4:
            raise self.error(f"input must be 4-D (N, C, H, W), got {list(x)}")


@register("SpaceToDepth")
class SpaceToDepth(_Blocks):
    def infer(self, ins, consts):
        x, b = ins[0].shape, self.b
        self._check(x)
        if x is None:
            return [((None,) * 4, ins[0].dtype)]
        for d in x[2:]:
            if isinstance(d, int) and d % b:
                raise self.error(f"spatial dims {list(x[2:])} are not divisible by {b}")
        f = [d // b if isinstance(d, int) else None for d in x[2:]]
        return [((x[0], x[1] * b * b if isinstance(x[1], int) else None, *f), ins[0].dtype)]

    def run(self, x):
        n, c, h, w = x.shape
        b = self.b
        y = x.reshape(n, c, h // b, b, w // b, b)
        y = y.transpose(0, 3, 5, 1, 2, 4) if self.mode == "DCR" else y.transpose(0, 1, 3, 5, 2, 4)
        return (np.ascontiguousarray(y).reshape(n, c * b * b, h // b, w // b),)


@register("DepthToSpace")
class DepthToSpace(_Blocks):
    def infer(self, ins, consts):
        x, b = ins[0].shape, self.b
        self._check(x)
        if x is None:
            return [((None,) * 4, ins[0].dtype)]
        if isinstance(x[1], int) and x[1] % (b * b):
            raise self.error(f"{x[1]} channels are not divisible by blocksize^2 = {b * b}")
        c = x[1] // (b * b) if isinstance(x[1], int) else None
        return [((x[0], c, *[d * b if isinstance(d, int) else None for d in x[2:]]),
                 ins[0].dtype)]

    def run(self, x):
        n, c, h, w = x.shape
        b = self.b
        if self.mode == "DCR":
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return (np.ascontiguousarray(y).reshape(n, c // (b * b), h * b, w * b),)
