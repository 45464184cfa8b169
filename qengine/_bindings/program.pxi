# The executor's inner loop: a compiled model is a flat Program of steps.
#
# A native step is one kernel call whose arguments were validated and bound when the model was
# compiled; its tensors are named by slot numbers, resolved per run through a RunContext (one
# arena of activation buffers plus the caller's input and output arrays). Consecutive native
# steps run back to back in C with the GIL released. A Python step (an op that runs in float, in
# numpy) runs between them with numpy views of its slots.
#
# Several threads may run one Program at once, each with its own RunContext: steps and packed
# weights are read-only after compilation.
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
cimport numpy as cnp

cnp.import_array()

ctypedef int (*step_fn)(const void *args, char **slots) noexcept nogil

cdef extern from "runtime/run_images.h" nogil:
    ctypedef int (*qe_step_fn)(const void *args, char **slots)
    ctypedef struct qe_image_memory:
        char **slots
        const size_t *strides
        const Py_ssize_t *private_offset
        size_t n_slots
        char *arenas
        size_t arena_stride
        size_t max_parts
    int qe_run_images(size_t steps, const qe_step_fn *fns, void **args,
                      const qe_image_memory *mem, size_t images, char **tables, double *times,
                      size_t *failed_step)
    size_t qe_run_images_parts(size_t images)

_RC_NAMES = {QE_ERR_ARG: "bad argument", QE_ERR_NOMEM: "out of memory",
             QE_ERR_ISA: "ISA not available", QE_ERR_OVERFLOW: "accumulator overflow"}

cdef class Program


cdef class Step:
    """Base of every step: a name (the graph node it comes from) and an op label."""
    cdef readonly str name
    cdef readonly str op

    def __repr__(self):
        return f"<{type(self).__name__} {self.op} {self.name!r}>"


cdef class NativeStep(Step):
    """A kernel call with prebound arguments (`args`, malloc'd, owned here)."""
    cdef step_fn fn
    cdef void *args
    cdef list keep          # Python objects the args point into (packed weights, arrays)
    cdef readonly double ops  # arithmetic operations per run (for GOPS in profiles), or 0
    cdef readonly list extents  # (slot, first byte, end byte) of every tensor access

    def __dealloc__(self):
        free(self.args)


cdef NativeStep _native_step(str name, str op, step_fn fn, size_t args_size, list keep,
                             list extents, double ops=0):
    """A NativeStep with a zeroed args struct of args_size bytes for the caller to fill.
    extents: (slot, first byte, end byte) of every tensor region the kernel reads or writes,
    checked against the slot sizes when a Program is built."""
    cdef NativeStep s = NativeStep.__new__(NativeStep)
    s.name = name
    s.op = op
    s.fn = fn
    s.args = calloc(1, args_size)
    if s.args == NULL:
        raise MemoryError()
    s.keep = keep
    s.extents = extents
    s.ops = ops
    return s


cdef class PyStep(Step):
    """A Python callable fn(views) run between native steps; `views` is the RunContext's list of
    numpy arrays indexed by slot (inputs read, outputs written in place)."""
    cdef readonly object fn

    def __init__(self, str name, str op, fn):
        self.name = name
        self.op = op
        self.fn = fn


cdef class RunContext:
    """The per-run memory of a Program: the slot pointer table, the arena, numpy views."""
    cdef char **slots
    cdef char **image_slots    # per image, the table its prefix runs with (Program.per_image)
    cdef object image_arenas   # one image arena per thread that runs images (grown on demand)
    cdef size_t image_parts, image_stride
    cdef Py_ssize_t n_slots
    cdef readonly object arena
    cdef readonly list views

    cdef readonly object slot_nbytes

    def __cinit__(self, Program program not None, Py_ssize_t arena_bytes, list arena_slots):
        """arena_slots: (slot, byte offset, dtype, shape) of every tensor that lives in the arena;
        every other slot is bound to a caller's array with bind() before each run."""
        cdef Py_ssize_t n_slots = len(program.slot_nbytes)
        if arena_bytes < 0:
            raise ValueError("negative arena size")
        self.n_slots = n_slots
        self.slot_nbytes = program.slot_nbytes
        self.slots = <char **>calloc(max(n_slots, 1), sizeof(char *))
        self.image_slots = <char **>calloc(max(n_slots, 1) * max(program.loop_images, 1),
                                           sizeof(char *))
        if self.slots == NULL or self.image_slots == NULL:
            raise MemoryError()
        # 64 bytes of slack: kernels may read (never use) one vector past a buffer's end.
        self.arena = np.zeros(arena_bytes + 128, dtype=np.uint8)
        cdef uintptr_t base = self.arena.__array_interface__["data"][0]
        cdef uintptr_t aligned = (base + 63) & ~(<uintptr_t>63)
        cdef Py_ssize_t shift = aligned - base
        self.views = [None] * n_slots
        for slot, offset, dtype, shape in arena_slots:
            if not 0 <= slot < n_slots:
                raise ValueError(f"slot {slot} out of range")
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if nbytes < self.slot_nbytes[slot]:
                raise ValueError(f"slot {slot}: {nbytes} bytes, the program needs {self.slot_nbytes[slot]}")
            if offset < 0 or offset + nbytes > arena_bytes:
                raise ValueError(f"slot {slot} does not fit in the arena")
            view = self.arena[shift + offset: shift + offset + nbytes].view(dtype).reshape(shape)
            self.views[slot] = view
            self.slots[slot] = <char *>(aligned + <uintptr_t>offset)

    def __dealloc__(self):
        free(self.slots)
        free(self.image_slots)

    cdef size_t _image_arenas(self, Program program, size_t parts):
        """Make room for `parts` image arenas of the program's per-image prefix (kept for the
        next runs; a 64-byte aligned stride with a line between arenas); returns parts."""
        cdef size_t stride = ((<size_t>program.image_bytes + 63) // 64 + 1) * 64
        if self.image_arenas is None or self.image_parts < parts:
            self.image_arenas = np.zeros(parts * stride + 64, dtype=np.uint8)
            self.image_parts = parts
        self.image_stride = stride
        return parts

    cdef char *_image_arena_base(self):
        cdef uintptr_t base = self.image_arenas.__array_interface__["data"][0]
        return <char *>((base + 63) & ~(<uintptr_t>63))

    cdef inline void _bind_fast(self, Py_ssize_t slot, cnp.ndarray arr):
        """bind() without the checks: the caller guarantees a C-contiguous array that holds
        the slot's bytes (Program.execute validates once per plan)."""
        self.views[slot] = arr
        self.slots[slot] = <char *>cnp.PyArray_DATA(arr)

    def bind(self, Py_ssize_t slot, arr):
        """Point `slot` at a caller's array (a model input or output) for this run."""
        if not 0 <= slot < self.n_slots:
            raise ValueError(f"slot {slot} out of range")
        if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous or not arr.flags.aligned:
            raise ValueError("bound arrays must be C-contiguous, aligned numpy arrays")
        if arr.nbytes < self.slot_nbytes[slot]:
            raise ValueError(f"slot {slot}: array of {arr.nbytes} bytes, the program needs "
                             f"{self.slot_nbytes[slot]}")
        self.views[slot] = arr
        self.slots[slot] = <char *><uintptr_t>arr.__array_interface__["data"][0]

    @property
    def nbytes(self):
        return self.arena.nbytes


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef qe_gemm_packed *_first_b(w):
    """The first packed B that weights w (GemmPacked or ConvPacked) multiply by; NULL for a
    depthwise convolution."""
    if isinstance(w, GemmPacked):
        return (<GemmPacked>w).ptr
    return qe_conv_packed_gemm((<ConvPacked>w).ptr, 0)


cdef void _hint_next(w, qe_gemm_packed *nb):
    """w's prefetch hints: a convolution's groups each name the next group's B, its last (or
    a GEMM's B) names nb."""
    cdef ConvPacked cp
    cdef size_t g
    if isinstance(w, GemmPacked):
        qe_gemm_packed_set_next((<GemmPacked>w).ptr, nb)
        return
    cp = <ConvPacked>w
    for g in range(<size_t>cp.groups):
        qe_gemm_packed_set_next(qe_conv_packed_gemm(cp.ptr, g),
                                qe_conv_packed_gemm(cp.ptr, g + 1) if g + 1 < <size_t>cp.groups
                                else nb)


cdef _chain_prefetch_hints(list steps):
    """Each packed B of the program's steps names the one multiplied next (in step order), so
    a layer's last block of panels prefetches the next layer's first (qe_gemm_packed_set_next).
    A hint changes no result and holds no reference (it is an address that is only prefetched);
    a packed object shared with another program keeps the hint of the program built last."""
    cdef list ws = []
    for s in steps:
        if isinstance(s, NativeStep):
            for k in (<NativeStep>s).keep:
                if isinstance(k, (GemmPacked, ConvPacked)) and _first_b(k) != NULL:
                    ws.append(k)
                    break
    for i, w in enumerate(ws):
        _hint_next(w, _first_b(ws[i + 1]) if i + 1 < len(ws) else NULL)


cdef class Program:
    """A flat list of steps, run in order; optionally its first steps once per image.

    per_image = (steps, images, strides, private, image_bytes): the first `steps` steps
    (native, built for one image) run `images` times, the i-th time with every slot s moved on
    by i * strides[s] bytes (0: a slot every image shares, a constant or weights), or, where
    private[s] >= 0, at that offset in an image arena of image_bytes that the thread running
    the image reuses image after image (tensors only the prefix uses); the rest then run once
    on the whole batch. Images run concurrently when the threads divide them evenly
    (csrc/runtime/run_images.c).
    Consecutive layers of one image then pass their activations through the cache, where the
    whole batch's would not fit (runtime/plan.py chooses the prefix)."""
    cdef readonly list steps
    cdef step_fn *fns     # per step: the native function, or NULL for a Python step
    cdef void **args
    cdef Py_ssize_t n
    cdef readonly tuple slot_nbytes
    cdef readonly tuple per_image
    cdef Py_ssize_t loop_steps, loop_images
    cdef size_t *strides
    cdef Py_ssize_t *private
    cdef readonly Py_ssize_t image_bytes

    def __cinit__(self, list steps, slot_nbytes, per_image=None):
        """slot_nbytes: the size in bytes of every slot; every native step's extents must fit
        (a per-image step's in one image's part of a strided slot)."""
        self.steps = list(steps)
        self.slot_nbytes = tuple(int(b) for b in slot_nbytes)
        self.n = len(self.steps)
        cdef Py_ssize_t n_slots = len(self.slot_nbytes)
        self.fns = <step_fn *>calloc(max(self.n, 1), sizeof(step_fn))
        self.args = <void **>calloc(max(self.n, 1), sizeof(void *))
        self.strides = <size_t *>calloc(max(n_slots, 1), sizeof(size_t))
        self.private = <Py_ssize_t *>calloc(max(n_slots, 1), sizeof(Py_ssize_t))
        if self.fns == NULL or self.args == NULL or self.strides == NULL or self.private == NULL:
            raise MemoryError()
        cdef Py_ssize_t k = 0, images = 1, st
        for s in range(n_slots):
            self.private[s] = -1
        if per_image is not None:
            k, images, strides, private, image_bytes = per_image
            k, images, image_bytes = int(k), int(images), int(image_bytes)
            if not (0 <= k <= self.n and images >= 1 and image_bytes >= 0 and
                    len(strides) == n_slots and len(private) == n_slots):
                raise ValueError(f"per_image: {k} steps, {images} images, {len(strides)} "
                                 f"strides, {len(private)} private offsets for {self.n} steps "
                                 f"and {n_slots} slots")
            for s in range(n_slots):
                st = int(strides[s])
                if st < 0 or st * images > self.slot_nbytes[s]:
                    raise ValueError(f"per_image: slot {s} of {self.slot_nbytes[s]} bytes "
                                     f"cannot hold {images} images of {st}")
                off = int(private[s])
                if off >= 0 and off + st > image_bytes:
                    raise ValueError(f"per_image: slot {s} ({st} bytes per image at {off}) "
                                     f"is outside the image arena of {image_bytes} bytes")
                self.strides[s] = st
                self.private[s] = off if off >= 0 else -1
            self.per_image = (k, images, tuple(int(x) for x in strides),
                              tuple(int(x) for x in private), image_bytes)
            self.image_bytes = image_bytes
        self.loop_steps, self.loop_images = k, images
        cdef NativeStep ns
        cdef Py_ssize_t size
        for i, s in enumerate(self.steps):
            if isinstance(s, NativeStep):
                ns = s
                for slot, lo, hi in ns.extents:
                    size = self.slot_nbytes[slot] if 0 <= slot < n_slots else -1
                    if i < k and size >= 0 and self.strides[slot] > 0:
                        size = <Py_ssize_t>self.strides[slot]     # one image's part
                    if not (0 <= lo <= hi <= size):
                        raise ValueError(f"step {ns.op} {ns.name!r}: access [{lo}, {hi}) of slot "
                                         f"{slot} is outside its {size if size >= 0 else '?'} bytes")
                self.fns[i] = ns.fn
                self.args[i] = ns.args
            elif i < k:
                raise ValueError(f"step {i} ({s!r}) runs per image but is not a native step")
            elif not isinstance(s, PyStep):
                raise TypeError(f"step {i} is not a Step: {s!r}")
        _chain_prefetch_hints(self.steps)

    def __dealloc__(self):
        free(self.fns)
        free(self.args)
        free(self.strides)
        free(self.private)

    def images(self, Py_ssize_t i):
        """How many times step i runs per call (its image count if it runs per image)."""
        return self.loop_images if i < self.loop_steps else 1

    def __len__(self):
        return self.n

    def execute(self, RunContext ctx not None, tuple inputs, tuple in_slots, tuple outputs,
                times=None):
        """Bind `inputs` (arrays, made C-contiguous here) to `in_slots`, allocate one new array
        per (slot, shape, numpy dtype) of `outputs`, run, and return the outputs as a list. The
        caller has checked dtypes and shapes against the plan (qengine.runtime.executor)."""
        cdef Py_ssize_t i, n = len(inputs)
        cdef cnp.ndarray a
        if n != len(in_slots):
            raise ValueError("inputs and input slots differ in number")
        for i in range(n):
            a = inputs[i]
            if not cnp.PyArray_ISCARRAY_RO(a):
                # C-contiguous and aligned: kernels load whole elements (a float32 array
                # viewed at an odd byte offset is undefined behaviour in C)
                a = np.require(a, requirements="CA")
            if cnp.PyArray_NBYTES(a) < self.slot_nbytes[in_slots[i]]:
                raise ValueError(f"input {i}: {cnp.PyArray_NBYTES(a)} bytes, the program "
                                 f"needs {self.slot_nbytes[in_slots[i]]}")
            ctx._bind_fast(in_slots[i], a)
        cdef list result = []
        cdef cnp.npy_intp dims[32]
        cdef Py_ssize_t d, nd
        for slot, shape, dtype in outputs:
            nd = len(shape)
            if nd > 32:
                raise ValueError(f"output of {nd} dimensions (at most 32)")
            for d in range(nd):
                dims[d] = shape[d]
            a = cnp.PyArray_EMPTY(<int>nd, dims, (<cnp.dtype>dtype).type_num, 0)
            ctx._bind_fast(slot, a)
            result.append(a)
        self.run(ctx, times)
        return result

    def run(self, RunContext ctx not None, times=None):
        """Run every step with ctx's memory. `times`: optional float64 array of len(steps) that
        receives each step's wall time in seconds (profiling)."""
        cdef Py_ssize_t i = 0, j, failed = -1
        cdef int rc = 0
        cdef char **slots = ctx.slots
        cdef double[::1] tv
        cdef bint timing = times is not None
        cdef double t0
        if timing:
            tv = times
            if tv.shape[0] != self.n:
                raise ValueError("times must have one entry per step")
        cdef size_t failed_step = 0
        cdef size_t n_slots = len(self.slot_nbytes)
        cdef double *tp = NULL
        cdef qe_image_memory mem
        if self.loop_steps:
            if timing:
                tp = &tv[0]
            mem.slots = slots
            mem.strides = self.strides
            mem.private_offset = self.private
            mem.n_slots = n_slots
            mem.max_parts = ctx._image_arenas(self, qe_run_images_parts(self.loop_images))
            mem.arenas = ctx._image_arena_base()
            mem.arena_stride = ctx.image_stride
            with nogil:
                rc = qe_run_images(self.loop_steps, <const qe_step_fn *>self.fns, self.args,
                                   &mem, self.loop_images, ctx.image_slots, tp, &failed_step)
            if rc != 0:
                if rc == QE_ERR_NOMEM:
                    raise MemoryError()
                s = self.steps[failed_step]
                raise ExecutionError(f"kernel step {s.op} of node {s.name!r} failed (code "
                                     f"{rc}: {_RC_NAMES.get(rc, 'unknown')})")
            i = self.loop_steps
        while i < self.n:
            if self.fns[i] != NULL:
                j = i
                with nogil:
                    while j < self.n and self.fns[j] != NULL:
                        if timing:
                            t0 = _now()
                        rc = self.fns[j](self.args[j], slots)
                        if timing:
                            tv[j] = _now() - t0
                        if rc != 0:
                            failed = j
                            break
                        j += 1
                if failed >= 0:
                    s = self.steps[failed]
                    raise ExecutionError(f"kernel step {s.op} of node {s.name!r} failed (code "
                                         f"{rc}: {_RC_NAMES.get(rc, 'unknown')})")
                i = j
            else:
                t0 = _now()
                try:
                    (<PyStep>self.steps[i]).fn(ctx.views)
                except QEngineError:
                    raise
                except Exception as e:
                    # a float op (numpy) failed: name the step, keep the cause
                    s = self.steps[i]
                    raise ExecutionError(f"node {s.name!r} ({s.op}) failed: "
                                         f"{type(e).__name__}: {e}") from e
                if timing:
                    tv[i] = _now() - t0
                i += 1
