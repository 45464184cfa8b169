# Element-wise uint8 kernels: add / mul with requantization (full, per-channel or scalar b),
# requantize into a strided output (Concat), 256-entry lookup, quantize and dequantize.

cdef extern from "qe_kernels.h" nogil:
    ctypedef struct qe_binary_params:
        int32_t a_zp, b_zp, y_zp
        float a_mult, b_mult
        int32_t qmin, qmax
    int qe_add_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b,
                  size_t b_row_stride, int b_scalar, const qe_binary_params *p, uint8_t *y)
    int qe_mul_u8(size_t rows, size_t cols, const uint8_t *a, const uint8_t *b,
                  size_t b_row_stride, int b_scalar, const qe_binary_params *p, uint8_t *y)
    int qe_requantize_u8(size_t rows, size_t cols, const uint8_t *x, size_t ldx, int32_t x_zp,
                         float mult, int32_t y_zp, int32_t qmin, int32_t qmax, uint8_t *y,
                         size_t ldy)
    int qe_lut_u8(size_t n, const uint8_t *x, const uint8_t *table, uint8_t *y)
    int qe_lut_u8_f32(size_t n, const uint8_t *x, const float *table, float *y)
    int qe_quantize_f32_u8(size_t n, size_t channels, const float *x, const float *scale,
                           const int32_t *zp, int32_t qmin, int32_t qmax, uint8_t *y)
    int qe_quantize_f32_s8(size_t n, size_t channels, const float *x, const float *scale,
                           const int32_t *zp, int32_t qmin, int32_t qmax, int8_t *y)
    int qe_dequantize_u8_f32(size_t n, size_t channels, const uint8_t *x, const float *scale,
                             const int32_t *zp, float *y)
    int qe_dequantize_s8_f32(size_t n, size_t channels, const int8_t *x, const float *scale,
                             const int32_t *zp, float *y)
    int qe_dequantize_s32_f32(size_t n, size_t channels, const int32_t *x, const float *scale,
                              float *y)


cdef extern from "eltwise/eltwise.h" nogil:
    void qe_lut_disable_vbmi(int off)


def _lut_disable_vbmi(off):
    """Test hook: make the AVX-512 table lookup ignore VBMI (True) or use it again (False)."""
    qe_lut_disable_vbmi(1 if off else 0)


cdef inline uintptr_t _addr(a):
    return a.__array_interface__["data"][0]


cdef object _same_buffer(y, a):
    return (isinstance(a, np.ndarray) and a.flags.c_contiguous and y.shape == a.shape and
            _addr(y) == _addr(a))


cdef object _elementwise_output(y, tuple shape, dtype, inputs):
    """A new C-contiguous output, or y checked: dtype, shape, contiguous, writable, and either
    exactly one of the inputs (in place) or overlapping none."""
    if y is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(y, np.ndarray) or y.dtype != dtype:
        raise TypeError(f"y must be a {np.dtype(dtype).name} numpy array")
    if y.shape != shape:
        raise ValueError(f"y must have shape {shape}, got {y.shape}")
    if not y.flags.c_contiguous or not y.flags.writeable or not y.flags.aligned:
        raise ValueError("y must be C-contiguous, aligned and writable")
    cdef uintptr_t y0 = _addr(y), y1 = y0 + y.nbytes, a0
    for a in inputs:
        if a is None or not isinstance(a, np.ndarray):
            continue
        a0 = _addr(a)
        if a.flags.c_contiguous and (a0 >= y1 or y0 >= a0 + a.nbytes):
            continue  # disjoint address ranges: no overlap (the cheap common case)
        if np.may_share_memory(y, a) and not _same_buffer(y, a):
            raise ValueError("y overlaps an input without being that input")
    return y


cdef object _u8_array(a, str name):
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {a.dtype}")
    return a


cdef object _binary(int is_mul, a, b, a_zp, b_zp, float a_mult, float b_mult, y_zp, qmin,
                    qmax, y):
    a = _u8_array(a, "a")
    b = _u8_array(b, "b")
    for v, nm in ((a_zp, "a_zp"), (b_zp, "b_zp"), (y_zp, "y_zp"), (qmin, "qmin"), (qmax, "qmax")):
        _check_int(v, nm, 0, 255)
    if qmin > qmax:
        raise ValueError(f"qmin ({qmin}) must be <= qmax ({qmax})")
    if a.shape == b.shape:  # the common case, without numpy's broadcasting machinery
        shape = a.shape
    else:
        try:
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            raise ValueError(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    # Make `a` the full-size operand (both ops are symmetric in their operands).
    if a.shape != shape and b.shape == shape:
        a, b, a_zp, b_zp, a_mult, b_mult = b, a, b_zp, a_zp, b_mult, a_mult
    a_in, b_in = a, b
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    cols = shape[len(shape) - 1] if len(shape) else 1
    n = a.size
    cdef int scalar = 0
    cdef size_t b_stride = cols
    if b.size == 1:
        scalar, b = 1, np.ascontiguousarray(b.reshape(1))
    elif (b.shape != shape and b.ndim and b.shape[b.ndim - 1] == cols and
          all(d == 1 for d in b.shape[:b.ndim - 1])):
        b_stride, b = 0, np.ascontiguousarray(b.reshape(cols))  # per-channel vector
    elif b.shape == shape:
        if not b.flags.c_contiguous:
            b = np.ascontiguousarray(b)
    else:
        b = np.ascontiguousarray(np.broadcast_to(b, shape))   # any other broadcast: expand
    y = _elementwise_output(y, shape, np.uint8, (a_in, b_in))
    if n == 0:
        return y
    cdef qe_binary_params p
    p.a_zp, p.b_zp, p.y_zp, p.qmin, p.qmax = a_zp, b_zp, y_zp, qmin, qmax
    p.a_mult, p.b_mult = a_mult, b_mult
    cdef const uint8_t *ap = <const uint8_t *><uintptr_t>_addr(a)
    cdef const uint8_t *bp = <const uint8_t *><uintptr_t>_addr(b)
    cdef uint8_t *yp = <uint8_t *><uintptr_t>_addr(y)
    cdef size_t rows = n // cols, ncols = cols
    cdef int rc
    with nogil:
        if is_mul:
            rc = qe_mul_u8(rows, ncols, ap, bp, b_stride, scalar, &p, yp)
        else:
            rc = qe_add_u8(rows, ncols, ap, bp, b_stride, scalar, &p, yp)
    if rc != QE_OK:
        raise ValueError(f"element-wise kernel rejected its arguments (code {rc})")
    return y


def add_u8(a, b, a_zp, a_mult, b_zp, b_mult, y_zp, *, qmin=0, qmax=255, y=None):
    """Quantized Add with numpy broadcasting (fast for same shape, a per-channel vector along the
    last axis, or a scalar): y = clamp(rint(float(a - a_zp)*a_mult + float(b - b_zp)*b_mult)
    + y_zp, qmin, qmax), a_mult = s_a/s_y, b_mult = s_b/s_y. y may be a or b (in place)."""
    return _binary(0, a, b, a_zp, b_zp, _positive_float(a_mult, "a_mult"),
                   _positive_float(b_mult, "b_mult"), y_zp, qmin, qmax, y)


def mul_u8(a, b, a_zp, b_zp, mult, y_zp, *, qmin=0, qmax=255, y=None):
    """Quantized Mul with numpy broadcasting: y = clamp(rint(float((a - a_zp)*(b - b_zp)) *
    mult) + y_zp, qmin, qmax), mult = s_a*s_b/s_y."""
    cdef float m = _positive_float(mult, "mult")
    return _binary(1, a, b, a_zp, b_zp, m, m, y_zp, qmin, qmax, y)


def requantize_u8(x, x_zp, mult, y_zp, *, qmin=0, qmax=255, y=None):
    """y = clamp(rint(float(x - x_zp) * mult) + y_zp, qmin, qmax) for 2-D uint8 x (rows, cols).
    y: optional (rows, cols) output whose row stride may exceed cols -- a channel slice of a
    Concat output viewed as (pixels, channels)."""
    x = _input_rows(x, np.uint8, "x")
    _requant_args(x_zp, mult, y_zp, qmin, qmax)
    cdef float m = _positive_float(mult, "mult")
    rows, cols = x.shape
    y = _output_array(y, "u8", rows, cols, "y")
    if rows == 0 or cols == 0:
        return y
    if np.may_share_memory(x, y) and not _same_buffer(y, x):
        raise ValueError("y overlaps x without being x")
    cdef size_t ldx = x.strides[0] if rows > 1 else cols
    cdef size_t ldy = y.strides[0] if rows > 1 else cols
    cdef size_t r = rows, c = cols
    cdef const uint8_t *xp = <const uint8_t *><uintptr_t>_addr(x)
    cdef uint8_t *yp = <uint8_t *><uintptr_t>_addr(y)
    cdef int32_t xz = x_zp, yz = y_zp, lo = qmin, hi = qmax
    cdef int rc
    with nogil:
        rc = qe_requantize_u8(r, c, xp, ldx, xz, m, yz, lo, hi, yp, ldy)
    if rc != QE_OK:
        raise ValueError(f"qe_requantize_u8 rejected its arguments (code {rc})")
    return y


def lut_u8(x, table, *, y=None):
    """y = table[x] for uint8 x of any shape and a uint8 table of 256 entries (y may be x)."""
    x = np.ascontiguousarray(_u8_array(x, "x"))
    t = np.asarray(table)
    if t.dtype != np.uint8 or t.shape != (256,):
        raise ValueError(f"table must be uint8 of shape (256,), got {t.dtype} {t.shape}")
    t = np.ascontiguousarray(t)
    y = _elementwise_output(y, x.shape, np.uint8, (x,))
    if x.size == 0:
        return y
    cdef size_t n = x.size
    cdef const uint8_t *xp = <const uint8_t *><uintptr_t>_addr(x)
    cdef const uint8_t *tp = <const uint8_t *><uintptr_t>_addr(t)
    cdef uint8_t *yp = <uint8_t *><uintptr_t>_addr(y)
    with nogil:
        qe_lut_u8(n, xp, tp, yp)
    return y


def lut_u8_f32(x, table, *, y=None):
    """y = table[x] for uint8 x of any shape and a float32 table of 256 entries: float32 y."""
    x = np.ascontiguousarray(_u8_array(x, "x"))
    t = np.asarray(table)
    if t.dtype != np.float32 or t.shape != (256,):
        raise ValueError(f"table must be float32 of shape (256,), got {t.dtype} {t.shape}")
    t = np.ascontiguousarray(t)
    if y is not None and isinstance(y, np.ndarray) and np.may_share_memory(x, y):
        raise ValueError("y must not overlap x (4 output bytes per input byte)")
    y = _elementwise_output(y, x.shape, np.float32, (x,))
    if x.size == 0:
        return y
    cdef size_t n = x.size
    cdef const uint8_t *xp = <const uint8_t *><uintptr_t>_addr(x)
    cdef const float *tp = <const float *><uintptr_t>_addr(t)
    cdef float *yp = <float *><uintptr_t>_addr(y)
    with nogil:
        qe_lut_u8_f32(n, xp, tp, yp)
    return y


cdef inline bint _is_scalar_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


cdef tuple _qparams(x, scale, zero_point, int32_t zmin, int32_t zmax, bint need_zp):
    """(channels, scale array, zero-point array): per tensor (scalars or 1 entry) or per channel
    along the last axis of x."""
    s = np.asarray(scale, dtype=np.float32).reshape(-1)
    last = x.shape[x.ndim - 1] if x.ndim else 1
    channels = 1 if s.size == 1 else last
    if s.size not in (1, last) or (s.size != 1 and np.asarray(scale).ndim != 1):
        raise ValueError(f"scale must be a scalar or a 1-D array of {last} entries (the last "
                         f"axis), got shape {np.shape(scale)}")
    _check_positive_array(s, "scale")
    if zero_point is None:
        zero_point = 0
    zr = np.asarray(zero_point)
    if zr.dtype.kind not in "iu":
        raise TypeError(f"zero_point must be integer, got {zr.dtype}")
    if zr.size not in (1, channels) or zr.ndim > 1:
        raise ValueError(f"zero_point must have 1 or {channels} entries, got shape {zr.shape}")
    if zr.size and (zr.min() < zmin or zr.max() > zmax):
        raise ValueError(f"zero_point must be in [{zmin}, {zmax}]")
    if not need_zp and np.any(zr != 0):
        raise ValueError("int32 data takes no zero point (it must be 0)")
    z = np.ascontiguousarray(np.broadcast_to(zr.reshape(-1).astype(np.int32), (channels,)))
    return channels, np.ascontiguousarray(np.broadcast_to(s, (channels,))), z


def quantize(x, scale, zero_point=0, *, dtype=np.uint8, qmin=None, qmax=None, y=None):
    """QuantizeLinear on float32 x: clamp(rint(x / scale) + zero_point, qmin, qmax) (a true
    division; NaN -> zero_point). scale / zero_point: scalars, or per channel along the last
    axis. dtype uint8 or int8; [qmin, qmax] defaults to the dtype's range."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.require(x, requirements="CA")
    cdef bint signed = dtype is np.int8 or np.dtype(dtype) == np.dtype(np.int8)
    if not signed and not (dtype is np.uint8 or np.dtype(dtype) == np.dtype(np.uint8)):
        raise TypeError(f"dtype must be uint8 or int8, got {np.dtype(dtype)}")
    dt = np.int8 if signed else np.uint8
    cdef int32_t tmin = -128 if signed else 0, tmax = 127 if signed else 255
    qmin = tmin if qmin is None else qmin
    qmax = tmax if qmax is None else qmax
    _check_int(qmin, "qmin", tmin, tmax)
    _check_int(qmax, "qmax", tmin, tmax)
    if qmin > qmax:
        raise ValueError(f"qmin ({qmin}) must be <= qmax ({qmax})")
    cdef float s1
    cdef int32_t z1
    cdef size_t ch = 1
    cdef const float *sp = &s1
    cdef const int32_t *zp = &z1
    if _is_scalar_number(scale) and _is_scalar_number(zero_point):  # per tensor, no arrays
        s1 = _positive_float(scale, "scale")
        _check_int(zero_point, "zero_point", tmin, tmax)
        z1 = zero_point
    else:
        channels, s, z = _qparams(x, scale, zero_point, tmin, tmax, True)
        ch = channels
        sp = <const float *><uintptr_t>_addr(s)
        zp = <const int32_t *><uintptr_t>_addr(z)
    y = _elementwise_output(y, x.shape, dt, (x,))
    if x.size == 0:
        return y
    cdef size_t n = x.size
    cdef const float *xp = <const float *><uintptr_t>_addr(x)
    cdef uintptr_t yp = _addr(y)
    cdef int32_t lo = qmin, hi = qmax
    cdef int rc
    with nogil:
        if signed:
            rc = qe_quantize_f32_s8(n, ch, xp, sp, zp, lo, hi, <int8_t *>yp)
        else:
            rc = qe_quantize_f32_u8(n, ch, xp, sp, zp, lo, hi, <uint8_t *>yp)
    if rc != QE_OK:
        raise ValueError(f"quantize kernel rejected its arguments (code {rc})")
    return y


def dequantize(x, scale, zero_point=0, *, y=None):
    """DequantizeLinear: float32 (x - zero_point) * scale for uint8, int8 or int32 x (int32: zero
    point 0). scale / zero_point: scalars, or per channel along the last axis."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    kinds = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127),
             np.dtype(np.int32): (0, 0)}
    if x.dtype not in kinds:
        raise TypeError(f"x must be uint8, int8 or int32, got {x.dtype}")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.require(x, requirements="CA")
    zmin, zmax = kinds[x.dtype]
    cdef float s1
    cdef int32_t z1
    cdef size_t ch = 1
    cdef const float *sp = &s1
    cdef const int32_t *zp = &z1
    if _is_scalar_number(scale) and (zero_point is None or _is_scalar_number(zero_point)):
        s1 = _positive_float(scale, "scale")
        if zero_point is not None:
            _check_int(zero_point, "zero_point", zmin, zmax)
        z1 = 0 if zero_point is None else zero_point
    else:
        channels, s, z = _qparams(x, scale, zero_point, zmin, zmax, x.dtype != np.int32)
        ch = channels
        sp = <const float *><uintptr_t>_addr(s)
        zp = <const int32_t *><uintptr_t>_addr(z)
    y = _elementwise_output(y, x.shape, np.float32, (x,))
    if x.size == 0:
        return y
    cdef size_t n = x.size
    cdef uintptr_t xp = _addr(x)
    cdef float *yp = <float *><uintptr_t>_addr(y)
    cdef int rc, kind = 0 if x.dtype == np.uint8 else (1 if x.dtype == np.int8 else 2)
    with nogil:
        if kind == 0:
            rc = qe_dequantize_u8_f32(n, ch, <const uint8_t *>xp, sp, zp, yp)
        elif kind == 1:
            rc = qe_dequantize_s8_f32(n, ch, <const int8_t *>xp, sp, zp, yp)
        else:
            rc = qe_dequantize_s32_f32(n, ch, <const int32_t *>xp, sp, yp)
    if rc != QE_OK:
        raise ValueError(f"dequantize kernel rejected its arguments (code {rc})")
    return y
