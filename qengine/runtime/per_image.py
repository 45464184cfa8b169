"""Per-image execution of a batch's first layers (Program's per_image prefix).

A batch of 8 ResNet-18 images holds 1.6 MB per activation in its first stage, more than a
core's L2. Run image by image, a layer's output (200 KB) can stay in L2 for the next layer,
the tensors only those layers use need one image's worth of memory per thread instead of the
batch's, and on several threads whole images run one per thread, with one barrier for the
prefix instead of one per step. Weights go the other way: the later layers' weights are
larger than one image's activations, and a batch reads them once instead of once per image.
So the planner runs the longest prefix of per-sample items image by image while, for each,
one image's activations outweigh its packed weights, and keeps the rest batched. (Measured
on the Zen 4 in benchmarks/README.md: activation memory at batch 8 down 1.7-3x for ResNet-18
and MobileNetV2; speed within noise at 1 thread, gains at 2 threads when other processes
delay the per-step barriers.)

An item may run per image when it is known to treat samples independently (an op of
PER_SAMPLE_OPS or element-wise glue) and every activation it touches holds the batch as its
outermost physical axis, of the batch's size (so image i is bytes [i * size / N, (i + 1) *
size / N) of every such buffer). Its steps are then built for one image (ImageContext) and the
executor moves every strided slot on by one image between repetitions. The result is bit for
bit the batched one: the same kernels on the same bytes.

QENGINE_PER_IMAGE (read when a shape is compiled) or build_plan's per_image_mode:
"auto" (the default: the rule above), "off" (or 0: A/B timing), "all" (every per-sample
item from the first, whatever it costs: tests).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..ops.int8 import BuildContext, QConst, QTensor

__all__ = ["per_image_prefix", "ImageContext", "l2_cache_bytes", "mode_from_environment",
           "MODES"]

# node ops whose output for sample i depends only on sample i, given that every activation
# they touch is batch-outermost with N samples (a Concat or Split along the batch would give
# an output of another batch size, which that check refuses)
PER_SAMPLE_OPS = frozenset({
    "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Mul",
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Concat",
    "Split",
})
# ops whose constant operands broadcast against the activations: a constant with the batch
# axis (not 1) would give image i its row i, which one image's step cannot see
_BROADCASTING = frozenset({"Add", "Mul", "Concat"})
# ops whose operands after the first are weights or parameters
_ONE_ACTIVATION = PER_SAMPLE_OPS - _BROADCASTING
# glue items (runtime/glue.py, plan relayouts): element-wise, per-tensor parameters
_GLUE_LABELS = ("quantize", "dequantize", "requantize", "int8 <-> uint8", "lut ", "relayout")

_DEFAULT_L2 = 1 << 20


MODES = ("auto", "off", "all")


def mode_from_environment() -> str:
    value = os.environ.get("QENGINE_PER_IMAGE", "auto").strip().lower()
    value = {"0": "off", "1": "auto", "": "auto"}.get(value, value)
    if value not in MODES:
        raise ValueError(f"QENGINE_PER_IMAGE={value!r}: expected one of {', '.join(MODES)}")
    return value


def l2_cache_bytes() -> int:
    """The L2 cache of cpu0 (sysfs), or 1 MiB where the system does not say."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            with open(f"{base}/{idx}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{base}/{idx}/size") as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return _DEFAULT_L2


class ImageContext(BuildContext):
    """The planner's context as one image sees it: a batch-outermost activation of N samples
    has 1 (every other query goes to the planner's context unchanged)."""

    def __init__(self, base, batch_names: set):
        self.base = base
        self.batch_names = batch_names

    def shape(self, name):
        s = self.base.shape(name)
        return (1,) + tuple(s[1:]) if self.base.canon(name) in self.batch_names else s

    def perm(self, name):
        return self.base.perm(name)

    def slot(self, name):
        return self.base.slot(name)

    def dtype(self, name):
        return self.base.dtype(name)

    def canon(self, name):
        return self.base.canon(name)

    def constant(self, name):
        return self.base.constant(name)

    def constant_slot(self, key, array):
        return self.base.constant_slot(key, array)


def _op_of(it) -> Optional[str]:
    if it.unit is not None:
        return it.unit.node.op_type
    if it.lut_table is not None or it.label.startswith(_GLUE_LABELS):
        return "glue"
    return None


def _item_tensors(it, ctx, g, batch: int) -> Optional[list]:
    """The canonical activations the item touches if it may run per image, else None."""
    op = _op_of(it)
    if op is None or (op != "glue" and op not in PER_SAMPLE_OPS):
        return None
    if any(n.op_type not in PER_SAMPLE_OPS for n in it.fused_nodes):
        return None
    if it.unit is not None and it.unit.fused is not None and \
            it.unit.fused.op_type not in PER_SAMPLE_OPS:
        return None
    names = []
    for t in it.reads + it.writes:
        name = ctx.canon(it.remap.get(t, t))
        if name in g.initializers:
            continue
        names.append(name)
    if not names or not it.writes:
        return None
    rank = len(ctx.shape(names[-1]))
    for name in names:
        s = ctx.shape(name)
        if len(s) != rank or rank == 0 or s[0] != batch or ctx.perm(name)[0] != 0:
            return None
    if op in _ONE_ACTIVATION and any(isinstance(t, QTensor) for t in it.unit.inputs[1:]):
        return None             # weights computed by the graph: not one image's data
    if op in _BROADCASTING:
        for c in it.unit.inputs:
            v = c.values if isinstance(c, QConst) else c
            if isinstance(v, np.ndarray) and v.ndim == rank and v.shape[0] != 1:
                return None
    return names


def per_image_prefix(items: list, ctx, g, *, mode: str = "auto",
                     cache_bytes: Optional[int] = None) -> tuple:
    """(number of leading items to run per image, batch size, each of those items' activations
    in a list): 0 when the batch is 1 or per-image running would not keep a batch's
    activations out of the way.

    The prefix ("auto") is the longest run of per-sample items from the first whose packed
    weights are smaller than one image's activations, cut after the last item whose batch
    activations (everything it reads and writes) exceed the L2 cache: beyond that, running
    per image only adds calls. "all": every per-sample item from the first."""
    if mode not in MODES:
        raise ValueError(f"per-image mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off" or not g.inputs or not g.inputs[0].shape:
        return 0, 1, []
    batch = g.inputs[0].shape[0]
    if not isinstance(batch, int) or batch <= 1:
        return 0, 1, []
    cache_bytes = l2_cache_bytes() if cache_bytes is None else cache_bytes
    touched: list = []
    end = 0
    for k, it in enumerate(items):
        tensors = _item_tensors(it, ctx, g, batch)
        if tensors is None:
            break
        nbytes = sum(int(np.prod(ctx.shape(t))) * ctx.dtype(t).itemsize for t in tensors)
        if mode == "auto" and it.nbytes > nbytes // batch:
            break
        touched.append(tensors)
        if mode == "all" or nbytes > cache_bytes:
            end = k + 1
    return end, batch, touched[:end]
