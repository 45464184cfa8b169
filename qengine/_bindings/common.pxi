# Validation shared by every binding: nothing reaches C before these checks pass.
from libc.float cimport FLT_MAX

_OUT_KINDS = {"u8": QE_OUT_U8, "i32": QE_OUT_I32, "f32": QE_OUT_F32}
_OUT_DTYPES = {"u8": np.uint8, "i32": np.int32, "f32": np.float32}


cdef object _vector(obj, dtype, Py_ssize_t n, str name, bint allow_scalar):
    """obj as a C-contiguous 1-D array of `dtype` with n entries (or 1 when allow_scalar)."""
    if obj is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(obj)
    if arr.ndim == 0 and allow_scalar:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not (arr.shape[0] == n or (allow_scalar and arr.shape[0] == 1)):
        want = f"{n}" + (" or 1" if allow_scalar else "")
        raise ValueError(f"{name} must have {want} entries, got {arr.shape[0]}")
    if arr.dtype != dtype:
        if np.dtype(dtype).kind == "f" and arr.dtype.kind in "fiu":
            arr = arr.astype(dtype)
        elif np.dtype(dtype).kind == "i" and arr.dtype.kind in "iu":
            if arr.size and (arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
                raise ValueError(f"{name} has values outside the {np.dtype(dtype).name} range")
            arr = arr.astype(dtype)
        else:
            raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {arr.dtype}")
    return np.require(arr, requirements="CA")      # contiguous and aligned for C


cdef int _check_int(value, str name, long lo, long hi) except -1:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return 0


cdef int _fill_output(qe_output *o, list keep, str kind, Py_ssize_t n, bias, scale,
                      zero_point, qmin, qmax, fbias) except -1:
    """Validate the output-pipeline arguments of a kernel with n output channels into *o.
    Arrays are kept alive in `keep` for the duration of the call."""
    if kind not in _OUT_KINDS:
        raise ValueError(f"out must be one of {sorted(_OUT_KINDS)}, got {kind!r}")
    o.kind = _OUT_KINDS[kind]
    o.bias = NULL
    o.scale = NULL
    o.fbias = NULL
    o.per_channel = 0
    o.zero_point = 0
    o.qmin = 0
    o.qmax = 255
    cdef int32_t[::1] bias_v
    cdef float[::1] scale_v, fbias_v
    cdef Py_ssize_t i
    if bias is not None:
        b = _vector(bias, np.int32, n, "bias", False)
        keep.append(b)
        bias_v = b
        o.bias = &bias_v[0]
    if kind == "i32":
        if fbias is not None or scale is not None:
            raise ValueError("out='i32' takes no scale or fbias")
        return 0
    s = _vector(scale, np.float32, n, "scale", True)
    keep.append(s)
    scale_v = s
    for i in range(scale_v.shape[0]):  # a loop: numpy reductions cost microseconds per call
        if not (scale_v[i] >= 0 and scale_v[i] <= FLT_MAX):
            raise ValueError(f"scale must be finite and >= 0, got {scale_v[i]} at index {i}")
    o.scale = &scale_v[0]
    o.per_channel = 1 if (s.shape[0] == n and n != 1) else 0
    if kind == "u8":
        _check_int(zero_point, "zero_point", 0, 255)
        _check_int(qmin, "qmin", 0, 255)
        _check_int(qmax, "qmax", 0, 255)
        if qmin > qmax:
            raise ValueError(f"qmin ({qmin}) must be <= qmax ({qmax})")
        if fbias is not None:
            raise ValueError("fbias applies to out='f32' only")
        o.zero_point = zero_point
        o.qmin = qmin
        o.qmax = qmax
    else:
        if fbias is not None:
            fb = _vector(fbias, np.float32, n, "fbias", False)
            keep.append(fb)
            fbias_v = fb
            o.fbias = &fbias_v[0]
    return 0


cdef object _output_array(c, str kind, Py_ssize_t rows, Py_ssize_t cols, str name):
    """A new [rows, cols] output, or `c` checked as a writable [rows, cols] array whose rows
    are contiguous (row stride may exceed cols, e.g. a slice of a Concat output)."""
    dtype = _OUT_DTYPES[kind]
    if c is None:
        return np.empty((rows, cols), dtype=dtype)
    if not isinstance(c, np.ndarray):
        raise TypeError(f"{name} must be a numpy array")
    if c.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype).name} for out={kind!r}, got {c.dtype}")
    if c.ndim != 2 or c.shape[0] != rows or c.shape[1] != cols:
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {c.shape}")
    if not c.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not c.flags.aligned:
        raise ValueError(f"{name} is not aligned to its element size")
    if cols > 1 and c.strides[1] != c.itemsize:
        raise ValueError(f"{name} rows must be contiguous")
    if rows > 1 and (c.strides[0] < cols * c.itemsize or c.strides[0] % c.itemsize):
        raise ValueError(f"{name} has an invalid row stride {c.strides[0]}")
    return c


cdef object _input_rows(a, dtype, str name):
    """A 2-D array of `dtype` whose rows are contiguous (row stride may exceed the row)."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.shape[1] > 1 and a.strides[1] != a.itemsize:
        a = np.ascontiguousarray(a)
    if a.shape[0] > 1 and (a.strides[0] < a.shape[1] * a.itemsize or a.strides[0] < 0):
        a = np.ascontiguousarray(a)
    return a
