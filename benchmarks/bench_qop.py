"""Pre-quantized models and dynamic quantization: qengine vs onnxruntime on the same files.

    python benchmarks/bench_qop.py [--rounds 7] [--seconds 3] [--threads 1]

Each row times two engines on one saved model in the same process, warmed up, in interleaved
rounds; the figures are the ratios of median and of best run times (> 1: qengine is faster;
on a loaded machine the best times are the steadier measure):
- qoperator_resnet18: onnxruntime's QOperator model (quantize_static, per channel) of a
  ResNet-18 at 112x112 (width 32), loaded by qengine.load (onnxruntime runs QOperator
  QLinearConv far slower than its QDQ form, so qdq_resnet18 -- the same network quantized
  to QDQ -- gives the fairer figure against onnxruntime's best);
- dynamic_ffn: a transformer feed-forward block (batch 64 x 768 -> 3072 -> 768) quantized by
  qengine.quantize_dynamic, the saved file run by both (onnxruntime fuses it into
  MatMulIntegerToFloat);
- conv_transpose: a 2x2 stride-2 ConvTranspose 64 -> 32 channels on 56x56, QDQ from
  qengine.quantize (int8 GEMM + col2im) against onnxruntime on the same QDQ file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE, os.path.join(os.path.dirname(HERE), "tests")]
import models  # noqa: E402
from gemm_table import timed_calls  # noqa: E402

import qengine  # noqa: E402
from qengine.api import _prepare, load, quantize, quantize_dynamic, read_model  # noqa: E402
from qengine.io import to_onnx  # noqa: E402


def _ort(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def qoperator_resnet18(tmp, fmt="QOperator"):
    from onnxruntime import quantization as oq
    proto = models.resnet18(size=112, width=32)
    fpath, qpath = os.path.join(tmp, "r.onnx"), os.path.join(tmp, f"r_{fmt}.onnx")
    onnx.save(to_onnx(_prepare(read_model(proto))), fpath)

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.it = iter([models.random_input(proto, batch=1, seed=s) for s in range(4)])

        def get_next(self):
            return next(self.it, None)
    logging.disable(logging.WARNING)
    oq.quantize_static(fpath, qpath, Reader(), quant_format=getattr(oq.QuantFormat, fmt),
                       per_channel=True)
    logging.disable(logging.NOTSET)
    return qpath, models.random_input(proto, batch=1, seed=9)


def qdq_resnet18(tmp):
    """The same network in onnxruntime's QDQ form (onnxruntime's fast path, for context)."""
    return qoperator_resnet18(tmp, "QDQ")


def dynamic_ffn(tmp):
    rng = np.random.default_rng(0)
    d, h = 768, 3072
    def t(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)
    inits = [t("w1", (d, h), d ** -0.5), t("b1", h, 0.1), t("w2", (h, d), h ** -0.5),
             t("b2", d, 0.1)]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["out"])]
    proto = models.make_model(nodes, [models.vi("input", [64, d])], [models.vi("out", None)],
                              inits, opset=13)
    path = os.path.join(tmp, "ffn_dynamic.onnx")
    quantize_dynamic(proto).save(path)
    return path, {"input": rng.standard_normal((64, d)).astype(np.float32)}


def conv_transpose(tmp):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 32, 2, 2)) / 8).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["input", "w", "b"], ["out"], kernel_shape=[2, 2],
                            strides=[2, 2])
    proto = models.make_model([node], [models.vi("input", [1, 64, 56, 56])],
                              [models.vi("out", None)],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(np.zeros(32, np.float32), "b")])
    calib = [rng.standard_normal((1, 64, 56, 56)).astype(np.float32) for _ in range(3)]
    path = os.path.join(tmp, "convt_qdq.onnx")
    quantize(proto, calib).save(path)
    return path, {"input": calib[0]}


def measure(engines, rounds, seconds):
    """(median, min) call time of each engine, rounds interleaved so drift hits both alike."""
    for fn in engines.values():
        timed_calls(fn, seconds / 2)
    times = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            times[name] += timed_calls(fn, seconds / rounds)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    qengine.set_num_threads(args.threads)
    print(f"threads={args.threads}; ratio = onnxruntime time / qengine time (> 1: qengine "
          f"faster)")
    with tempfile.TemporaryDirectory() as tmp:
        for make in (qoperator_resnet18, qdq_resnet18, dynamic_ffn, conv_transpose):
            path, feeds = make(tmp)
            ours, theirs = load(path), _ort(path, args.threads)
            a, b = ours.run(feeds), theirs.run(None, feeds)[0]
            diff = float(np.abs(a.astype(np.float64) - b).max())
            t = measure({"qengine": lambda: ours.run(feeds),
                         "onnxruntime": lambda: theirs.run(None, feeds)},
                        args.rounds, args.seconds)
            (q_med, q_min), (o_med, o_min) = t["qengine"], t["onnxruntime"]
            print(f"{make.__name__:<20} median: qengine {q_med * 1e3:7.3f} ms, onnxruntime "
                  f"{o_med * 1e3:7.3f} ms, ratio {o_med / q_med:5.2f} | best: ratio "
                  f"{o_min / q_min:5.2f} | max |diff| {diff:.3g}")


if __name__ == "__main__":
    main()
