# eltwise kernels: bindings to be written (declare their C functions here with a cdef extern block).
