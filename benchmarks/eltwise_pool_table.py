"""Pooling and element-wise kernels beside the matching onnxruntime single-node models, timed
interleaved in the same run (MobileNetV2 / ResNet-18 tensor sizes, batch 1, 1 thread):

    python benchmarks/eltwise_pool_table.py [--repeat 25] [--threads 1]

onnxruntime runs its NHWC contrib kernels where they exist (QLinearAveragePool and
QLinearGlobalAveragePool with channels_last=1, QLinearAdd, QLinearMul, QLinearSigmoid); MaxPool
is NCHW (it has no uint8 NHWC form)."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conv_table import interleaved_medians  # noqa: E402


def ort_session(nodes, inputs, outputs, inits, threads, opset=13):
    import onnxruntime as ort
    from onnx import helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def cases(threads):
    from onnx import TensorProto as TP, helper, numpy_helper as nh
    from qengine import _kernels as K
    rng = np.random.default_rng(0)
    vi = helper.make_tensor_value_info
    q = lambda name, v, dt=np.uint8: nh.from_array(np.array(v, dt), name)  # noqa: E731
    qp = [q("sx", 0.02, np.float32), q("zx", 100), q("sy", 0.03, np.float32), q("zy", 90)]

    x = rng.integers(0, 256, (1, 112, 112, 64), dtype=np.uint8)
    xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    s = ort_session([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1])],
                    [vi("x", TP.UINT8, xn.shape)], [vi("y", TP.UINT8, None)], [], threads)
    y = np.empty((1, 56, 56, 64), np.uint8)
    yield ("maxpool 3x3/2 112x112x64", lambda: K.maxpool_u8(x, 3, strides=2, pads=1, y=y),
           lambda: s.run(None, {"x": xn}), x.size)

    s2 = ort_session([helper.make_node("QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"],
                                       domain="com.microsoft", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                       channels_last=1, count_include_pad=0)],
                     [vi("x", TP.UINT8, x.shape)], [vi("y", TP.UINT8, None)], qp, threads)
    ya = np.empty_like(x)
    yield ("avgpool 3x3/1 112x112x64", lambda: K.avgpool_u8(x, 3, 100, 0.02 / 0.03, 90, pads=1, y=ya),
           lambda: s2.run(None, {"x": x}), x.size)

    g = rng.integers(0, 256, (1, 7, 7, 1280), dtype=np.uint8)
    s3 = ort_session([helper.make_node("QLinearGlobalAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"],
                                       domain="com.microsoft", channels_last=1)],
                     [vi("x", TP.UINT8, g.shape)], [vi("y", TP.UINT8, None)], qp, threads)
    yield ("global avgpool 7x7x1280", lambda: K.global_avgpool_u8(g, 100, 0.02 / 0.03, 90),
           lambda: s3.run(None, {"x": g}), g.size)

    a = rng.integers(0, 256, (1, 56, 56, 144), dtype=np.uint8)
    b = rng.integers(0, 256, (1, 56, 56, 144), dtype=np.uint8)
    for op in ("Add", "Mul"):
        sb = ort_session([helper.make_node(f"QLinear{op}", ["a", "sx", "zx", "b", "sx", "zx", "sy", "zy"],
                                           ["y"], domain="com.microsoft")],
                         [vi("a", TP.UINT8, a.shape), vi("b", TP.UINT8, b.shape)],
                         [vi("y", TP.UINT8, None)], qp, threads)
        yb = np.empty_like(a)
        if op == "Add":
            qf = lambda: K.add_u8(a, b, 100, 0.02 / 0.03, 100, 0.02 / 0.03, 90, y=yb)  # noqa: E731
        else:
            qf = lambda: K.mul_u8(a, b, 100, 100, 0.02 * 0.02 / 0.03, 90, y=yb)  # noqa: E731
        yield (f"{op.lower()} 56x56x144", qf, (lambda sb=sb: sb.run(None, {"a": a, "b": b})), a.size)

    table = np.empty(256, np.uint8)  # the sigmoid table qengine's graph layer would build
    v = (np.arange(256) - 100) * np.float32(0.02)
    table[:] = np.clip(np.rint(1 / (1 + np.exp(-v)) / 0.03) + 90, 0, 255)
    s4 = ort_session([helper.make_node("QLinearSigmoid", ["a", "sx", "zx", "sy", "zy"], ["y"],
                                       domain="com.microsoft")],
                     [vi("a", TP.UINT8, a.shape)], [vi("y", TP.UINT8, None)], qp, threads)
    yl = np.empty_like(a)
    yield ("lut (sigmoid) 56x56x144", lambda: K.lut_u8(a, table, y=yl),
           lambda: s4.run(None, {"a": a}), a.size)

    f = rng.standard_normal((1, 56, 56, 144)).astype(np.float32)
    s5 = ort_session([helper.make_node("QuantizeLinear", ["f", "sx", "zx"], ["y"])],
                     [vi("f", TP.FLOAT, f.shape)], [vi("y", TP.UINT8, None)], qp, threads)
    yq = np.empty(f.shape, np.uint8)
    yield ("quantize f32->u8 56x56x144", lambda: K.quantize(f, 0.02, 100, y=yq),
           lambda: s5.run(None, {"f": f}), f.size)
    s6 = ort_session([helper.make_node("DequantizeLinear", ["a", "sx", "zx"], ["y"])],
                     [vi("a", TP.UINT8, a.shape)], [vi("y", TP.FLOAT, None)], qp, threads)
    yd = np.empty(a.shape, np.float32)
    yield ("dequantize u8->f32 56x56x144", lambda: K.dequantize(a, 0.02, 100, y=yd),
           lambda: s6.run(None, {"a": a}), a.size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=25)
    args = ap.parse_args(argv)
    from qengine import _kernels as K
    K.set_num_threads(args.threads)
    print("| kernel | qengine us | onnxruntime us | ratio (ort/qe) | qengine GB/s in |")
    print("|---|---:|---:|---:|---:|")
    for name, qf, of, nbytes in cases(args.threads):
        tq, to = interleaved_medians([qf, of], args.repeat)
        print(f"| {name} | {tq*1e6:.1f} | {to*1e6:.1f} | {to/tq:.2f}x | {nbytes/tq/1e9:.1f} |",
              flush=True)
    print(f"\nisa={K.get_isa()} threads={args.threads} "
          f"onnxruntime={__import__('onnxruntime').__version__}")


if __name__ == "__main__":
    main()
