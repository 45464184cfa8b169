"""Run one compiled step of qengine._kernels on given input and output arrays."""
from qengine import _kernels as K


def run_step_slots(step, *arrays):
    """Run `step` with slot i bound to arrays[i]; returns the arrays."""
    prog = K.Program([step], [a.nbytes for a in arrays])
    ctx = K.RunContext(prog, 0, [])
    for i, a in enumerate(arrays):
        ctx.bind(i, a)
    prog.run(ctx)
    return arrays


def run_step(step, x, y):
    """Run `step` reading slot 0 (x) and writing slot 1 (y); returns y."""
    return run_step_slots(step, x, y)[1]
