"""scikit-learn's digits and the small CNN the accuracy tests train on them (torch), as ONNX."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper


def load_digits_images():
    """(x float32 (n, 1, 8, 8) in [0, 1], y int64 labels)."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def train_digits_cnn(x, y, c1: int = 16, c2: int = 32, seed: int = 0, epochs: int = 12,
                     threads: Optional[int] = None):
    """Conv(c1)-ReLU-Conv(c2, stride 2)-ReLU-Flatten-Gemm(10) trained with Adam on (x, y),
    returned as an ONNX model with input "x" (N, 1, 8, 8) and output "logits". threads: torch's
    thread count while training (None: leave it)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, c1, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(c1, c2, 3, padding=1, stride=2), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(c2 * 16, 10))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                idx = perm[i:i + 64]
                loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        p = [t.detach().numpy() for t in net.parameters()]
    finally:
        torch.set_num_threads(before)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)]
    names = ["w1", "b1", "w2", "b2", "w3", "b3"]
    inits = [numpy_helper.from_array(a, n) for n, a in zip(names, p)]
    g = helper.make_graph(nodes, "digits",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
