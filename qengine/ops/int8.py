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

__all__ = ["QTensor", "QConst", "Unit", "Kernel", "BuildContext", "NHWC", "identity",
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


def requant_table(fn: Callable[[np.ndarray], np.ndarray], x: QTensor, y: QTensor) -> np.ndarray:
    """The 256-entry table of y = Q(fn(DQ(x))): exact for any element-wise fn."""
    codes = np.arange(256, dtype=np.uint8)
    with np.errstate(all="ignore"):
        v = np.asarray(fn(x.dequantize(codes)), dtype=np.float32)
    return y.quantize(v)


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
    layouts: tensor name -> the physical layout (perm) the item needs that input in; absent
    means any. out_perm(perms): the outputs' layout given the inputs' ({name: perm}); None means
    the first read's layout where ranks agree, else the identity. alias: the single output is
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
