"""Glue items of a compiled model: quantize / dequantize / requantize at the borders of float
regions, lookup-table regions, movement ops on uint8, and float ops run by their numpy
reference. Each returns an ops.int8.Kernel; runtime/plan.py makes their steps per shape.
"""
from __future__ import annotations

import numpy as np

from .. import _kernels as K
from ..graph import Graph, Node
from ..ops import make_op
from ..ops.int8 import Kernel, QTensor, Unit, float_table, requant_table

__all__ = ["float_node", "quantize", "dequantize", "requantize", "lut", "lut_float", "movement",
           "logical_view", "store", "sign_flip"]

_SIGN_FLIP = (np.arange(256) ^ 0x80).astype(np.uint8)   # int8 byte <-> uint8 = int8 + 128


def _inverse(perm: tuple) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def logical_view(arr: np.ndarray, perm: tuple) -> np.ndarray:
    """The logical (ONNX-layout) view of a tensor stored as logical.transpose(perm)."""
    return arr if perm == tuple(range(len(perm))) else arr.transpose(_inverse(perm))


def store(dst: np.ndarray, value: np.ndarray, perm: tuple) -> None:
    """Write a logical value into a physical buffer stored as logical.transpose(perm)."""
    v = value if perm == tuple(range(len(perm))) else np.transpose(value, perm)
    if v.shape != dst.shape:
        v = np.broadcast_to(v, dst.shape) if v.size == dst.size or v.ndim == 0 else v
    np.copyto(dst, v, casting="unsafe")


def _reader(ctx, name: str):
    """A function views -> the logical array of `name` (a constant is captured once)."""
    const = ctx.constant(name)
    if const is not None:
        return lambda views: const
    slot, perm = ctx.slot(name)[0], ctx.perm(name)
    if perm == tuple(range(len(perm))):
        return lambda views: views[slot]
    inv = _inverse(perm)
    return lambda views: views[slot].transpose(inv)


def float_node(g: Graph, node: Node, op) -> Kernel:
    """Run the node's float reference on logical views of its inputs."""
    reads = [i for i in node.inputs if i and i not in g.initializers]
    writes = [o for o in node.outputs if o]

    def make_steps(ctx):
        getters = [(_reader(ctx, i) if i else (lambda views: None)) for i in node.inputs]
        outs = [(ctx.slot(o)[0], ctx.perm(o)) if o else None for o in node.outputs]

        if op.keeps_layout and len(outs) == 1 and outs[0] is not None and \
                hasattr(op, "run_into"):
            slot, inv = outs[0][0], _inverse(outs[0][1])

            def fn(views):      # the output written where it is stored, no copy
                with np.errstate(all="ignore"):
                    op.run_into(*[get(views) for get in getters], out=views[slot].transpose(inv))
        else:
            def fn(views):
                with np.errstate(all="ignore"):
                    res = op.run(*[get(views) for get in getters])
                for spec, value in zip(outs, res):
                    if spec is not None:
                        store(views[spec[0]], np.asarray(value), spec[1])
        return [K.PyStep(node.name, node.op_type, fn)]

    # An op that computes in whatever layout its input has (Op.keeps_layout: LRN) writes its
    # output in that layout (None: the first read's); the others in logical order.
    out_perm = None if op.keeps_layout else (lambda perms, ctx: "identity")
    return Kernel(reads, writes, make_steps, out_perm=out_perm, label=f"float {node.op_type}",
                  node=node)


def _in_logical_order(src: str) -> dict:
    """Kernel layout arguments for a graph output computed element-wise from `src`: the input
    is put in the ONNX layout first, as bytes, and the output keeps it (no copy of the wider
    result afterwards)."""
    return {"layouts": {src: "identity"}, "out_perm": lambda perms, ctx: "identity"}


def quantize(src: str, y: QTensor) -> Kernel:
    """float32 activation -> its uint8 codes (a QuantizeLinear that no unit absorbed)."""
    def make_steps(ctx):
        n = int(np.prod(ctx.shape(src)))
        if n == 0:
            return []
        return [K.quantize_step(f"{y.name}:quantize", n, ctx.slot(src), ctx.slot(y.name),
                                float(y.scale), y.zero_point, y.qmin, y.qmax)]
    return Kernel([src], [y.name], make_steps, label="quantize")


def dequantize(x: QTensor, out: str, logical: bool = False) -> Kernel:
    """uint8 codes -> float32 (a DequantizeLinear read by a float op or a graph output).
    logical: the output is a graph output, wanted in the ONNX layout: the codes are put in that
    layout first, as lut_float does (one scale and zero point for the tensor, so the order of
    the two steps does not change a value). Relayout then dequantize moves a quarter of the
    bytes: a 7x7 stem + max pool with its 8 x 64 x 56 x 56 output, `qengine bench stem.onnx
    --threads 1 --batch 8`, 7.57 -> 6.13 ms."""
    def make_steps(ctx):
        n = int(np.prod(ctx.shape(out)))
        if n == 0:
            return []
        return [K.dequantize_step(f"{out}:dequantize", n, ctx.slot(x.name), ctx.slot(out),
                                  float(x.scale), x.zero_point)]
    layout = _in_logical_order(x.name) if logical else {}
    return Kernel([x.name], [out], make_steps, label="dequantize", **layout)


def sign_flip(src: str, dst: str, node=None) -> Kernel:
    """An int8 tensor of the graph <-> the kernels' uint8 copy (int8 + 128): x ^ 0x80 on the
    bytes, the same table both ways."""
    def make_steps(ctx):
        n = int(np.prod(ctx.shape(dst)))
        return [K.lut_step(f"{dst}:sign_flip", n, ctx.slot(src), ctx.slot(dst), _SIGN_FLIP,
                           "SignFlip")] if n else []
    return Kernel([src], [dst], make_steps, label="int8 <-> uint8", node=node)


def requantize(x: QTensor, y: QTensor) -> Kernel:
    """DequantizeLinear -> QuantizeLinear with other parameters: one exact table lookup."""
    table = requant_table(lambda v: v, x, y)

    def make_steps(ctx):
        n = int(np.prod(ctx.shape(y.name)))
        return [K.lut_step(f"{y.name}:requantize", n, ctx.slot(x.name), ctx.slot(y.name), table,
                           "Requantize")] if n else []
    return Kernel([x.name], [y.name], make_steps, label="requantize")


def _region(g: Graph, nodes: list):
    """The float function of an element-wise region: its nodes' references run in order on a
    flat array of dequantized source values, scalar constants from the graph."""
    ops = [make_op(n, g.opset) for n in nodes]
    out_name = nodes[-1].outputs[0]
    produced = {n.outputs[0] for n in nodes}

    def region(v):
        env = {}
        for n, op in zip(nodes, ops):
            args = []
            for i in n.inputs:
                if not i:
                    args.append(None)
                elif i in produced:
                    args.append(env[i])
                elif i in g.initializers:
                    args.append(g.initializers[i])
                else:
                    args.append(v)      # the dequantized source
            env[n.outputs[0]] = np.asarray(op.run(*args)[0], dtype=np.float32).reshape(-1)
        return env[out_name]
    return region


def lut(g: Graph, nodes: list, x: QTensor, y: QTensor) -> Kernel:
    """An element-wise region of one quantized input as one 256-entry table, exact with
    respect to the QDQ graph: table[c] = Q_y(region(DQ_x(c)))."""
    table = requant_table(_region(g, nodes), x, y)
    ops = "+".join(n.op_type for n in nodes)

    def make_steps(ctx):
        n = int(np.prod(ctx.shape(y.name)))
        return [K.lut_step(nodes[0].name, n, ctx.slot(x.name), ctx.slot(y.name), table, ops)] \
            if n else []
    return Kernel([x.name], [y.name], make_steps, label="lut " + ops, node=nodes[0],
                  lut_table=table, lut_ops=ops)


def lut_float(g: Graph, nodes: list, x: QTensor, logical: bool = False) -> Kernel:
    """An element-wise region of one quantized input whose output stays float (a model's
    last GELU or Sigmoid, kept float by output-aware quantization) as one 256-entry float32
    table: table[c] = region(DQ_x(c)), the values the region's float ops would compute from the
    dequantized input, looked up instead of computed per element. logical: the output is a
    graph output, wanted in the ONNX layout: the codes are put in that layout first (a
    relayout of bytes, not of the four times larger floats)."""
    table = float_table(_region(g, nodes), x)
    out = nodes[-1].outputs[0]
    ops = "+".join(n.op_type for n in nodes)

    def make_steps(ctx):
        n = int(np.prod(ctx.shape(out)))
        return [K.lut_f32_step(nodes[0].name, n, ctx.slot(x.name), ctx.slot(out), table, ops)] \
            if n else []
    layout = _in_logical_order(x.name) if logical else {}
    return Kernel([x.name], [out], make_steps, label="float lut " + ops, node=nodes[0], **layout)


_VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def movement(unit: Unit) -> Kernel:
    """A data-movement op on uint8: outputs share the input's parameters (else a table
    requantizes them). Reshape-like ops and Transposes become views where the layout allows;
    the rest run the op's numpy reference on the codes."""
    node, op = unit.node, unit.op
    x = unit.inputs[0]
    if not isinstance(x, QTensor) or any(isinstance(i, QTensor) for i in unit.inputs[1:]):
        return None
    consts = list(unit.inputs)
    if node.op_type == "Pad" and op.mode == "constant":
        # the constant pad value (attribute before opset 11, input 2 since) pads as its code
        if op.opset < 11:
            op.value = float(x.quantize(op.value))
        else:
            v = consts[2] if len(consts) > 2 and consts[2] is not None else np.float32(0)
            if not isinstance(v, np.ndarray) and not isinstance(v, np.floating):
                return None
            consts += [None] * (3 - len(consts))
            consts[2] = x.quantize(v).astype(np.uint8).reshape(np.shape(v))
    tables = [None if y is None or y.same_params(x) else requant_table(lambda v: v, x, y)
              for y in unit.outputs]
    writes = [y.name for y in unit.outputs if y is not None]
    same = all(t is None for t in tables)

    def out_perm(perms, ctx):
        p = perms[x.name]
        if node.op_type == "Transpose" and same:
            tp = op.perm if op.perm is not None else tuple(reversed(range(len(p))))
            return tuple(_compose_transpose(p, tuple(tp)))
        if node.op_type in _VIEW_OPS and same:
            return reshape_view_perm(ctx.shape(x.name), p, ctx.shape(writes[0]))
        return None

    def alias(ctx):
        return same and len(writes) == 1 and node.op_type in ("Transpose",) + _VIEW_OPS

    def make_steps(ctx):
        get = _reader(ctx, x.name)
        others = [(lambda views, c=c: c) if not isinstance(c, QTensor) else None
                  for c in consts[1:]]
        outs = [(ctx.slot(y.name)[0], ctx.perm(y.name), t) if y is not None else None
                for y, t in zip(unit.outputs, tables)]

        const_args = [o(None) if o else None for o in others]
        native = _gathers(ctx, node, op, x, unit.outputs, tables, const_args)
        if native is None:
            native = _strided_copies(ctx, node, op, x, unit.outputs, tables, const_args)
        if native is not None:
            return native

        def fn(views):
            res = op.run(get(views), *[o(views) if o else None for o in others])
            for spec, value in zip(outs, res):
                if spec is not None:
                    v = np.asarray(value)
                    if spec[2] is not None:
                        v = spec[2][v]
                    store(views[spec[0]], v, spec[1])
        return [K.PyStep(node.name, node.op_type, fn)]

    layouts = {}
    if node.op_type in _VIEW_OPS:
        # a reshape is a relabelling of the input's buffer when its layout allows it
        # (reshape_view_perm); else the input is first copied into the nearest layout that
        # does (reshape_layout), or into logical order
        def keep_if_viewable(ctx, have):
            return reshape_layout(ctx.shape(x.name), have, ctx.shape(writes[0]))
        layouts = {x.name: keep_if_viewable}
    return Kernel([x.name], writes, make_steps, layouts=layouts, out_perm=out_perm, alias=alias,
                  label=f"uint8 {node.op_type}", unit=unit)


def _strided_copies(ctx, node: Node, op, x: QTensor, outputs: list, tables: list,
                    consts: list):
    """Native steps for a movement op whose numpy reference returns views of its input
    (Transpose, Slice, Split, Squeeze...): each output is then a strided copy of the input's
    buffer, found by running the reference once on a probe array. None if any output is not
    such a view (or needs a requantizing table)."""
    if any(t is not None for t in tables):
        return None
    base = np.empty(ctx.physical_shape(x.name), np.uint8)
    try:
        res = op.run(logical_view(base, ctx.perm(x.name)), *consts)
    except Exception:
        return None
    start = base.__array_interface__["data"][0]
    steps = []
    for y, r in zip(outputs, res):
        if y is None:
            continue
        if not isinstance(r, np.ndarray) or r.size == 0 or not np.shares_memory(r, base) or \
                r.ndim > 8 or r.ndim == 0:
            return None
        v = r.transpose(ctx.perm(y.name)) if ctx.perm(y.name) != tuple(range(r.ndim)) else r
        offset = v.__array_interface__["data"][0] - start
        steps.append(K.strided_copy_step(f"{node.name}:{y.name}", tuple(v.shape),
                                         tuple(v.strides), offset, 1, ctx.slot(x.name),
                                         ctx.slot(y.name), op=node.op_type))
    return steps


def _gathers(ctx, node: Node, op, x: QTensor, outputs: list, tables: list, consts: list):
    """A native per-axis gather for nearest-neighbour resizing: the source index of every
    output index, per axis, found by running the op's reference on index probes (one per
    axis); None when the op is not such a separable gather here."""
    if node.op_type not in ("Resize", "Upsample") or len(outputs) != 1 or \
            outputs[0] is None or tables[0] is not None:
        return None
    y = outputs[0]
    shape, perm = ctx.shape(x.name), ctx.perm(x.name)
    if ctx.perm(y.name) != perm or len(shape) > 8:
        return None
    maps = []
    for k, n in enumerate(shape):
        idx = np.arange(n, dtype=np.float32).reshape([-1 if i == k else 1
                                                      for i in range(len(shape))])
        try:
            out = np.asarray(op.run(np.broadcast_to(idx, shape).copy(), *consts)[0])
        except Exception:
            return None
        line = out[tuple(slice(None) if i == k else 0 for i in range(len(shape)))]
        want = line.reshape([-1 if i == k else 1 for i in range(len(shape))])
        if out.shape != tuple(ctx.shape(y.name)) or not np.array_equal(
                out, np.broadcast_to(want, out.shape)):
            return None
        maps.append(line.astype(np.int64))
    return [K.gather_axes_step(node.name, ctx.physical_shape(x.name), [maps[p] for p in perm], 1,
                               ctx.slot(x.name), ctx.slot(y.name), op=node.op_type)]


def _compose_transpose(p_in: tuple, tp: tuple) -> list:
    """Layout of Transpose(tp)'s output when it aliases its input stored with perm p_in.
    Input physical axis k holds logical axis p_in[k]; output logical axis j is input logical
    axis tp[j]; so output perm[k] = the j with tp[j] == p_in[k]."""
    where = {a: j for j, a in enumerate(tp)}
    return [where[a] for a in p_in]


def reshape_view_perm(in_shape: tuple, in_perm: tuple, out_shape: tuple):
    """The layout (perm) under which a tensor of out_shape is the same buffer as one of
    in_shape stored with in_perm -- a reshape that moves no byte -- or None when there is none.
    numpy decides: a reshape of the strided logical view is attempted without copying."""
    phys = tuple(in_shape[p] for p in in_perm)
    strides = [1] * len(phys)
    for k in range(len(phys) - 2, -1, -1):
        strides[k] = strides[k + 1] * phys[k + 1]
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), phys, strides,
                                            writeable=False)
    try:
        view = logical_view(probe, tuple(in_perm)).reshape(out_shape, copy=False)
    except (ValueError, TypeError):
        return None
    # the output's physical order: its axes by decreasing stride. A size-1 axis may sit
    # anywhere; each goes just before the first larger axis that follows it logically, so a
    # batch of 1 gets the layout a larger batch gets (placed last, YOLO's head at batch 1 had
    # ended in a layout that only the batch axis told apart from the logical one, and its
    # float output was copied into the caller's array: 4% of the model)
    big = sorted((a for a in range(view.ndim) if view.shape[a] > 1),
                 key=lambda a: (-view.strides[a], a))
    ones = [a for a in range(view.ndim) if view.shape[a] <= 1]
    order = []
    for b in big:
        while ones and ones[0] < b:
            order.append(ones.pop(0))
        order.append(b)
    order += ones
    phys_view = view.transpose(order)
    expect = 1
    for d, s in zip(reversed(phys_view.shape), reversed(phys_view.strides)):
        if d > 1 and s != expect:
            return None
        expect *= d
    return tuple(order)


def _reshape_groups(in_shape: tuple, out_shape: tuple):
    """The input axes of a reshape in runs that become runs of output axes of the same size
    ((1, 28, 4, 56, 56) -> (1, 112, 56, 56): [0], [1, 2], [3], [4]), or None when the sizes do
    not factor that way."""
    groups, j = [], 0
    i = 0
    while i < len(in_shape):
        group, have = [i], in_shape[i]
        i += 1
        want = out_shape[j] if j < len(out_shape) else 1
        j += 1
        while have != want:
            if have < want and i < len(in_shape):
                have *= in_shape[i]
                group.append(i)
                i += 1
            elif have > want and j < len(out_shape):
                want *= out_shape[j]
                j += 1
            else:
                return None
        groups.append(group)
    return groups


def reshape_layout(in_shape: tuple, have: tuple, out_shape: tuple) -> tuple:
    """The layout a reshape's input should be stored in: `have` when the reshape is a view of
    it; else `have` with each run of merged axes brought together in logical order, when that
    makes it a view whose output is stored channels last, as the spatial kernels want a 4-D or
    larger tensor (ShuffleNet's channel shuffle, Reshape -> Transpose -> Reshape on NHWC
    storage: one per-pixel transpose, where a copy into logical order and another back to NHWC
    for the next conv had cost two full copies); else logical order, which the other readers
    of reshaped tensors (MatMul: attention's heads) want."""
    if reshape_view_perm(in_shape, have, out_shape) is not None:
        return tuple(have)
    groups = _reshape_groups(tuple(in_shape), tuple(out_shape))
    rank = len(out_shape)
    if groups is not None and rank >= 4:
        group_of = {a: k for k, g in enumerate(groups) for a in g}
        order, placed = [], set()
        for a in have:
            if group_of[a] not in placed:
                placed.add(group_of[a])
                order += groups[group_of[a]]
        channels_last = (0,) + tuple(range(2, rank)) + (1,)
        if reshape_view_perm(in_shape, tuple(order), out_shape) == channels_last:
            return tuple(order)
    return tuple(range(len(have)))


def same_order(shape: tuple, perm_a: tuple, perm_b: tuple) -> bool:
    """True when a tensor of `shape` stored with perm_a has the same bytes as stored with
    perm_b: the perms differ only in where they put size-1 axes (NCHW and NHWC of one channel,
    or of a batch of one with a moved batch axis). A relayout between them is a relabelling."""
    return [p for p in perm_a if shape[p] != 1] == [p for p in perm_b if shape[p] != 1]
