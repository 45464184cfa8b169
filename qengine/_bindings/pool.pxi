# NHWC uint8 pooling: max, average (count_include_pad both ways, ceil_mode), global average.

cdef extern from "qe_kernels.h" nogil:
    ctypedef struct qe_pool_shape:
        size_t batch, in_h, in_w, channels, out_h, out_w
        size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w
        size_t pad_top, pad_left, pad_bottom, pad_right
    int qe_pool_shape_check(const qe_pool_shape *s)
    int qe_maxpool_u8(const qe_pool_shape *s, const uint8_t *x, uint8_t *y)
    int qe_avgpool_u8(const qe_pool_shape *s, int count_include_pad, const uint8_t *x,
                      int32_t x_zp, float mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                      uint8_t *y)
    int qe_global_avgpool_u8(size_t batch, size_t hw, size_t channels, const uint8_t *x,
                             int32_t x_zp, float mult, int32_t y_zp, int32_t qmin, int32_t qmax,
                             uint8_t *y)

POOL_MAX_TAPS = 1 << 16
GLOBAL_POOL_MAX_HW = 1 << 23


cdef object _pool_shape(qe_pool_shape *s, x, kernel, strides, dilations, pads, ceil_mode):
    """Fill *s for NHWC input x and return the output shape (validation included)."""
    kh, kw = _int_tuple(kernel, 2, "kernel", 1)
    sh, sw = _int_tuple(strides, 2, "strides", 1)
    dh, dw = _int_tuple(dilations, 2, "dilations", 1)
    pt, pl, pb, pr = _int_tuple(pads, 4, "pads", 0)
    if kh * kw > POOL_MAX_TAPS:
        raise ValueError(f"pooling window {kh}x{kw} exceeds {POOL_MAX_TAPS} taps")
    n, h, w, c = x.shape
    oh = conv_output_size(h, kh, sh, dh, pt, pb, bool(ceil_mode))
    ow = conv_output_size(w, kw, sw, dw, pl, pr, bool(ceil_mode))
    s.batch, s.in_h, s.in_w, s.channels, s.out_h, s.out_w = n, h, w, c, oh, ow
    s.kernel_h, s.kernel_w, s.stride_h, s.stride_w = kh, kw, sh, sw
    s.dilation_h, s.dilation_w = dh, dw
    s.pad_top, s.pad_left, s.pad_bottom, s.pad_right = pt, pl, pb, pr
    return (n, oh, ow, c)


cdef object _contiguous_output(y, tuple shape, str name, x):
    if y is None:
        return np.empty(shape, dtype=np.uint8)
    if not isinstance(y, np.ndarray) or y.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 numpy array")
    if y.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {y.shape}")
    if not y.flags.c_contiguous or not y.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
    if np.may_share_memory(x, y):
        raise ValueError(f"{name} must not overlap the input")
    return y


cdef int _requant_args(x_zp, mult, y_zp, qmin, qmax) except -1:
    _check_int(x_zp, "x_zp", 0, 255)
    _check_int(y_zp, "y_zp", 0, 255)
    _check_int(qmin, "qmin", 0, 255)
    _check_int(qmax, "qmax", 0, 255)
    if qmin > qmax:
        raise ValueError(f"qmin ({qmin}) must be <= qmax ({qmax})")
    _positive_float(mult, "mult")
    return 0


def maxpool_u8(x, kernel, *, strides=1, dilations=1, pads=0, ceil_mode=False, y=None):
    """NHWC uint8 max pool; taps in the padding never win (an all-padding window gives 0).
    pads: (top, left, bottom, right)."""
    x = _nhwc_input(x, "x")
    cdef qe_pool_shape s
    shape = _pool_shape(&s, x, kernel, strides, dilations, pads, ceil_mode)
    y = _contiguous_output(y, shape, "y", x)
    if y.size == 0:
        return y
    cdef const uint8_t[:, :, :, ::1] xv = x
    cdef uint8_t[:, :, :, ::1] yv = y
    cdef int rc
    with nogil:
        rc = qe_maxpool_u8(&s, &xv[0, 0, 0, 0], &yv[0, 0, 0, 0])
    if rc != QE_OK:
        raise ValueError(f"qe_maxpool_u8 rejected its arguments (code {rc})")
    return y


def avgpool_u8(x, kernel, x_zp, mult, y_zp, *, qmin=0, qmax=255, strides=1, dilations=1,
               pads=0, ceil_mode=False, count_include_pad=False, y=None):
    """NHWC uint8 average pool: y = clamp(rint(float(sum(x - x_zp)) * (mult / count)) + y_zp),
    mult = s_x / s_y; count = taps inside the input, or with count_include_pad the taps inside
    the padded input (see qe_kernels.h)."""
    x = _nhwc_input(x, "x")
    _requant_args(x_zp, mult, y_zp, qmin, qmax)
    cdef qe_pool_shape s
    shape = _pool_shape(&s, x, kernel, strides, dilations, pads, ceil_mode)
    y = _contiguous_output(y, shape, "y", x)
    if y.size == 0:
        return y
    cdef const uint8_t[:, :, :, ::1] xv = x
    cdef uint8_t[:, :, :, ::1] yv = y
    cdef int rc, cip = 1 if count_include_pad else 0
    cdef int32_t xz = x_zp, yz = y_zp, lo = qmin, hi = qmax
    cdef float m = _positive_float(mult, "mult")
    with nogil:
        rc = qe_avgpool_u8(&s, cip, &xv[0, 0, 0, 0], xz, m, yz, lo, hi, &yv[0, 0, 0, 0])
    if rc != QE_OK:
        raise ValueError(f"qe_avgpool_u8 rejected its arguments (code {rc})")
    return y


def global_avgpool_u8(x, x_zp, mult, y_zp, *, qmin=0, qmax=255, y=None):
    """Mean over H and W of NHWC uint8 x, as (N, 1, 1, C) (ONNX GlobalAveragePool)."""
    x = _nhwc_input(x, "x")
    _requant_args(x_zp, mult, y_zp, qmin, qmax)
    n, h, w, c = x.shape
    if h * w > GLOBAL_POOL_MAX_HW:
        raise ValueError(f"global pooling over {h * w} pixels exceeds {GLOBAL_POOL_MAX_HW}")
    if h * w == 0 and n * c:
        raise ValueError(f"cannot average over an empty {h}x{w} image")
    y = _contiguous_output(y, (n, 1, 1, c), "y", x)
    if y.size == 0:
        return y
    cdef const uint8_t[:, :, :, ::1] xv = x
    cdef uint8_t[:, :, :, ::1] yv = y
    cdef int rc
    cdef size_t nb = n, hw = h * w, ch = c
    cdef int32_t xz = x_zp, yz = y_zp, lo = qmin, hi = qmax
    cdef float m = _positive_float(mult, "mult")
    with nogil:
        rc = qe_global_avgpool_u8(nb, hw, ch, &xv[0, 0, 0, 0], xz, m, yz, lo, hi, &yv[0, 0, 0, 0])
    if rc != QE_OK:
        raise ValueError(f"qe_global_avgpool_u8 rejected its arguments (code {rc})")
    return y
