"""Indexing data movement: Concat, Split, Slice, Gather, GatherElements, Tile, Pad."""
from __future__ import annotations

import numpy as np

from . import dims
from .registry import Op, register

_BIG = 2 ** 62   # an end index past any real dim (exporters write INT64_MAX)


def _merge(a, b, what):
    """Two descriptions of one dim: the static one wins; two different static ones fail."""
    if isinstance(a, int) and isinstance(b, int) and a != b:
        raise ValueError(what)
    return a if isinstance(a, int) else (b if isinstance(b, int) else (a if a == b else None))


@register("Concat")
class Concat(Op):
    int8_role = "join"

    n_inputs = (1, None)

    def parse(self, a):
        self.axis = a.int("axis", 1) if self.opset < 4 else a.int("axis")

    def infer(self, ins, consts):
        shapes = [v.shape for v in ins if v is not None]
        if any(s is None for s in shapes):
            known = [s for s in shapes if s is not None]
            return [(None if not known else (None,) * len(known[0]), ins[0].dtype)]
        r = len(shapes[0])
        if any(len(s) != r for s in shapes):
            raise self.error(f"inputs have different ranks: {[list(s) for s in shapes]}")
        try:
            ax = dims.norm_axis(self.axis, r)
            out = list(shapes[0])
            for s in shapes[1:]:
                for i in range(r):
                    if i != ax:
                        out[i] = _merge(out[i], s[i], "")
        except ValueError as e:
            raise self.error(str(e) or f"inputs {[list(s) for s in shapes]} differ outside "
                             f"axis {self.axis}") from None
        out[ax] = sum(s[ax] for s in shapes) if all(isinstance(s[ax], int) for s in shapes) \
            else None
        return [(tuple(out), ins[0].dtype)]

    def run(self, *xs):
        xs = [x for x in xs if x is not None]
        return (np.concatenate(xs, axis=dims.norm_axis(self.axis, xs[0].ndim)),)


@register("Split")
class Split(Op):
    """Sizes from the ``split`` attribute (opset < 13) or input (13+), else equal parts
    (opset 18: ``num_outputs``, the last part may be smaller)."""
    int8_role = "movement"

    n_inputs = (1, 2)
    n_outputs = (1, 2 ** 16)

    def parse(self, a):
        self.axis = a.int("axis", 0)
        self.split = a.ints("split", None, lo=0) if self.opset < 13 else None
        n = a.int("num_outputs", None, lo=1) if self.opset >= 18 else None
        if n is not None and n != len(self.node.outputs):
            raise self.error(f"num_outputs={n} but the node has {len(self.node.outputs)} "
                             f"outputs")

    def _sizes(self, dim, split_arr):
        sizes = self.split if self.opset < 13 else dims.as_ints(split_arr)
        n = len(self.node.outputs)
        if sizes is not None:
            if len(sizes) != n or any(s < 0 for s in sizes):
                raise self.error(f"split {sizes} does not give {n} outputs")
            if isinstance(dim, int) and sum(sizes) != dim:
                raise self.error(f"split {sizes} does not sum to the axis size {dim}")
            return sizes
        if not isinstance(dim, int):
            return None
        if self.opset < 18 and dim % n:
            raise self.error(f"axis size {dim} does not split into {n} equal parts")
        part = -(-dim // n)
        return [min(part, max(0, dim - part * i)) for i in range(n)]

    def infer(self, ins, consts):
        x = ins[0].shape
        n = len(self.node.outputs)
        if x is None:
            return [(None, ins[0].dtype)] * n
        try:
            ax = dims.norm_axis(self.axis, len(x))
        except ValueError as e:
            raise self.error(str(e)) from None
        has_input = len(ins) > 1 and ins[1] is not None
        sizes = None if has_input and consts[1] is None else \
            self._sizes(x[ax], consts[1] if has_input else None)
        outs = []
        for size in (sizes or [None] * n):
            shape = list(x)
            shape[ax] = size
            outs.append((tuple(shape), ins[0].dtype))
        return outs

    def run(self, x, split=None):
        ax = dims.norm_axis(self.axis, x.ndim)
        sizes = self._sizes(x.shape[ax], split)
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=ax))


def slice_bounds(dim: int, start: int, end: int, step: int):
    """ONNX's clamping of (start, end) for one axis of static size ``dim``; returns a Python
    slice with the same meaning."""
    if step == 0:
        raise ValueError("slice step cannot be 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, None if end < 0 else end, step)


@register("Slice")
class Slice(Op):
    """starts/ends/axes as attributes before opset 10; inputs (with steps) since."""
    int8_role = "movement"

    n_inputs = (1, 5)

    def parse(self, a):
        if self.opset < 10:
            self.params = (a.ints("starts"), a.ints("ends"), a.ints("axes", None), None)

    def _params(self, rank, arrs):
        if self.opset < 10:
            starts, ends, axes, steps = self.params
        else:
            starts, ends, axes, steps = (dims.as_ints(a) for a in (list(arrs) + [None] * 4)[:4])
        n = len(starts)
        axes = list(range(n)) if axes is None else dims.norm_axes(axes, rank)
        steps = [1] * n if steps is None else steps
        if not len(ends) == len(axes) == len(steps) == n:
            raise ValueError(f"starts/ends/axes/steps lengths differ: {starts} {ends} {axes} "
                             f"{steps}")
        return starts, ends, axes, steps

    def infer(self, ins, consts):
        x = ins[0].shape
        if self.opset >= 10 and any(v is not None and c is None
                                    for v, c in zip(ins[1:], consts[1:])):
            return [(None if x is None else (None,) * len(x), ins[0].dtype)]
        if x is None:
            return [(None, ins[0].dtype)]
        try:
            starts, ends, axes, steps = self._params(len(x), consts[1:])
            out = list(x)
            for s, e, ax, st in zip(starts, ends, axes, steps):
                d = x[ax]
                if isinstance(d, int):
                    out[ax] = len(range(d)[slice_bounds(d, s, e, st)])
                elif not (s == 0 and e >= _BIG and st == 1):
                    out[ax] = None
        except ValueError as e:
            raise self.error(str(e)) from None
        return [(tuple(out), ins[0].dtype)]

    def run(self, x, *arrs):
        try:
            starts, ends, axes, steps = self._params(x.ndim, arrs)
            idx = [slice(None)] * x.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                idx[ax] = slice_bounds(x.shape[ax], s, e, st)
        except ValueError as e:
            raise self.error(str(e)) from None
        return (x[tuple(idx)].copy(),)


def _fix_indices(idx: np.ndarray, dim: int, op: Op) -> np.ndarray:
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise op.error(f"index out of range [{-dim}, {dim}): min {idx.min()}, max {idx.max()}")
    return np.where(idx < 0, idx + dim, idx)


@register("Gather")
class Gather(Op):
    n_inputs = (2, 2)
    int8_role = "movement"

    def parse(self, a):
        self.axis = a.int("axis", 0)

    def infer(self, ins, consts):
        x, i = ins[0].shape, ins[1].shape
        if x is None or i is None:
            return [(None, ins[0].dtype)]
        try:
            ax = dims.norm_axis(self.axis, len(x))
        except ValueError as e:
            raise self.error(str(e)) from None
        return [(tuple(x[:ax]) + tuple(i) + tuple(x[ax + 1:]), ins[0].dtype)]

    def run(self, x, idx):
        ax = dims.norm_axis(self.axis, x.ndim)
        return (np.take(x, _fix_indices(idx, x.shape[ax], self), axis=ax),)


@register("GatherElements")
class GatherElements(Op):
    n_inputs = (2, 2)

    def parse(self, a):
        self.axis = a.int("axis", 0)

    def infer(self, ins, consts):
        return [(ins[1].shape, ins[0].dtype)]

    def run(self, x, idx):
        ax = dims.norm_axis(self.axis, x.ndim)
        return (np.take_along_axis(x, _fix_indices(idx, x.shape[ax], self), axis=ax),)


@register("Tile")
class Tile(Op):
    n_inputs = (2, 2)
    int8_role = "movement"

    def infer(self, ins, consts):
        x, reps = ins[0].shape, dims.as_ints(consts[1])
        if x is None or reps is None:
            return [(x if x is None else (None,) * len(x), ins[0].dtype)]
        if len(reps) != len(x) or any(r < 0 for r in reps):
            raise self.error(f"repeats {reps} do not fit input rank {len(x)}")
        return [(tuple(d * r if isinstance(d, int) else (d if r == 1 else None)
                       for d, r in zip(x, reps)), ins[0].dtype)]

    def run(self, x, reps):
        return (np.tile(x, dims.as_ints(reps)),)


@register("Pad")
class Pad(Op):
    """pads = [begin..., end...] (negative values crop); modes constant, reflect, edge, wrap.
    Before opset 11 pads/value are attributes; since, inputs (and axes since 18)."""

    n_inputs = (1, 4)
    int8_role = "movement"  # the constant value pads as its quantized self

    def parse(self, a):
        self.mode = a.str("mode", "constant", choices=("constant", "reflect", "edge", "wrap"))
        if self.opset < 11:
            self.pads = a.ints("pads") if self.opset >= 2 else a.ints("paddings")
            self.value = a.float("value", 0.0)

    def _pads(self, rank, pads, axes):
        if self.opset < 11:
            pads = self.pads
        else:
            pads = dims.as_ints(pads)
        axes = list(range(rank)) if axes is None else dims.norm_axes(dims.as_ints(axes), rank)
        if len(pads) != 2 * len(axes):
            raise ValueError(f"pads {pads} need 2 values for each of {len(axes)} axes")
        full = [[0, 0] for _ in range(rank)]
        for i, ax in enumerate(axes):
            full[ax] = [pads[i], pads[i + len(axes)]]
        return full

    def infer(self, ins, consts):
        x = ins[0].shape
        if x is None or (self.opset >= 11 and (consts[1] is None or (
                len(ins) > 3 and ins[3] is not None and consts[3] is None))):
            return [(None if x is None else (None,) * len(x), ins[0].dtype)]
        try:
            full = self._pads(len(x), consts[1] if len(consts) > 1 else None,
                              consts[3] if len(consts) > 3 else None)
        except ValueError as e:
            raise self.error(str(e)) from None
        return [(tuple(d + b + e if isinstance(d, int) else (d if b == e == 0 else None)
                       for d, (b, e) in zip(x, full)), ins[0].dtype)]

    def run(self, x, pads=None, value=None, axes=None):
        try:
            full = self._pads(x.ndim, pads, axes)
        except ValueError as e:
            raise self.error(str(e)) from None
        crop = tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(full))
        x = x[crop]
        widths = [(max(0, b), max(0, e)) for b, e in full]
        if self.mode == "constant":
            v = self.value if self.opset < 11 else (
                0 if value is None or value.size == 0 else value.reshape(-1)[0])
            return (np.pad(x, widths, mode="constant", constant_values=np.asarray(v, x.dtype)),)
        if x.size == 0 and any(w != (0, 0) for w in widths):
            raise self.error(f"mode {self.mode!r} cannot pad an empty tensor")
        return (np.pad(x, widths, mode={"edge": "edge", "reflect": "reflect",
                                        "wrap": "wrap"}[self.mode]),)


# ---- int8 lowering (ops/int8.py) ------------------------------------------------------------------
def _concat_lower_int8(self, unit):
    """Concat of uint8 tensors: each input requantized (or copied) into its slice of the
    output, in whatever layout the inputs share."""
    from .. import _kernels as K
    from .int8 import Kernel, QTensor

    ins = [v for v in unit.inputs if v is not None]
    if not all(isinstance(v, QTensor) for v in ins) or len(unit.outputs) != 1:
        return None
    y = unit.outputs[0]
    mults = [np.float32(v.scale / y.scale) for v in ins]
    if not all(np.isfinite(m) and m > 0 for m in mults):
        return None
    names = [v.name for v in ins]

    def make_steps(ctx):
        out = ctx.shape(y.name)
        perm = ctx.perm(y.name)
        ax = dims.norm_axis(self.axis, len(out))
        k = perm.index(ax)                       # the concat axis, physically
        phys_out = [out[p] for p in perm]
        rows = int(np.prod(phys_out[:k]))
        ldy = int(np.prod(phys_out[k:]))
        steps, col = [], 0
        yslot, yoff = ctx.slot(y.name)
        for v in ins:
            shp = ctx.shape(v.name)
            cols = int(np.prod([shp[p] for p in perm][k:]))
            if rows and cols:
                steps.append(K.requantize_step(
                    f"{unit.name}:{v.name}", rows, cols, ctx.slot(v.name), cols,
                    (yslot, yoff + col), ldy, v.zero_point, float(np.float32(v.scale / y.scale)),
                    y.zero_point, y.qmin, y.qmax, op="Concat"))
            col += cols
        return steps

    layouts = {n: "same_as:" + names[0] for n in names[1:]}
    return Kernel(list(dict.fromkeys(names)), [y.name], make_steps, layouts=layouts,
                  label="concat", unit=unit)


Concat.lower_int8 = _concat_lower_int8
