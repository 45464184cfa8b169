"""Train qengine's bundled demo model and write it into the package (qengine/data/).

The model is the tutorial's Keras CNN -- Conv2D(32 filters, 3x3, ReLU) on 32x32x3 -> Flatten ->
Dense(10, softmax) -- trained on scikit-learn's digits (8x8, 0..16) upscaled to 32x32x3 by
qengine.demo.prepare_images. It is written as a small ONNX file with an NHWC input, as a Keras
user would hand it over: Transpose(NHWC->NCHW) -> Conv -> Relu -> Transpose(->NHWC) -> Flatten ->
Gemm -> Softmax (the Flatten runs in NHWC order, exactly like Keras' Flatten).

Reproducible: fixed seeds, one thread, deterministic torch algorithms. Needs torch (the `test`
extra) and scikit-learn. Usage:  python scripts/train_demo_model.py
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np

SEED = 20261125
DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "qengine" / "data"


def build_onnx(conv_w, conv_b, dense_w, dense_b):
    """The trained weights as an ONNX model with input 'input' (N, 32, 32, 3) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["x_nchw", "conv.weight", "conv.bias"], ["conv_out"],
                         kernel_shape=[3, 3], name="conv2d"),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("Transpose", ["relu_out"], ["relu_nhwc"], perm=[0, 2, 3, 1], name="to_nhwc"),
        helper.make_node("Flatten", ["relu_nhwc"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "dense.weight", "dense.bias"], ["logits"], transB=1,
                         name="dense"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1, name="softmax"),
    ]
    inits = [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), n) for n, a in
             [("conv.weight", conv_w), ("conv.bias", conv_b), ("dense.weight", dense_w),
              ("dense.bias", dense_b)]]
    graph = helper.make_graph(
        nodes, "qengine_demo_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="qengine scripts/train_demo_model.py")
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=pathlib.Path, default=DATA_DIR)
    args = parser.parse_args()

    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import onnx

    from qengine.demo import prepare_images

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8) in 0..16
    labels = digits.target.astype(np.int64)
    tr_img, te_img, tr_lab, te_lab = train_test_split(
        images, labels, test_size=0.25, random_state=SEED % 2**31, stratify=labels)

    x = torch.from_numpy(prepare_images(tr_img)).permute(0, 3, 1, 2).contiguous()  # NCHW
    y = torch.from_numpy(tr_lab)

    conv = torch.nn.Conv2d(3, 32, 3)
    dense = torch.nn.Linear(30 * 30 * 32, 10)
    params = list(conv.parameters()) + list(dense.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def forward(xb):
        h = torch.relu(conv(xb)).permute(0, 2, 3, 1).flatten(1)  # NHWC flatten, as Keras
        return dense(h)

    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(forward(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(x):.4f}")

    with torch.no_grad():
        xt = torch.from_numpy(prepare_images(te_img)).permute(0, 3, 1, 2).contiguous()
        acc = float((forward(xt).argmax(1).numpy() == te_lab).mean())
    print(f"float test accuracy (torch): {acc:.4f}")

    model = build_onnx(conv.weight.detach().numpy(), conv.bias.detach().numpy(),
                       dense.weight.detach().numpy(), dense.bias.detach().numpy())
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "demo_digits.onnx"))
    # Calibration: the first 100 training images (a user's "few representative inputs").
    np.savez_compressed(args.out / "demo_digits.npz", calib_images=tr_img[:100],
                        test_images=te_img, test_labels=te_lab.astype(np.uint8))
    print(f"wrote {args.out / 'demo_digits.onnx'} and {args.out / 'demo_digits.npz'}")


if __name__ == "__main__":
    main()
