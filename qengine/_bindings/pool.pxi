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
    int qe_conv_maxpool_ok(const qe_conv_packed *p, const qe_conv_shape *s)
    int qe_conv_u8s8_maxpool(const qe_conv_packed *p, const qe_conv_shape *s, const uint8_t *x,
                             int32_t x_zp, const int32_t *w_zp, const qe_output *out,
                             const uint8_t *table, const qe_pool_shape *pool, uint8_t *y,
                             size_t ldy)

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


# ---- a convolution with the max pool after it, in one call ---------------------------------
cdef int _conv_pool_shapes(ConvPacked p, Py_ssize_t n, Py_ssize_t h, Py_ssize_t w,
                           qe_conv_shape *s, qe_pool_shape *ps, kernel, strides, pads,
                           ceil_mode) except -1:
    """Fill the convolution's shape for an (n, h, w, in_c) input and the pool's over its output;
    ValueError when either is invalid."""
    s[0] = p.shape
    s.batch, s.in_h, s.in_w = n, h, w
    s.out_h = _out_len(h, s.kernel_h, s.stride_h, s.dilation_h, s.pad_top, s.pad_bottom)
    s.out_w = _out_len(w, s.kernel_w, s.stride_w, s.dilation_w, s.pad_left, s.pad_right)
    if n < 1 or qe_conv_shape_check(s) != QE_OK:
        raise ValueError(f"invalid convolution input ({n}, {h}, {w}, {p.in_c})")
    dummy = np.empty((1, 1, 1, 1), np.uint8)
    _pool_shape(ps, np.broadcast_to(dummy, (n, s.out_h, s.out_w, p.out_c)), kernel, strides,
                1, pads, ceil_mode)
    if qe_pool_shape_check(ps) != QE_OK:
        raise ValueError(f"invalid pooling window for the convolution's output "
                         f"({n}, {s.out_h}, {s.out_w}, {p.out_c})")
    return 0


def conv_maxpool_supported(ConvPacked p not None, Py_ssize_t in_h, Py_ssize_t in_w):
    """Whether conv_maxpool_u8 (and a fused conv_step) takes this convolution at this input
    size: the convolutions run by column strips (short kernel rows, one group)."""
    cdef qe_conv_shape s = p.shape
    s.batch, s.in_h, s.in_w = 1, in_h, in_w
    if in_h < 1 or in_w < 1 or in_h > <Py_ssize_t>QE_MAX_DIM_C or in_w > <Py_ssize_t>QE_MAX_DIM_C:
        return False
    s.out_h = _out_len(in_h, s.kernel_h, s.stride_h, s.dilation_h, s.pad_top, s.pad_bottom)
    s.out_w = _out_len(in_w, s.kernel_w, s.stride_w, s.dilation_w, s.pad_left, s.pad_right)
    return bool(qe_conv_maxpool_ok(p.ptr, &s))


def conv_maxpool_u8(ConvPacked p not None, x, x_zp, kernel, *, strides=1, pads=0,
                    ceil_mode=False, bias=None, scale=None, zero_point=0, qmin=0, qmax=255,
                    w_zp=None, lut=None, y=None):
    """maxpool_u8(conv_u8s8(p, x, x_zp, out='u8', ...), kernel, strides=, pads=, ceil_mode=) in
    one call: the pool runs inside the convolution's tasks and its input is never stored. For
    the convolutions conv_maxpool_supported accepts. y: optional preallocated pooled output,
    possibly a channel slice of a larger NHWC tensor."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        x = _nhwc_input(x, "x")
    elif not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    if c != p.in_c:
        raise ValueError(f"x has {c} channels, the weights expect {p.in_c}")
    if h > <Py_ssize_t>QE_MAX_DIM_C or w > <Py_ssize_t>QE_MAX_DIM_C:
        raise ValueError(f"x shape {x.shape} exceeds the limit of {QE_MAX_DIM_C} per dimension")
    _check_int(x_zp, "x_zp", 0, 255)
    if not conv_maxpool_supported(p, h, w):
        raise ValueError(f"conv_maxpool_u8: this convolution ({p.method}) at {h}x{w} does not run "
                         f"by column strips; use conv_u8s8 then maxpool_u8")
    cdef qe_conv_shape s
    cdef qe_pool_shape ps
    _conv_pool_shapes(p, n, h, w, &s, &ps, kernel, strides, pads, ceil_mode)
    cdef list keep = []
    cdef qe_output o
    _fill_output(&o, keep, "u8", p.out_c, bias, scale, zero_point, qmin, qmax, None)
    if scale is not None:
        _check_positive_array(np.asarray(scale, dtype=np.float32), "scale")
    cdef const int32_t *wzp_ptr = NULL
    cdef int32_t[::1] wzp_v
    if w_zp is not None:
        wz = np.broadcast_to(_vector(w_zp, np.int32, p.out_c, "w_zp", True), (p.out_c,)).copy()
        if wz.min() < -128 or wz.max() > 127:
            raise ValueError("w_zp must be in [-128, 127]")
        keep.append(wz)
        wzp_v = wz
        wzp_ptr = &wzp_v[0]
    cdef const uint8_t *lut_ptr = NULL
    cdef const uint8_t[::1] lut_v
    if lut is not None:
        lut_a = _lut_table(lut, "u8")
        keep.append(lut_a)
        lut_v = lut_a
        lut_ptr = &lut_v[0]
    oshape = (n, <Py_ssize_t>ps.out_h, <Py_ssize_t>ps.out_w, p.out_c)
    cdef Py_ssize_t ldy = p.out_c
    if y is None:
        y = np.empty(oshape, dtype=np.uint8)
    else:
        ldy = _nhwc_output(y, oshape, np.uint8, "y", x)
    cdef const uint8_t *xp = <const uint8_t *><uintptr_t>_addr_of(x)
    cdef uint8_t *yp = <uint8_t *><uintptr_t>_addr_of(y)
    cdef int32_t xzp = x_zp
    cdef int rc
    with nogil:
        rc = qe_conv_u8s8_maxpool(p.ptr, &s, xp, xzp, wzp_ptr, &o, lut_ptr, &ps, yp, ldy)
    if rc != QE_OK:
        raise ValueError(f"qe_conv_u8s8_maxpool rejected its arguments (code {rc})")
    return y
