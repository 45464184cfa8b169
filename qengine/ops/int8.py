"""The int8 lowering interface: what the compiler (runtime/plan.py) hands an op's `lower_int8`,
and what `lower_int8` returns.

The compiler finds node units in a QDQ graph -- an op whose activation inputs are dequantized
uint8 tensors and whose outputs are quantized (optionally through a fused Relu/Clip) -- and
asks the op for a `Kernel`: an object that states the memory layouts it needs and then, for
each concrete input shape, makes the steps that run it (prebound native kernel calls, or
Python steps on uint8 arrays). `lower_int8` returns None when this instance cannot run in
int8 (unsupported attributes, types or parameters); the unit then runs in float, which is
always correct because the QDQ graph defines the semantics.

Quantized activations are uint8 with a per-tensor scale and zero point (`QTensor`); an int8
tensor of the graph is held as uint8 = int8 + 128 with its zero point shifted alike, so every
kernel sees one type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..graph import Node
from ..quant.params import QParams

__all__ = ["QTensor", "QConst", "FloatOut", "Unit", "Kernel", "BuildContext", "NHWC", "identity",
           "clamp_of", "requant_table"]

NHWC = (0, 2, 3, 1)   # physical = logical.transpose(NHWC) for a 4-D NCHW tensor


def identity(rank: int) -> tuple:
    return tuple(range(rank))


@dataclass(frozen=True)
class QTensor:
    """A quantized activation as kernels hold it: uint8, one scale, one zero point; values
    stay in [qmin, qmax] (narrower than 0..255 for bit widths below 8)."""
    name: str
    scale: np.float32
    zero_point: int
    qmin: int = 0
    qmax: int = 255
    shift: int = 0          # 128: the graph's type is int8 (stored here as uint8 = int8 + 128)

    def same_params(self, other: "QTensor") -> bool:
        return (self.scale == other.scale and self.zero_point == other.zero_point and
                self.qmin == other.qmin and self.qmax == other.qmax)

    def quantize(self, v) -> np.ndarray:
        """Float values to this tensor's uint8 codes (the QuantizeLinear map)."""
        x = np.asarray(v, dtype=np.float32) / self.scale
        x = np.where(np.isnan(x), np.float32(0), x)
        x = np.clip(x, np.float32(self.qmin - self.zero_point), np.float32(self.qmax - self.zero_point))
        return (np.rint(x).astype(np.int32) + self.zero_point).astype(np.uint8)

    def dequantize(self, q) -> np.ndarray:
        return (np.asarray(q, dtype=np.int32) - self.zero_point).astype(np.float32) * self.scale


@dataclass(frozen=True)
class FloatOut:
    """A unit output that no QuantizeLinear reads: the kernel writes float32 directly."""
    name: str


@dataclass(frozen=True)
class QConst:
    """A constant behind a DequantizeLinear: its stored integers and parameters."""
    name: str
    values: np.ndarray
    qparams: QParams


@dataclass
class Unit:
    """One node lowered as a whole: inputs per node input slot are QTensor (a dequantized
    activation), QConst, np.ndarray (a plain constant), or None (omitted); outputs per node
    output are QTensor (quantized right after, through the fused Relu/Clip if any)."""
    node: Node
    op: object
    inputs: list
    outputs: list
    fused: Optional[Node] = None          # the Relu / Clip folded into the output clamp
    fused_bounds: tuple = (None, None)    # its float bounds (None: unbounded)
    cache: dict = field(default_factory=dict)  # shared by every input shape's plan (packing)
    graph: object = None                  # the concrete graph (shapes of every tensor)

    def shape(self, name: str) -> Optional[tuple]:
        """The concrete shape of a tensor of the unit (None if unknown)."""
        v = self.graph.value(name) if self.graph is not None else None
        return v.shape if v is not None and v.is_static else None

    @property
    def name(self) -> str:
        return self.node.name


def clamp_of(unit: Unit, out: QTensor) -> tuple[int, int]:
    """The output clamp in uint8 codes: the tensor's range narrowed by a fused Relu / Clip."""
    lo, hi = out.qmin, out.qmax
    if unit.fused_bounds[0] is not None:
        lo = max(lo, int(out.quantize(unit.fused_bounds[0])))
    if unit.fused_bounds[1] is not None:
        hi = min(hi, int(out.quantize(unit.fused_bounds[1])))
    return lo, max(lo, hi)


def weight_int8(w: QConst, axis: int):
    """(int8 values, per-channel zero points or None, per-channel float32 scales) of a
    quantized weight; uint8 weights shift to int8 (values and zero points minus 128).
    None when the weight's parameters are not per tensor or along `axis`."""
    qp = w.qparams
    if qp.bits != 8:
        return None
    v = w.values
    n = v.shape[axis]
    if qp.is_per_axis and (qp.axis % v.ndim) != (axis % v.ndim):
        return None
    scales = np.broadcast_to(qp.scale, (n,)).astype(np.float32)
    zps = np.broadcast_to(qp.zero_point, (n,)).astype(np.int32)
    if v.dtype == np.uint8:
        v = (v.astype(np.int16) - 128).astype(np.int8)
        zps = zps - 128
    elif v.dtype != np.int8:
        return None
    return v, (None if not zps.any() else zps), scales


def bias_int32(b, s_x: np.float32, s_w: np.ndarray) -> Optional[np.ndarray]:
    """The int32 accumulator bias for output channels with scales s_x * s_w: a QConst int32
    bias is used as is when its scale is exactly s_x * s_w (as quantizers write it), else
    rescaled; a float bias is quantized here."""
    if b is None:
        return None
    acc_scale = (np.float32(s_x) * s_w).astype(np.float32)
    if isinstance(b, QConst):
        if b.values.dtype == np.int32 and np.array_equal(
                np.broadcast_to(b.qparams.scale, acc_scale.shape), acc_scale) and \
                not b.qparams.zero_point.any():
            return np.broadcast_to(b.values.reshape(-1), acc_scale.shape).astype(np.int32)
        real = (b.values.astype(np.float64) - b.qparams.zero_point) * b.qparams.scale
    else:
        real = np.asarray(b, dtype=np.float64)
    q = np.rint(np.broadcast_to(real.reshape(-1), acc_scale.shape) / acc_scale.astype(np.float64))
    return np.clip(q, -2**31, 2**31 - 1).astype(np.int32)


def output_args(unit: Unit, x_scale, s_w: np.ndarray, y) -> Optional[dict]:
    """The output-pipeline arguments of a GEMM/conv step with per-channel weight scales s_w:
    requantize into a QTensor (multipliers s_x * s_w / s_y, zero point, fused clamp), or
    dequantize into a FloatOut (scales s_x * s_w). None if the multipliers overflow."""
    from ..quant.params import requant_multiplier
    if isinstance(y, FloatOut):
        scale = (np.float32(x_scale) * s_w).astype(np.float32)
        return {"out": "f32", "scale": scale} if np.all(np.isfinite(scale)) else None
    try:
        mult = requant_multiplier(x_scale, s_w, y.scale)
    except Exception:
        return None
    qmin, qmax = clamp_of(unit, y)
    return {"out": "u8", "scale": mult, "zero_point": y.zero_point, "qmin": qmin, "qmax": qmax}


def float_table(fn: Callable[[np.ndarray], np.ndarray], x: QTensor) -> np.ndarray:
    """The 256 float32 values fn(DQ(x)) of an element-wise fn, one per code of x."""
    codes = np.arange(256, dtype=np.uint8)
    with np.errstate(all="ignore"):
        return np.asarray(fn(x.dequantize(codes)), dtype=np.float32)


def requant_table(fn: Callable[[np.ndarray], np.ndarray], x: QTensor, y: QTensor) -> np.ndarray:
    """The 256-entry table of y = Q(fn(DQ(x))): exact for any element-wise fn."""
    return y.quantize(float_table(fn, x))


class BuildContext:
    """What a Kernel sees when it makes its steps for one input shape (runtime/plan.py)."""

    def shape(self, name: str) -> tuple:          # logical (ONNX) shape
        raise NotImplementedError

    def perm(self, name: str) -> tuple:           # physical = logical.transpose(perm)
        raise NotImplementedError

    def slot(self, name: str) -> int:             # the buffer slot of the tensor
        raise NotImplementedError

    def physical_shape(self, name: str) -> tuple:
        s, p = self.shape(name), self.perm(name)
        return tuple(s[i] for i in p)


@dataclass
class Kernel:
    """One item of a compiled model: a lowered unit, or glue (quantize, dequantize, a float op).

    reads / writes: the tensors it reads and writes (quantized tensors by their storage name).
    layouts: tensor name -> the physical layout (perm) the item needs that input in: a perm,
    "identity", "same_as:<tensor>", or a function (ctx, current perm) -> perm; absent means any.
    out_perm(perms, ctx): the outputs' layout given the inputs' ({name: perm}); None (or no
    out_perm) means the first read's layout where ranks agree, else the identity. alias: the single output is
    a view of reads[0] (a Reshape on contiguous data, a Transpose that relabels axes): no step.
    make_steps(ctx) gives the steps for one input shape. nbytes: packed weight bytes."""
    reads: list
    writes: list
    make_steps: Optional[Callable] = None
    layouts: dict = field(default_factory=dict)
    out_perm: Optional[Callable] = None
    alias: Optional[Callable] = None      # alias(ctx) -> True when the output can be a view
    label: str = ""
    unit: Optional[Unit] = None
    nbytes: int = 0
    node: Optional[Node] = None           # the graph node it runs (glue: the Q/DQ/float node)
    remap: dict = field(default_factory=dict)  # set by the planner: name -> renamed tensor
    fused_nodes: list = field(default_factory=list)  # later nodes it also runs (lower_native)
    precision: str = "int8"   # what the kernel computes in: "int8", or "float" (a native float op)
    lut_table: Optional[np.ndarray] = None  # a lookup region (glue.lut): its 256-entry table
    lut_ops: str = ""                       # ... and the ops it runs ("HardSwish", "Mul+Sigmoid")
    # with_lut(table, dst, ops): the same kernel writing table[its uint8 output] into tensor
    # dst (lowering's lookup fusion); None where the kernel cannot apply a table
    with_lut: Optional[Callable] = None
    # with_maxpool(pool, dst): the same kernel with a max pool over its uint8 output, writing
    # the pooled tensor dst (lowering's pool fusion; pool = a MaxPool's maxpool_window), or
    # None where it cannot at this model's shapes; the attribute is None where it never can
    with_maxpool: Optional[Callable] = None
    # a MaxPool that only moves bytes (no requantization): maxpool_window(ctx) gives its
    # window for conv_step(maxpool=...)
    maxpool_window: Optional[Callable] = None
    # an Add of a constant row vector to its one activation (a bias after a MatMul): the
    # parameters of gemm_step(row_add=...), "values" the N uint8 codes of the vector
    row_add: Optional[dict] = None
    # with_row_add(row_add, dst): the same GEMM with that Add in its tasks, writing dst
    # (lowering's bias fusion); None where the kernel cannot
    with_row_add: Optional[Callable] = None
