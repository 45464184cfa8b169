# Float normalizations left in quantized models that run as Python steps (csrc/float/lrn.c).

cdef extern from "qe_kernels.h" nogil:
    int qe_lrn_f32(size_t batch, size_t channels, size_t pixels, int channels_last,
                   const float *x, float *y, size_t size, float alpha_over_size, float bias,
                   float beta)


def lrn_f32(x, Py_ssize_t size, float alpha_over_size, float bias, float beta,
            bint channels_last=False, out=None):
    """ONNX LRN over channels of a float32 array x, C-contiguous (N, C, P) (channels_last False)
    or (N, P, C) (True): y = x / (bias + alpha_over_size * window sum of x^2) ^ beta, the window
    channels [c - (size-1)//2, + size) cut at the edges. Returns y: `out` (a C-contiguous
    float32 array shaped as x, apart from x) or a new array."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 3:
        raise TypeError(f"x must be a 3-D float32 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if not 1 <= size <= 1 << 24:
        raise ValueError(f"LRN size must be in [1, 2^24], got {size}")
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t c = x.shape[2] if channels_last else x.shape[1]
    cdef Py_ssize_t p = x.shape[1] if channels_last else x.shape[2]
    if out is None:
        y = np.empty_like(x)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != x.shape or \
            not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous float32 array of shape "
                         f"{x.shape}")
    elif np.may_share_memory(out, x):
        raise ValueError("out must not overlap x")
    else:
        y = out
    if x.size == 0:
        return y
    cdef const float[:, :, ::1] xv = x
    cdef float[:, :, ::1] yv = y
    cdef int rc
    with nogil:
        rc = qe_lrn_f32(n, c, p, 1 if channels_last else 0, &xv[0, 0, 0], &yv[0, 0, 0], size,
                        alpha_over_size, bias, beta)
    if rc != QE_OK:
        raise ValueError(f"LRN kernel rejected its arguments (code {rc})")
    return y
