# One call of a compiled model, from input arrays to output arrays, in compiled code.
#
# A model's per-call cost beyond its kernels is what a user of a small model pays on every call
# (benchmarks/overhead.py). Done in Python it was ~3.7 us on a 2.5 GHz Xeon; here the run
# context is taken from a pool, inputs and outputs bound and the program run without a Python
# frame in between. The executor (qengine.runtime.executor) checks dtypes and shapes before the
# first call of a shape; a CompiledPlan is only found for arrays that match it.


cdef class CompiledPlan:
    """A Program with what one call binds (precomputed) and a pool of run contexts.

    plan: qengine.runtime.plan.Plan (program, arena, input/output slots, constants)."""
    cdef readonly object plan
    cdef readonly Program program
    cdef readonly list out_names
    cdef list free                  # idle RunContexts; list.pop/append hold the GIL
    cdef readonly Py_ssize_t contexts_made
    cdef tuple in_slots
    cdef tuple in_views             # (slot, input index, physical shape)
    cdef tuple out_specs            # (slot, shape, numpy dtype)
    cdef object arena_bytes, arena_slots, constants

    def __init__(self, plan):
        self.plan = plan
        self.program = plan.program
        self.free = []
        self.in_slots = tuple(slot for _, slot, _, _ in plan.inputs)
        self.in_views = tuple(plan.input_views)
        self.out_specs = tuple((slot, tuple(shape), np.dtype(dtype))
                               for _, slot, dtype, shape in plan.outputs)
        self.out_names = [name for name, _, _, _ in plan.outputs]
        self.arena_bytes = plan.arena_bytes
        self.arena_slots = plan.arena_slots
        self.constants = plan.constants

    cdef RunContext _acquire(self):
        if self.free:
            return <RunContext>self.free.pop()
        ctx = RunContext(self.program, self.arena_bytes, self.arena_slots)
        self.contexts_made += 1
        for slot, arr in self.constants:
            ctx.bind(slot, arr)
        return ctx

    def call(self, tuple arrays, int thread_limit=0, times=None):
        """Run on `arrays` (the model's inputs in order, checked by the caller against this
        plan's dtypes and shapes) and return the list of outputs. thread_limit: the model's cap
        on kernel threads (0: the global setting). MemoryError when a context or an output does
        not fit (the executor names the sizes)."""
        cdef RunContext ctx = self._acquire()
        try:
            for slot, i, shape in self.in_views:
                ctx.bind(slot, np.require(arrays[i], requirements="CA").reshape(shape))
            if thread_limit:
                qe_set_thread_limit(thread_limit)
            try:
                return self.program.execute(ctx, arrays, self.in_slots, self.out_specs, times)
            finally:
                if thread_limit:
                    qe_set_thread_limit(0)
        finally:
            self.free.append(ctx)
