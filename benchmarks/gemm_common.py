"""What the GEMM benchmarks share: one problem set up for qengine and for onnxruntime.

The onnxruntime side is a single MatMulInteger node (uint8 A with a zero point, int8 B as a
constant initializer, int32 output), the op whose semantics gemm_u8s8(out="i32") has, with
graph optimizations on and intra_op_num_threads set; the qengine side packs B once and calls
gemm_u8s8 with a fresh output each time, as onnxruntime allocates its output per run.
"""
from __future__ import annotations

import numpy as np

from qengine import _kernels


# (M, N, K): square sizes, a vector times a matrix, and a 3x3 conv (64 -> 64 channels on 56x56,
# im2col M = 3136 pixels, K = 576 = 3*3*64, N = 64 output channels).
SHAPES = [(128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024),
          (2048, 2048, 2048), (1, 1024, 1024), (3136, 64, 576)]


def peak_gops_per_core() -> float:
    """One core's int8 peak on the active kernel path, measured by its probe (csrc/peak)."""
    from qengine.tools.profile import peak_gops_per_core as measured
    return measured(_kernels.get_isa()) or float("nan")


class Problem:
    """Random operands of one (M, N, K) GEMM and a callable per engine."""

    def __init__(self, M, N, K, seed=0):
        rng = np.random.default_rng(seed)
        self.M, self.N, self.K = M, N, K
        self.a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        self.b = rng.integers(-127, 128, (K, N), dtype=np.int8)
        self.a_zp = 113
        self.packed = _kernels.GemmPacked(self.b)

    @property
    def ops(self):
        return 2.0 * self.M * self.N * self.K

    def qengine(self, threads):
        _kernels.set_num_threads(threads)
        packed, a, a_zp = self.packed, self.a, self.a_zp

        def run():
            _kernels.set_num_threads(threads)  # cheap when unchanged; engines alternate
            return _kernels.gemm_u8s8(packed, a, a_zp, out="i32")
        return run

    def onnxruntime(self, threads):
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        node = helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])
        graph = helper.make_graph(
            [node], "gemm",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [self.M, self.K])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [self.M, self.N])],
            [numpy_helper.from_array(self.b, "B"),
             numpy_helper.from_array(np.array(self.a_zp, np.uint8), "a_zp")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        feeds = {"A": self.a}
        return lambda: sess.run(None, feeds)[0]
