"""Quantization parameters and the affine map (normative: DESIGN.md, "Quantization semantics").

    q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)     x ~= scale * (q - zero_point)

Every float step is float32, in the order written, so the results equal tests/npref.py and the C
kernels (qe_quantize_f32_u8 / _s8) bit for bit. Parameter *choice* (qparams_from_range) follows
onnxruntime.quantization.compute_scale_zp: float64 arithmetic, the scale stored as float32.
See docs/quantization.md for the why of each rule.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import QuantizationError

__all__ = [
    "QParams", "int_range", "qparams_from_range", "quantize", "dequantize", "fake_quantize",
    "quantize_bias", "requant_multiplier", "QUANTIZE_KERNELS", "FAST_PATH_MIN_SIZE",
]

BITS = tuple(range(2, 9))   # activation / weight widths, all stored in 8-bit containers
BIAS_BITS = 32              # int32 bias (and accumulator) parameters
_F32_TINY = float(np.finfo(np.float32).tiny)
_I32 = np.iinfo(np.int32)


def _check_bits(bits, allowed=BITS) -> int:
    if (isinstance(bits, bool) or not isinstance(bits, (int, np.integer))
            or int(bits) not in allowed):
        raise QuantizationError(f"bits must be an integer in {min(allowed)}..{max(allowed)}"
                                f"{' or 32' if BIAS_BITS in allowed else ''}, got {bits!r}")
    return int(bits)


def int_range(bits: int = 8, signed: bool = False, narrow: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of a `bits`-wide integer; `narrow` drops the lowest code (int8: -127..127,
    uint8: 1..255), which makes a symmetric signed range exactly symmetric."""
    bits = _check_bits(bits, BITS + (BIAS_BITS,))
    if bits == BIAS_BITS and (not signed or narrow):
        raise QuantizationError("32-bit parameters are the int32 bias type: signed, not narrow")
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return qmin + int(bool(narrow)), qmax


@dataclass(frozen=True, eq=False)
class QParams:
    """Parameters of one quantized tensor.

    scale: float32, shape () per tensor or (C,) per axis; finite and > 0.
    zero_point: int32, same shape (a scalar is broadcast to the scale's shape), in [qmin, qmax].
    axis: None (per tensor) or the tensor axis the C entries run along (negative counts from the
    end). bits: 2..8 (8-bit storage) or 32 (int32 bias). signed / narrow: see int_range().
    The arrays are read-only, so a QParams can be shared and hashed.
    """
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None
    bits: int = 8
    signed: bool = False
    narrow: bool = False

    def __post_init__(self):
        def set_(name, value):   # frozen: fields are fixed here, once
            object.__setattr__(self, name, value)
        set_("bits", _check_bits(self.bits, BITS + (BIAS_BITS,)))
        set_("signed", bool(self.signed))
        set_("narrow", bool(self.narrow))
        qmin, qmax = int_range(self.bits, self.signed, self.narrow)
        try:
            scale = np.array(self.scale, dtype=np.float32)   # a copy: callers keep their arrays
        except (TypeError, ValueError) as e:
            raise QuantizationError(f"scale must be real numbers: {e}") from None
        if scale.ndim > 1:
            raise QuantizationError(f"scale must be a scalar or 1-D, got shape {scale.shape}")
        if scale.size == 0:
            raise QuantizationError("scale is empty")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise QuantizationError(f"scale must be finite and > 0, got {_short(scale)}")
        zp = np.asarray(self.zero_point)
        if zp.dtype.kind not in "iu":
            if zp.dtype.kind != "f" or not np.all(np.isfinite(zp)) or np.any(zp != np.rint(zp)):
                raise QuantizationError(f"zero_point must be integer, got {_short(zp)}")
        if zp.ndim > 1 or (zp.ndim == 1 and zp.shape != scale.shape):
            raise QuantizationError(f"zero_point shape {zp.shape} does not match scale shape "
                                    f"{scale.shape}")
        if zp.size and (zp.min() < qmin or zp.max() > qmax):
            raise QuantizationError(f"zero_point {_short(zp)} is outside [{qmin}, {qmax}]")
        zp = np.array(np.broadcast_to(zp, scale.shape), dtype=np.int32)
        if scale.ndim == 1:
            if isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer)):
                raise QuantizationError(f"per-axis parameters (scale shape {scale.shape}) need "
                                        f"an integer axis, got {self.axis!r}")
            set_("axis", int(self.axis))
        elif self.axis is not None:
            raise QuantizationError(f"axis={self.axis!r} given with a scalar scale; per-axis "
                                    "parameters take a 1-D scale")
        scale.setflags(write=False)
        zp.setflags(write=False)
        set_("scale", scale)
        set_("zero_point", zp)

    @property
    def qmin(self) -> int:
        return int_range(self.bits, self.signed, self.narrow)[0]

    @property
    def qmax(self) -> int:
        return int_range(self.bits, self.signed, self.narrow)[1]

    @property
    def dtype(self) -> type:
        """Storage type: uint8 / int8 for every width 2..8, int32 for bias."""
        if self.bits == BIAS_BITS:
            return np.int32
        return np.int8 if self.signed else np.uint8

    @property
    def is_per_axis(self) -> bool:
        return self.axis is not None

    @property
    def num_channels(self) -> int:
        return int(self.scale.size) if self.is_per_axis else 1

    @property
    def symmetric(self) -> bool:
        """Every zero point is the middle of the integer range (0 for signed, 128 for uint8)."""
        return bool(np.all(self.zero_point == _mid(self.qmin, self.qmax)))

    def representable_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The float values of qmin and qmax: inputs beyond them clamp."""
        return (np.float32(self.qmin - self.zero_point.astype(np.int64)) * self.scale,
                np.float32(self.qmax - self.zero_point.astype(np.int64)) * self.scale)

    def for_channel(self, i: int) -> "QParams":
        """The per-tensor parameters of channel i (per-tensor parameters return themselves)."""
        if not self.is_per_axis:
            return self
        if not -self.num_channels <= i < self.num_channels:
            raise QuantizationError(f"channel {i} out of range for {self.num_channels} channels")
        return QParams(self.scale[i], self.zero_point[i], None, self.bits, self.signed,
                       self.narrow)

    def _key(self):
        return (self.scale.shape, self.scale.tobytes(), self.zero_point.tobytes(), self.axis,
                self.bits, self.signed, self.narrow)

    def __eq__(self, other):
        return isinstance(other, QParams) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (f"QParams(scale={_short(self.scale)}, zero_point={_short(self.zero_point)}, "
                f"axis={self.axis}, bits={self.bits}, signed={self.signed}, "
                f"narrow={self.narrow})")


def _short(a) -> str:
    a = np.asarray(a)
    return np.array2string(a, threshold=6, edgeitems=2) if a.ndim else repr(a.item())


def _mid(qmin: int, qmax: int) -> int:
    """Zero point of a symmetric range: round_half_even((qmin + qmax) / 2) -- 0, or 128 for
    uint8 (as ONNX Runtime and PyTorch)."""
    return int(np.rint((qmin + qmax) / 2.0))


# ---- parameter choice ----------------------------------------------------------------------

def _range_arrays(min_, max_, axis):
    """Validated float32 range arrays: shape () per tensor, (C,) per axis."""
    try:
        lo = np.asarray(min_, dtype=np.float32)
        hi = np.asarray(max_, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise QuantizationError(f"range bounds must be real numbers: {e}") from None
    if lo.shape != hi.shape:
        raise QuantizationError(f"min shape {lo.shape} does not match max shape {hi.shape}")
    if axis is None and lo.ndim != 0:
        raise QuantizationError(f"a per-tensor range takes scalar bounds, got shape {lo.shape};"
                                " pass axis= for per-axis parameters")
    if axis is not None and (lo.ndim != 1 or lo.size == 0):
        raise QuantizationError(f"a per-axis range takes non-empty 1-D bounds, got shape "
                                f"{lo.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise QuantizationError(f"range must be finite, got min={_short(lo)} max={_short(hi)}")
    if np.any(lo > hi):
        raise QuantizationError(f"range min > max: min={_short(lo)} max={_short(hi)}")
    return lo, hi


def scale_zero_point(lo, hi, qmin: int, qmax: int, symmetric: bool):
    """Vectorized parameter choice (float64, as onnxruntime's compute_scale_zp); any shapes.

    The range is widened to hold 0 (so 0.0 is exact), or made [-absmax, absmax] when symmetric.
    scale = (hi - lo) / (qmax - qmin); zero_point = round(qmin - lo / scale), or the middle of
    [qmin, qmax] when symmetric. A range too small for a normal float32 scale (in particular
    [0, 0]) gets scale 1.0 and the zero point of the range [0, 0]. Returns float64 scale and
    zero point; callers store the scale as float32."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    if symmetric:
        hi = np.maximum(-lo, hi)
        lo = -hi
    scale = (hi - lo) / float(qmax - qmin)
    tiny = scale < _F32_TINY
    scale = np.where(tiny, 1.0, scale)
    if symmetric:
        zp = np.full(scale.shape, float(_mid(qmin, qmax)))
    else:
        zp = np.rint(qmin - np.where(tiny, 0.0, lo) / scale)
    return scale, np.clip(zp, qmin, qmax)


def qparams_from_range(min, max, bits: int = 8, signed: bool = False, symmetric: bool = False,
                       narrow: bool | None = None, axis: int | None = None) -> QParams:
    """QParams that cover [min, max] (scalars, or 1-D arrays with `axis`).

    Asymmetric (default): the range widened to include 0, scale = (max - min) / (qmax - qmin),
    zero_point = round(qmin - min / scale). Symmetric: zero_point = the middle of the integer
    range, scale = 2 * absmax / (qmax - qmin) -- for signed narrow ranges (the default when
    symmetric and signed) that is absmax / qmax. narrow=None means `symmetric and signed`."""
    bits = _check_bits(bits)
    if narrow is None:
        narrow = bool(symmetric and signed)
    lo, hi = _range_arrays(min, max, axis)
    qmin, qmax = int_range(bits, signed, narrow)
    scale, zp = scale_zero_point(lo, hi, qmin, qmax, symmetric)
    return QParams(scale.astype(np.float32), zp.astype(np.int32), axis, bits, signed, narrow)


# ---- the affine map --------------------------------------------------------------------------

# Optional C fast paths, keyed by storage dtype. Contract: fn(x, scale, zero_point, qmin, qmax)
# with x a C-contiguous float32 (n, C) array and scale float32 / zero_point int32 of length C
# (C = 1 per tensor) returns the (n, C) storage array, bit-identical to _quantize_ref (the C API
# qe_quantize_f32_u8 / _s8 has exactly this shape). The kernel bindings register themselves here;
# tests/quant/test_params.py checks every registered entry against the reference.
QUANTIZE_KERNELS: dict[type, Callable] = {}
FAST_PATH_MIN_SIZE = 1 << 15   # below this, numpy's per-call cost is small anyway


def _as_float32(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise QuantizationError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


def _axis_of(qp: QParams, shape: tuple) -> int | None:
    """The normalized tensor axis of per-axis parameters, checked against `shape`."""
    if not qp.is_per_axis:
        return None
    nd = len(shape)
    if not -nd <= qp.axis < nd:
        raise QuantizationError(f"axis {qp.axis} is out of range for a tensor of shape {shape}")
    ax = qp.axis % nd
    if shape[ax] != qp.num_channels:
        raise QuantizationError(f"tensor shape {shape} has {shape[ax]} entries on axis {ax} "
                                f"but the parameters have {qp.num_channels} channels")
    return ax


def _broadcast(a: np.ndarray, ax: int | None, ndim: int) -> np.ndarray:
    """Per-axis parameter vector shaped to broadcast along axis `ax` of an ndim tensor."""
    if ax is None:
        return a
    shape = [1] * ndim
    shape[ax] = a.size
    return a.reshape(shape)


def _quantize_ref(x, scale, zp, qmin: int, qmax: int, dtype) -> np.ndarray:
    """The reference map, step for step as tests/npref.py: v = x / scale (float32); NaN -> 0;
    clamp to [qmin - zp, qmax - zp] (integers, so clamping before rounding equals clamping
    after; +-inf clamp to qmax / qmin); round half to even; add zp."""
    with np.errstate(over="ignore"):           # x / tiny scale -> inf, which then clamps
        v = np.asarray(np.divide(x, scale, dtype=np.float32))
    v[np.isnan(v)] = 0
    zp = np.asarray(zp, dtype=np.int64)
    np.clip(v, (qmin - zp).astype(np.float32), (qmax - zp).astype(np.float32), out=v)
    np.rint(v, out=v)
    v += zp.astype(np.float32)   # exact: small integers
    return v.astype(dtype)


def _quantize_int32(x, scale, zp, qmin: int, qmax: int, dtype) -> np.ndarray:
    """The int32 (bias) map: as _quantize_ref but in float64 -- the division as onnxruntime
    quantizes biases, the clamp because int32 bounds are not float32-exact."""
    with np.errstate(over="ignore"):
        v = np.asarray(np.divide(x, scale, dtype=np.float64))
    v[np.isnan(v)] = 0
    zp = np.asarray(zp, dtype=np.int64)
    np.clip(v, (qmin - zp).astype(np.float64), (qmax - zp).astype(np.float64), out=v)
    return (np.rint(v).astype(np.int64) + zp).astype(np.int32)


def quantize(x, qp: QParams) -> np.ndarray:
    """q = clamp(round_half_even(float32(x) / scale) + zero_point, qmin, qmax), in qp.dtype.
    Per-axis parameters broadcast along qp.axis. NaN maps to the zero point, +inf to qmax and
    -inf to qmin (as the C kernels). int32 (bias) parameters divide in float64, as
    quantize_bias."""
    x = _as_float32(x, "x")
    ax = _axis_of(qp, x.shape)
    kernel = QUANTIZE_KERNELS.get(qp.dtype)
    if kernel is not None and x.size >= FAST_PATH_MIN_SIZE and ax in (None, x.ndim - 1):
        rows = np.ascontiguousarray(x).reshape(-1, qp.num_channels)
        return kernel(rows, qp.scale.reshape(-1), qp.zero_point.reshape(-1),
                      qp.qmin, qp.qmax).reshape(x.shape)
    ref = _quantize_int32 if qp.bits == BIAS_BITS else _quantize_ref
    return ref(x, _broadcast(qp.scale, ax, x.ndim), _broadcast(qp.zero_point, ax, x.ndim),
               qp.qmin, qp.qmax, qp.dtype)


def dequantize(q, qp: QParams) -> np.ndarray:
    """float32(q - zero_point) * scale (float32), broadcast along qp.axis. Codes are not checked
    against [qmin, qmax]: any integer array is accepted, as ONNX DequantizeLinear does."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise QuantizationError(f"quantized values must be an integer array, got dtype {q.dtype}")
    ax = _axis_of(qp, q.shape)
    zp = _broadcast(qp.zero_point.astype(np.int64), ax, q.ndim)
    d = (q.astype(np.int64) - zp).astype(np.float32)
    return np.multiply(d, _broadcast(qp.scale, ax, q.ndim), dtype=np.float32)


def fake_quantize(x, qp: QParams) -> np.ndarray:
    """dequantize(quantize(x)): the float32 value the int8 model sees (NaN becomes 0.0)."""
    return dequantize(quantize(x, qp), qp)


# ---- bias and requantization -----------------------------------------------------------------

def _scales(s, name: str, allow_vector: bool) -> np.ndarray:
    if isinstance(s, QParams):
        s = s.scale
    a = np.asarray(s, dtype=np.float32)
    if a.ndim > (1 if allow_vector else 0) or a.size == 0:
        raise QuantizationError(f"{name} must be a {'scalar or 1-D' if allow_vector else 'scalar'}"
                                f" scale, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise QuantizationError(f"{name} must be finite and > 0, got {_short(a)}")
    return a


def quantize_bias(bias, input_scale, weight_scales) -> tuple[np.ndarray, QParams]:
    """int32 bias for an int32 accumulator: scale[c] = float32(s_in * s_w[c]) (float32 product),
    zero point 0, q = clamp(round_half_even(float64(b) / float64(scale)), int32). The division
    is float64 as onnxruntime's quantizer does; values beyond int32 clamp with a warning (the
    weight scale is then too small for this bias). Scales may be QParams."""
    b = _as_float32(bias, "bias")
    s_in = _scales(input_scale, "input_scale", False)
    s_w = _scales(weight_scales, "weight_scales", True)
    if b.ndim != 1 or (s_w.ndim == 1 and s_w.size != b.size):
        raise QuantizationError(f"bias must be 1-D with one entry per weight scale (or a scalar "
                                f"weight scale); got bias shape {b.shape}, weight scales shape "
                                f"{s_w.shape}")
    if not np.all(np.isfinite(b)):
        raise QuantizationError("bias has NaN or Inf values")
    scale = s_in * s_w                       # float32 product, as the kernels and ORT
    if np.any(scale < _F32_TINY):
        raise QuantizationError(f"bias scale s_in * s_w underflows float32 ({_short(scale)})")
    qp = QParams(scale, np.zeros(scale.shape, np.int32), 0 if scale.ndim else None, BIAS_BITS,
                 True, False)
    q = quantize(b, qp)
    ratio = np.abs(b.astype(np.float64) / np.broadcast_to(scale, b.shape))
    clipped = int(np.count_nonzero(ratio > _I32.max + 0.5))
    if clipped:
        warnings.warn(f"{clipped} bias value(s) exceed int32 at scale s_in * s_w and were "
                      "clamped: the weight scale is too small for this bias", RuntimeWarning,
                      stacklevel=2)
    return q, qp


def requant_multiplier(input_scale, weight_scales, output_scale) -> np.ndarray:
    """m[c] = s_in * s_w[c] / s_out, float32 throughout and in that order (as the kernels, ONNX's
    reference and ONNX Runtime): bit-exactness with foreign models depends on it. Returns a
    float32 array shaped like weight_scales. Scales may be QParams."""
    s_in = _scales(input_scale, "input_scale", False)
    s_w = _scales(weight_scales, "weight_scales", True)
    s_out = _scales(output_scale, "output_scale", False)
    m = np.divide(s_in * s_w, s_out, dtype=np.float32)
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise QuantizationError(f"requantization multiplier s_in * s_w / s_out overflows or "
                                f"underflows float32 ({_short(m)})")
    return np.asarray(m, dtype=np.float32)


def _register_c_kernels() -> None:
    """The C quantize kernels as the fast path (same bits as _quantize_ref; tested)."""
    try:
        from .. import _kernels
    except ImportError:   # a source tree without the built extension: numpy only
        return

    def make(dtype):
        def kernel(rows, scale, zero_point, qmin, qmax):
            s = scale if scale.size > 1 else scale.reshape(())
            z = zero_point if zero_point.size > 1 else zero_point.reshape(())
            return _kernels.quantize(rows, s, z, dtype=dtype, qmin=qmin, qmax=qmax)
        return kernel
    QUANTIZE_KERNELS[np.uint8] = make(np.uint8)
    QUANTIZE_KERNELS[np.int8] = make(np.int8)


_register_c_kernels()
