"""compile: a QDQ graph and concrete input shapes -> a Plan (a Program plus its memory layout).

    concretize (shapes for these inputs) -> lower (runtime/lowering.py: kernels and glue)
      -> layouts (each tensor's physical axis order; relayout copies where a kernel needs one)
      -> views (Transposes that relabel, Reshapes of contiguous data: no step, shared storage)
      -> memory (one arena; offsets chosen by lifetime) -> steps -> Program

Tensors are stored as logical.transpose(perm). Kernels state the layouts they need (the
convolution and pooling kernels want NHWC); elsewhere a tensor keeps its producer's layout.
Graph inputs and outputs are the caller's arrays, in the model's own (logical) layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import _kernels as K
from ..errors import ModelError, QEngineError
from ..graph import Graph, Value
from ..ops.int8 import BuildContext, Kernel, identity
from ..passes.fold import simplify
from . import glue, per_image
from .lowering import Lowered, lower

__all__ = ["Plan", "build_plan", "concretize"]

_ALIGN = 64


def concretize(graph: Graph, shapes: dict) -> Graph:
    """A copy of `graph` with concrete input shapes, every shape inferred and shape chains
    folded (so Resize sizes, Reshape targets... become constants)."""
    g = graph.copy()
    g.inputs = [Value(v.name, shapes[v.name], v.dtype) for v in g.inputs]
    keep = set(g.input_names)
    g.values = {k: v for k, v in g.values.items() if k in keep}
    for v in g.inputs:
        g.values[v.name] = v
    simplify(g, declared=keep)
    return g


@dataclass
class Plan:
    """Everything one input shape needs to run: the program and how to lay out its memory."""
    program: object
    arena_bytes: int
    arena_slots: list               # (slot, offset, dtype, physical shape)
    inputs: list                    # (name, slot, dtype, shape)
    input_views: list               # (slot, input index, physical shape): views of inputs
    outputs: list                   # (name, slot, dtype, shape)
    constants: list                 # (slot, array) bound once per run context
    lowered: Lowered
    kernels: list = field(default_factory=list)   # (node, label) of every item

    def activation_bytes(self, threads: int) -> int:
        """The arena, and the image arena of each of `threads` threads running a per-image
        prefix (Program.per_image), with their alignment."""
        if not self.program.per_image:
            return self.arena_bytes
        return self.arena_bytes + (self.program.image_bytes + 128) * max(1, threads)


class _Ctx(BuildContext):
    def __init__(self, g: Graph, lowered: Lowered):
        self.g = g
        self.lowered = lowered
        self.perms: dict[str, tuple] = {}
        self.slots: dict[str, int] = {}
        self.remap: dict[str, str] = {}
        self.const_slots: list = []
        self.n_slots = 0

    def canon(self, name: str) -> str:
        name = self.remap.get(name, name)
        seen = 0
        while name in self.lowered.aliases and seen < 64:
            name, seen = self.lowered.aliases[name], seen + 1
        return name

    def shape(self, name: str) -> tuple:
        name = self.canon(name)
        v = self.g.value(name)
        if not v.is_static:
            raise ModelError(f"tensor {name!r} has no static shape for this input shape "
                             f"({v.shape}); qengine needs every shape known at compile time")
        return tuple(v.shape)

    def dtype(self, name: str) -> np.dtype:
        name = self.canon(name)
        if name in self.lowered.qtensors:
            return np.dtype(np.uint8)
        v = self.g.value(name)
        return np.dtype(v.dtype) if v.dtype is not None else np.dtype(np.float32)

    def perm(self, name: str) -> tuple:
        name = self.canon(name)
        return self.perms.get(name) or identity(len(self.shape(name)))

    def slot(self, name: str) -> tuple:
        name = self.canon(name)
        if name not in self.slots:
            self.slots[name] = self.n_slots
            self.n_slots += 1
        return self.slots[name], 0

    def constant(self, name: str):
        return self.g.initializers.get(name)

    def constant_slot(self, key: str, array: np.ndarray) -> tuple:
        s = self.n_slots
        self.n_slots += 1
        self.const_slots.append((s, np.ascontiguousarray(array)))
        return s, 0


def _resolve(req, ctx: _Ctx, name: str) -> Optional[tuple]:
    if req is None:
        return None
    if req == "identity":
        return identity(len(ctx.shape(name)))
    if callable(req):         # the item decides from the current layout (see ops/int8.Kernel)
        return tuple(req(ctx, ctx.perm(name)))
    if isinstance(req, str) and req.startswith("same_as:"):
        p = ctx.perm(req[len("same_as:"):])
        # an operand of another rank (a broadcast scalar or vector) keeps its own layout: a
        # permutation of the other's rank means nothing for it
        return p if len(p) == len(ctx.shape(name)) else None
    return tuple(req)


def _relayout(src: str, dst: str, perm_src: tuple, perm_dst: tuple) -> Kernel:
    """Copy tensor src (stored with perm_src) into dst (stored with perm_dst): one native
    permute-copy step (csrc/layout/permute.c)."""
    def make_steps(ctx):
        if ctx.shape(src) != ctx.shape(dst):
            raise AssertionError(f"qengine: relayout {src!r} {ctx.shape(src)} -> {dst!r} "
                                 f"{ctx.shape(dst)}: shapes differ")
        if int(np.prod(ctx.shape(dst))) == 0:
            return []
        # dst physical axis k holds logical axis perm_dst[k], which is src physical axis q[k]
        q = tuple(perm_src.index(a) for a in perm_dst)
        elem = ctx.dtype(dst).itemsize
        if elem in (1, 2, 4, 8) and len(q) <= 8:
            return [K.permute_step(dst, ctx.physical_shape(src), q, elem, ctx.slot(src),
                                   ctx.slot(dst))]
        si, di = ctx.slot(src)[0], ctx.slot(dst)[0]

        def fn(views):
            glue.store(views[di], glue.logical_view(views[si], perm_src), perm_dst)
        return [K.PyStep(f"{dst}", "Relayout", fn)]
    return Kernel([src], [dst], make_steps, label="relayout")


def _constant_output(name: str, value: np.ndarray) -> Kernel:
    """A graph output that is an initializer: no node writes it, so a step copies it into
    the caller's output array (which would otherwise be returned uninitialized)."""
    def make_steps(ctx):
        slot = ctx.slot(name)[0]

        def fn(views):
            np.copyto(views[slot], value.reshape(views[slot].shape))
        return [K.PyStep(name, "Constant", fn)]
    return Kernel([], [name], make_steps, out_perm=lambda perms: "identity", label="constant")


# No tensor may hold more bytes than this (64 TiB, beyond any machine): every size product
# below then stays exact in int64, which np.prod and the kernels' size_t arithmetic rely on.
MAX_TENSOR_BYTES = 1 << 46


def _check_sizes(g: Graph) -> None:
    for name, v in g.values.items():
        if v.is_static:
            n = math.prod(v.shape)
            if n * (np.dtype(v.dtype).itemsize if v.dtype is not None else 8) > MAX_TENSOR_BYTES:
                raise ModelError(f"tensor {name!r} would have shape {list(v.shape)} ({n:,} "
                                 f"elements) for this input shape: too large to run")


def build_plan(graph: Graph, shapes: dict, cache: dict, *,
               per_image_mode: Optional[str] = None) -> Plan:
    """Compile the QDQ graph for these concrete input shapes. `cache` (node name -> dict) keeps
    packed weights across the plans of every shape. per_image_mode: which of a batch's first
    layers run image by image ("auto", "off", "all": runtime/per_image.py; None: the
    QENGINE_PER_IMAGE environment variable, else "auto")."""
    if per_image_mode is None:
        per_image_mode = per_image.mode_from_environment()
    g = concretize(graph, shapes)
    _check_sizes(g)
    lowered = lower(g, cache)
    ctx = _Ctx(g, lowered)
    outputs = set(g.output_names)

    # graph outputs that are other tensors' storage (a quantized output) get a copy at the end
    tail: list[Kernel] = []
    for name in g.output_names:
        if name in lowered.aliases:
            src = lowered.aliases.pop(name)
            tail.append((src, name))

    # layouts, relayouts and views, in item order
    items: list[Kernel] = [_constant_output(n, g.initializers[n]) for n in g.output_names
                           if n in g.initializers]
    views: dict[str, str] = {}          # tensor -> the tensor whose storage it shares
    relayouts: dict[tuple, str] = {}
    for v in g.inputs:
        ctx.perms[v.name] = identity(len(v.shape))

    def storage_root(name: str) -> str:
        """The tensor whose storage `name` is (through views), outside any item's remap: a
        relayout that became a view is its read's remap target, and would lead back to it."""
        saved, ctx.remap = ctx.remap, {}
        try:
            name = ctx.canon(name)
            while name in views:
                name = ctx.canon(views[name])
            return name
        finally:
            ctx.remap = saved

    for it in lowered.items:
        remap: dict[str, str] = {}
        for r in it.reads:
            want = _resolve(it.layouts.get(r), ctx, r)
            have = ctx.perm(r)
            if want is not None and want != have:
                key = (ctx.canon(r), want)
                if key not in relayouts:
                    new = g.unique_name(f"{ctx.canon(r)}_relayout")
                    g.set_value(new, ctx.shape(r), ctx.dtype(r))
                    if ctx.canon(r) in lowered.qtensors:
                        lowered.qtensors[new] = lowered.qtensors[ctx.canon(r)]
                    ctx.perms[new] = want
                    if glue.same_order(ctx.shape(r), have, want) and \
                            storage_root(r) not in outputs:
                        views[new] = ctx.canon(r)   # only size-1 axes move: a relabelling
                    else:
                        items.append(_relayout(ctx.canon(r), new, have, want))
                    relayouts[key] = new
                remap[r] = relayouts[key]
        it.remap = remap
        ctx.remap = remap
        in_perms = {r: ctx.perm(r) for r in it.reads}
        produced = it.out_perm(in_perms, ctx) if it.out_perm is not None else None
        for w in it.writes:
            rank = len(ctx.shape(w))
            if produced == "identity" or (produced is None and (not it.reads or len(
                    ctx.shape(it.reads[0])) != rank)):
                p = identity(rank)
            elif produced is None:
                p = ctx.perm(it.reads[0])
            else:
                p = tuple(produced)
            ctx.perms[ctx.canon(w)] = p
        # a view of a graph output would share the caller's array, bound only to the output's
        # own slot: such an item copies instead
        src = storage_root(remap.get(it.reads[0], it.reads[0])) if it.reads else None
        is_view = it.alias is not None and len(it.writes) == 1 and \
            it.writes[0] not in outputs and src not in outputs and it.alias(ctx)
        ctx.remap = {}
        if is_view:
            views[ctx.canon(it.writes[0])] = ctx.canon(remap.get(it.reads[0], it.reads[0]))
            continue
        items.append(it)
    # graph outputs reach the caller in their logical layout, in their own buffer
    out_slot_name = {n: n for n in g.output_names}   # output -> the tensor its array holds
    for name in g.output_names:
        if any(dst == name for _, dst in tail):
            continue
        if name not in g.input_names and glue.same_order(
                ctx.shape(name), ctx.perm(name), identity(len(ctx.shape(name)))):
            ctx.perms[name] = identity(len(ctx.shape(name)))   # the same bytes: no copy
            continue
        if name in g.input_names:
            # an input passed through as an output: the input's slot holds the caller's
            # input array, so the output needs a slot (and a copy) of its own
            dst = g.unique_name(name + "_output")
            g.set_value(dst, ctx.shape(name), ctx.dtype(name))
            out_slot_name[name] = dst
            tail.append((name, dst))
            continue
        src = g.unique_name(name + "_internal")
        g.set_value(src, ctx.shape(name), ctx.g.value(name).dtype)
        if name in lowered.qtensors:
            lowered.qtensors[src] = lowered.qtensors[name]
        ctx.perms[src] = ctx.perm(name)
        for it in items:   # (a read already remapped to a relayout copy keeps it)
            it.remap = {**{x: src for x in it.reads + it.writes if ctx.canon(x) == name},
                        **it.remap}
        tail.append((src, name))
    for src, name in tail:
        items.append(_relayout(src, name, ctx.perm(src), identity(len(ctx.shape(name)))))
        ctx.perms[name] = identity(len(ctx.shape(name)))

    # slots: one per tensor any step touches (views get their own slot at their root's offset)
    for k, it in enumerate(items):
        ctx.remap = it.remap
        for n in it.reads + it.writes:
            ctx.slot(n)
    ctx.remap = {}
    for v in g.inputs:
        ctx.slot(v.name)
    for name in g.output_names:
        ctx.slot(out_slot_name[name])

    # steps; the leading items that run image by image are built for one image
    n_image, batch, touched = per_image.per_image_prefix(items, ctx, g, mode=per_image_mode)
    image_ctx = per_image.ImageContext(ctx, {t for names in touched for t in names})
    steps = []
    kernels = []
    n_image_steps = 0
    for k, it in enumerate(items):
        ctx.remap = it.remap
        n = it.unit.node if it.unit is not None else it.node
        try:
            made = it.make_steps(image_ctx if k < n_image else ctx)
            if k < n_image and not all(isinstance(s, K.NativeStep) for s in made):
                n_image = k           # a Python step: the batch runs from here
                made = it.make_steps(ctx)
        except QEngineError:
            raise
        except (ValueError, OverflowError) as e:     # a kernel binding refused its arguments
            what = f"node {n.name!r} ({n.op_type})" if n is not None else f"step {it.label!r}"
            raise ModelError(f"{what}: cannot run on the int8 kernels: {e}") from e
        steps += made
        if k < n_image:
            n_image_steps = len(steps)
        kernels.append((n.name if n is not None else "", it.label))
    ctx.remap = {}
    if not n_image_steps:
        n_image = 0                   # nothing to run per image: every tensor in the arena
    image_names = {t for names in touched[:n_image] for t in names}

    # storage roots and lifetimes
    external = set(g.input_names) | set(g.output_names) | set(out_slot_name.values())
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, it in enumerate(items):
        for w in it.writes:
            rw = storage_root(it.remap.get(w, w))
            first.setdefault(rw, k)
            last[rw] = max(last.get(rw, k), k)
        for r in it.reads:
            rr = storage_root(it.remap.get(r, r))
            first.setdefault(rr, k)
            last[rr] = k
    sizes, image_sizes = {}, {}
    for name in set(first) | set(views):
        rn = storage_root(name)
        if rn in external or rn in g.initializers:
            continue
        nbytes = int(np.prod(ctx.shape(name))) * ctx.dtype(name).itemsize
        if last.get(rn, n_image) < n_image:
            # only the per-image items use it: one image's worth in each thread's image arena
            image_sizes[rn] = max(image_sizes.get(rn, 0), nbytes // batch)
        else:
            sizes[rn] = max(sizes.get(rn, 0), nbytes)
    offsets, arena = _place(sizes, first, last)
    image_offsets, image_arena = _place(image_sizes, first, last)
    arena_slots, input_views = [], []
    in_index = {v.name: i for i, v in enumerate(g.inputs)}
    private = [-1] * ctx.n_slots
    for name, s in list(ctx.slots.items()):
        rn = storage_root(name)
        phys = ctx.physical_shape(name)
        if rn in offsets:
            arena_slots.append((s, offsets[rn], ctx.dtype(name), phys))
        elif rn in image_offsets:
            private[s] = image_offsets[rn]
        elif rn in in_index and name != rn:
            input_views.append((s, in_index[rn], phys))
    slot_nbytes = [0] * ctx.n_slots
    for name, s in ctx.slots.items():
        slot_nbytes[s] = int(np.prod(ctx.shape(name))) * ctx.dtype(name).itemsize
    for s, arr in ctx.const_slots:
        slot_nbytes[s] = arr.nbytes
    image_plan = None
    if n_image_steps:
        strides = [0] * ctx.n_slots
        for name in image_names:
            s = ctx.slots[name]
            strides[s] = slot_nbytes[s] // batch
        image_plan = (n_image_steps, batch, strides, private, image_arena)
    program = K.Program(steps, slot_nbytes, image_plan)
    inputs = [(v.name, ctx.slots[v.name], np.dtype(v.dtype), tuple(v.shape)) for v in g.inputs]
    outs = [(n, ctx.slots[out_slot_name[n]], ctx.dtype(n), ctx.shape(n)) for n in g.output_names]
    return Plan(program, arena, arena_slots, inputs, input_views, outs, ctx.const_slots,
                lowered, kernels)


def _place(sizes: dict, first: dict, last: dict) -> tuple[dict, int]:
    """Offsets for buffers with lifetimes [first, last] in one arena: largest first, each at
    the lowest aligned offset that overlaps no buffer alive at the same time."""
    placed: list[tuple[int, int, int, int]] = []   # (offset, end, first, last)
    offsets: dict[str, int] = {}
    arena = 0
    for name in sorted(sizes, key=lambda n: (-sizes[n], first.get(n, 0), n)):
        size = -(-max(sizes[name], 1) // _ALIGN) * _ALIGN
        f, l = first.get(name, 0), last.get(name, 0)
        busy = sorted((o, e) for o, e, pf, pl in placed if not (pl < f or l < pf))
        off = 0
        for o, e in busy:
            if off + size <= o:
                break
            off = max(off, e)
        placed.append((off, off + size, f, l))
        offsets[name] = off
        arena = max(arena, off + size)
    return offsets, arena
