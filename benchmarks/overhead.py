"""Calling overhead: what a Model.run call costs beyond its kernels.

Two measurements, both through the public API (Model.run with a numpy array, as users call it):
- one node: a float model with one tiny Conv (8 channels, 4x4, 1x1 kernel), quantized by
  qengine: quantize input -> one int8 kernel -> dequantize output;
- a chain: the same Conv+Relu repeated 1 and 100 times; the cost per additional op is
  (t(100) - t(1)) / 99, which isolates the per-step cost of the executor (the kernels do ~128
  multiply-adds each, a few nanoseconds).
onnxruntime (float, the same models) is timed interleaved beside it for scale.

    python benchmarks/overhead.py [--rounds 15] [--threads 1,2] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # this checkout's qengine
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import qengine
from qengine.tools.timing import summarize, time_interleaved

TARGET_ONE_NODE_US = 3.0
TARGET_PER_OP_US = 1.0


def conv_chain(n: int, channels: int = 8, hw: int = 4, seed: int = 0) -> onnx.ModelProto:
    """input (1, C, hw, hw) -> n x (Conv 1x1 C->C + bias, Relu) -> output."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for i in range(n):
        w = (rng.standard_normal((channels, channels, 1, 1)) / math.sqrt(channels))
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}"))
        y = "output" if i == n - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [y], name=f"relu{i}"))
        x = y
    shape = [1, channels, hw, hw]
    g = helper.make_graph(nodes, f"chain{n}",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def measure(rounds: int = 15, threads: int = 1, with_onnxruntime: bool = True) -> dict:
    """{'one_node_us', 'chain1_us', 'chain100_us', 'per_op_us', (onnxruntime the same), ...}"""
    qengine.set_num_threads(threads)
    x = np.random.default_rng(1).standard_normal((1, 8, 4, 4)).astype(np.float32)
    calib = np.random.default_rng(2).standard_normal((16, 8, 4, 4)).astype(np.float32)
    engines, steps = {}, {}
    for n in (1, 100):
        m = conv_chain(n)
        # target_sqnr=None: 100 random convolutions lose SQNR with depth, and the fidelity
        # target would keep some float; this measures the calling overhead of int8 steps
        q = qengine.quantize(m.SerializeToString(), list(calib[:, None]), progress=False,
                             target_sqnr=None)
        assert not q.node_counts()["float"], "the overhead chain must run int8 only"
        q.run(x)
        steps[n] = len(q.run_profiled(x)[1])
        engines[f"qengine/{n}"] = (lambda q=q: q.run(x))
        if with_onnxruntime:
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            s = ort.InferenceSession(m.SerializeToString(), so,
                                     providers=["CPUExecutionProvider"])
            engines[f"onnxruntime/{n}"] = (lambda s=s: s.run(None, {"input": x}))
    t = time_interleaved(engines, rounds=rounds, warmup=200, min_round_seconds=0.05)
    out = {"threads": threads, "rounds": rounds, "steps": {str(k): v for k, v in steps.items()}}
    for prefix in ("qengine", "onnxruntime"):
        if f"{prefix}/1" not in t.samples:
            continue
        one, hundred = t.samples[f"{prefix}/1"], t.samples[f"{prefix}/100"]
        out[prefix] = {
            "one_node_us": summarize(one).median * 1e6,
            "chain100_us": summarize(hundred).median * 1e6,
            # per round, then the median: the two chains ran side by side in each round
            "per_op_us": summarize([(h - o) / 99 for h, o in zip(hundred, one)]).median * 1e6,
        }
    return out


def markdown(results: list) -> str:
    """One table of the measure() results, one block of rows per thread count."""
    rows = ["| threads | measurement | qengine us | onnxruntime fp32 us | target | met |",
            "|---:|---|---:|---:|---:|:-:|"]
    for res in results:
        q, o = res["qengine"], res.get("onnxruntime", {})
        for key, label, target in [("one_node_us", "one-node model, per call",
                                    TARGET_ONE_NODE_US),
                                   ("per_op_us", "per additional op (chain of 100)",
                                    TARGET_PER_OP_US),
                                   ("chain100_us", "chain of 100 ops, per call", None)]:
            met = "" if target is None else ("yes" if q[key] <= target else "**no**")
            ort = f"{o[key]:.2f}" if o else "-"
            rows.append(f"| {res['threads']} | {label} | {q[key]:.2f} | {ort} | "
                        f"{'' if target is None else f'<= {target:g}'} | {met} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    p.add_argument("--json")
    a = p.parse_args(argv)
    results = [measure(a.rounds, int(t)) for t in a.threads.split(",") if t]
    print(markdown(results))
    print(f"(compiled steps: one node {results[0]['steps']['1']}, chain of 100 conv+relu "
          f"{results[0]['steps']['100']})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
