"""The op registry: one class per operator, found by (domain, op type, opset version).

An op class gathers what qengine knows of one operator:

- ``parse(attrs)``   read and validate the node's attributes (errors name node and attribute);
- ``infer(ins, consts)``  the shape/dtype rule: output (shape, dtype) pairs from the input
  :class:`~qengine.graph.Value` s and, where an input is constant, its array;
- ``run(*arrays)``   the float reference in numpy (convolution and matmul through BLAS);
- ``fold_static(ins)``  optional: outputs computable from input *shapes* alone (Shape, Size);
- ``lower_int8``     reserved for the int8 pipeline: the method that lowers this op to int8
  kernels joins the class there (its signature is that issue's to define). None means
  "no int8 lowering": the op runs in float behind Q/DQ.

One instance is made per node when a graph is prepared (attributes parsed once), then run many
times. Register with ``@register("Conv")`` (several op types may share one class, which then
dispatches on ``self.op_type``); ``since``/``until`` bound the opset versions a class serves.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from ..errors import ModelError, UnsupportedOpError
from ..graph import Node, Value

__all__ = ["Op", "Attrs", "register", "get_op", "make_op", "supported_ops", "ONNX_DTYPES",
           "dtype_from_onnx", "onnx_from_dtype", "OutSpec"]

OutSpec = tuple  # (shape, dtype) that a shape rule returns per output

# ONNX TensorProto.DataType codes that have a numpy dtype (a public, frozen enumeration).
ONNX_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8),
    4: np.dtype(np.uint16), 5: np.dtype(np.int16), 6: np.dtype(np.int32),
    7: np.dtype(np.int64), 9: np.dtype(np.bool_), 10: np.dtype(np.float16),
    11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
ONNX_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128",
                   16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                   20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1",
                   24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2"}
_CODE_OF = {v: k for k, v in ONNX_DTYPES.items()}


def dtype_from_onnx(code: int, what: str = "tensor") -> np.dtype:
    """numpy dtype of an ONNX element type; ModelError for types qengine does not handle."""
    try:
        return ONNX_DTYPES[int(code)]
    except (KeyError, TypeError, ValueError):
        name = ONNX_TYPE_NAMES.get(code, str(code))
        raise ModelError(f"{what}: element type {name} is not supported (qengine handles "
                         f"float16/32/64, int8..64, uint8..64 and bool)") from None


def onnx_from_dtype(dtype) -> int:
    return _CODE_OF[np.dtype(dtype)]


_REQUIRED = object()


class Attrs:
    """Typed, validated access to a node's attributes; every error names node and attribute."""

    def __init__(self, node: Node, op: str):
        self._node, self._op, self._d = node, op, node.attrs

    def _fail(self, key: str, msg: str) -> ModelError:
        return ModelError(f"node {self._node.name!r} ({self._op}): attribute {key!r} {msg}")

    def _get(self, key, default):
        if key in self._d:
            return self._d[key]
        if default is _REQUIRED:
            raise self._fail(key, "is required")
        return default

    def has(self, key: str) -> bool:
        return key in self._d

    def int(self, key: str, default: Any = _REQUIRED, lo=None, hi=None):
        v = self._get(key, default)
        if v is None or v is default:
            return v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self._fail(key, f"must be an integer, got {v!r}")
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self._fail(key, f"must lie in [{lo}, {hi}], got {v}")
        return v

    def float(self, key: str, default: Any = _REQUIRED):
        v = self._get(key, default)
        if v is None or v is default:
            return v
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
            raise self._fail(key, f"must be a float, got {v!r}")
        return float(v)

    def str(self, key: str, default: Any = _REQUIRED, choices: Optional[Sequence[str]] = None):
        v = self._get(key, default)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if v is None or v is default:
            return v
        if not isinstance(v, str):
            raise self._fail(key, f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self._fail(key, f"must be one of {list(choices)}, got {v!r}")
        return v

    def ints(self, key: str, default: Any = _REQUIRED, length: Optional[int] = None,
             lo: Optional[int] = None):
        v = self._get(key, default)
        if v is None or v is default:
            return v
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
            raise self._fail(key, f"must be a list of integers, got {v!r}")
        v = [int(x) for x in v]
        if length is not None and len(v) != length:
            raise self._fail(key, f"must have {length} values, got {len(v)}")
        if lo is not None and any(x < lo for x in v):
            raise self._fail(key, f"values must be >= {lo}, got {v}")
        return v

    def floats(self, key: str, default: Any = _REQUIRED):
        v = self._get(key, default)
        if v is None or v is default:
            return v
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(x, (int, float, np.integer, np.floating)) for x in v):
            raise self._fail(key, f"must be a list of floats, got {v!r}")
        return [float(x) for x in v]

    def tensor(self, key: str, default: Any = _REQUIRED):
        v = self._get(key, default)
        if v is None or v is default:
            return v
        if not isinstance(v, np.ndarray):
            raise self._fail(key, f"must be a tensor, got {type(v).__name__}")
        return v


class Op:
    """Base class of every operator; see the module docstring for the contract.

    ``n_inputs``/``n_outputs`` are (min, max) counts of node inputs/outputs (max None:
    variadic), checked when the op is made. Inputs arrive at ``run`` as arrays, None for an
    omitted optional input; ``run`` returns a tuple with one array per node output (optional
    outputs the node does not name may be returned as None).
    """

    op_type: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    n_inputs: ClassVar[tuple] = (1, 1)
    n_outputs: ClassVar[tuple] = (1, 1)
    #: False for ops that constant folding must leave in place (e.g. DequantizeLinear of an
    #: int8 weight: the int8 pipeline reads that pattern).
    foldable: ClassVar[bool] = True
    #: the int8 lowering hook, added by the int8 pipeline (None: float fallback).
    lower_int8 = None
    #: How the int8 pipeline treats the op (quant/qdq.py decides with it, runtime/plan.py
    #: lowers accordingly); see int8_kind() and docs/pipeline.md:
    #:   "compute"  an int8 kernel computes it; its output gets QParams of its own
    #:   "movement" it moves or selects elements without arithmetic, so it runs on uint8 and
    #:              its outputs keep its input's QParams (Reshape, Transpose, MaxPool, ...)
    #:   "join"     Concat-like: each input is requantized to the output's QParams
    #:   None       float (its quantized inputs are dequantized first)
    int8_role: ClassVar[Optional[str]] = None
    #: True when out[i] = f(in[i]) given scalar constants: the op can join a lookup-table
    #: region (any chain of such ops on one quantized input becomes one 256-entry table).
    elementwise: ClassVar[bool] = False
    #: True when the int8 form can write a float output directly (a dequantizing epilogue),
    #: so an output read only by float ops or the caller is never quantized.
    int8_float_output: ClassVar[bool] = False
    #: True when run() computes in whatever memory layout its one input has and returns its
    #: output in that layout, shaped as the input (LRN): the executor then stores that output
    #: in its input's layout instead of copying it to logical order, and calls the op's
    #: run_into(*inputs, out=the stored output's logical view) where the op defines one.
    keeps_layout: ClassVar[bool] = False

    def int8_kind(self) -> Optional[str]:
        """The int8 role of this node (attributes may rule one out: overridden where so)."""
        return self.int8_role

    def __init__(self, node: Node, opset: int):
        self.node, self.opset = node, opset
        self.op_type = node.op_type
        lo, hi = self.n_inputs
        n_in = len(node.inputs)
        while n_in and not node.inputs[n_in - 1]:
            n_in -= 1   # trailing omitted optional inputs do not count
        if n_in < lo or (hi is not None and n_in > hi):
            raise self.error(f"expects {lo}..{'any' if hi is None else hi} inputs, "
                             f"got {len(node.inputs)}")
        for i in range(lo):
            if not node.inputs[i]:
                raise self.error(f"required input {i} is missing")
        lo, hi = self.n_outputs
        if not lo <= len(node.outputs) <= hi or not node.outputs[0]:
            raise self.error(f"expects {lo}..{hi} outputs, got {len(node.outputs)}")
        self.parse(Attrs(node, node.op_type))

    @property
    def name(self) -> str:
        return self.node.name

    def error(self, msg: str) -> ModelError:
        return ModelError(f"node {self.node.name!r} ({self.node.op_type}): {msg}")

    def wants(self, k: int) -> bool:
        """True when the node names its k-th output (optional outputs may be skipped)."""
        return k < len(self.node.outputs) and bool(self.node.outputs[k])

    # -- the contract (overridden per op) -------------------------------------------------------
    def parse(self, a: Attrs) -> None:
        """Read and validate attributes into fields of self."""

    def infer(self, ins: list[Value], consts: list[Optional[np.ndarray]]) -> list[OutSpec]:
        """Output (shape, dtype) per node output; shape None / dims None where unknown.
        Default: unknown shapes, the dtype of the first input."""
        dt = ins[0].dtype if ins else None
        return [(None, dt)] * len(self.node.outputs)

    def run(self, *xs: Optional[np.ndarray]) -> tuple:
        raise NotImplementedError

    def fold_static(self, ins: list[Value]) -> Optional[tuple]:
        """Outputs computable from input shapes alone (None if they are not)."""
        return None


_REGISTRY: dict[tuple[str, str], list[tuple[int, Optional[int], type]]] = {}
_NEWEST = 10 ** 6    # the version an op sees when the graph imports none for its domain


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(*op_types: str, domain: str = "", since: int = 1, until: Optional[int] = None):
    """Class decorator: serve ``op_types`` of ``domain`` for opset versions since..until."""
    def deco(cls):
        for t in op_types:
            _REGISTRY.setdefault((_norm_domain(domain), t), []).append((since, until, cls))
        if not cls.op_type:
            cls.op_type = op_types[0]
        return cls
    return deco


def get_op(op_type: str, domain: str = "", opset: Optional[int] = None, node: str = "") -> type:
    """The class serving ``op_type`` at ``opset`` (any version if None); UnsupportedOpError
    naming op, domain and node when there is none."""
    entries = _REGISTRY.get((_norm_domain(domain), op_type))
    if not entries:
        raise UnsupportedOpError(op_type, domain, node)
    for since, until, cls in entries:
        if opset is None or (opset >= since and (until is None or opset <= until)):
            return cls
    spans = ", ".join(f"{lo}..{'' if hi is None else hi}" for lo, hi, _ in entries)
    raise UnsupportedOpError(op_type, domain, node,
                             f"opset {opset} is not supported (qengine handles {spans})")


def make_op(node: Node, opset: dict) -> Op:
    """Instantiate the op for ``node`` given the graph's opset map (attributes parsed)."""
    dom = _norm_domain(node.domain)
    version = opset.get(dom, opset.get("ai.onnx") if dom == "" else None)
    cls = get_op(node.op_type, dom, version, node.name)
    return cls(node, version if version is not None else _NEWEST)


def supported_ops(domain: str = "") -> list[str]:
    return sorted(t for (d, t) in _REGISTRY if d == _norm_domain(domain))

