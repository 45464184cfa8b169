"""qengine bench: the statistics on a fake clock (deterministic), the profile arithmetic, and
the CLI end to end through subprocess on a small model (JSON against the documented schema,
plot, profile, errors)."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest

import models
import qengine
from qengine.tools import bench
from qengine.tools.profile import aggregate_profile
from qengine.tools.timing import (calls_per_round, ratio_stats, summarize,
                                  time_interleaved)

ROOT = pathlib.Path(__file__).resolve().parents[2]
count_gop = bench.builtin_models_module().count_gop     # from ONNX shapes, not from qengine


# ---- statistics on a fake clock ---------------------------------------------------------------
class FakeClock:
    """A clock that only moves when an engine 'runs': engine calls advance it by a scripted
    cost, so every sample time_interleaved records is known in advance."""

    def __init__(self):
        self.now = 0.0
        self.cpu_now = 0.0          # CPU time: the engines get a scripted share of wall time
        self.log = []

    def __call__(self):
        return self.now

    def cpu(self):
        return self.cpu_now

    def engine(self, name, cost, cpu_share=1.0):
        """cost(k): seconds of the k-th call (0-based, warm-up calls included)."""
        count = [0]

        def run():
            c = cost(count[0])
            self.now += c
            self.cpu_now += c * cpu_share
            self.log.append(name)
            count[0] += 1
        return run


def test_summarize_matches_numpy_quantiles():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0]
    s = summarize(xs)
    assert s.median == np.median(xs)
    assert (s.q1, s.q3) == tuple(np.percentile(xs, [25, 75]))
    assert (s.min, s.max, s.n) == (1.0, 10.0, 7)
    assert s.mean == pytest.approx(np.mean(xs))
    assert s.iqr == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    assert summarize([2.5]).median == 2.5 and summarize([2.5]).iqr == 0
    with pytest.raises(ValueError):
        summarize([])


def test_interleaved_rounds_on_a_fake_clock():
    clk = FakeClock()
    # a: 1 ms per call, b: 3 ms per call
    a = clk.engine("a", lambda k: 0.001, cpu_share=0.5)     # preempted half of the time
    b = clk.engine("b", lambda k: 0.003)
    t = time_interleaved({"a": a, "b": b}, rounds=4, warmup=3, min_round_seconds=0.0095,
                         clock=clk, cpu_clock=clk.cpu)
    # the last warm-up call sized the rounds: ceil(9.5 ms / 1 ms) = 10, ceil(9.5 / 3) = 4
    assert t.calls_per_round == {"a": 10, "b": 4}
    assert t.warmup_seconds == {"a": pytest.approx(0.001), "b": pytest.approx(0.003)}
    assert t.samples["a"] == pytest.approx([0.001] * 4)
    assert t.samples["b"] == pytest.approx([0.003] * 4)
    assert t.cpu_samples["a"] == pytest.approx([0.0005] * 4)
    assert t.cpu_samples["b"] == pytest.approx([0.003] * 4)
    assert t.cpu_stats("a").median == pytest.approx(0.0005)
    # warm-up: 3 calls each, a then b; then rounds alternate the order: ab, ba, ab, ba
    assert clk.log[:6] == ["a"] * 3 + ["b"] * 3
    blocks = []
    for name in clk.log[6:]:
        if not blocks or blocks[-1][0] != name:
            blocks.append([name, 0])
        blocks[-1][1] += 1
    assert blocks == [["a", 10], ["b", 8], ["a", 20], ["b", 8], ["a", 10]]
    r = ratio_stats(t.samples["a"], t.samples["b"])
    assert r.median == pytest.approx(1 / 3)


def test_settle_pauses_before_every_block_untimed():
    clk = FakeClock()
    slept = []
    woken = {"a": False, "b": False}

    def sleep(s):               # idle time passes on the wall clock, outside the samples
        slept.append((s, clk.log[-1] if clk.log else None))
        clk.now += s
        woken.update(a=True, b=True)

    def after_idle(name, base):     # the first call after a pause is 10x slower
        def cost(k):
            slow, woken[name] = woken[name], False
            return base * (10 if slow else 1)
        return cost
    a = clk.engine("a", after_idle("a", 0.001))
    b = clk.engine("b", after_idle("b", 0.002))
    t = time_interleaved({"a": a, "b": b}, rounds=3, warmup=1, min_round_seconds=0.0035,
                         clock=clk, cpu_clock=clk.cpu, settle_seconds=0.05, sleep=sleep)
    assert [s for s, _ in slept] == [0.05] * 6             # one pause per engine per round
    assert t.samples["a"] == pytest.approx([0.001] * 3)    # neither the pause nor the slow
    assert t.samples["b"] == pytest.approx([0.002] * 3)    # call after it is in a sample
    # each pause is followed by one untimed call of the engine, then its timed block
    assert clk.log[2:] == ["a"] * 5 + ["b"] * 3 + ["b"] * 3 + ["a"] * 5 + ["a"] * 5 + ["b"] * 3
    slept.clear()               # one engine alone: nothing to settle from
    time_interleaved({"a": a}, rounds=2, warmup=1, clock=clk, cpu_clock=clk.cpu,
                     settle_seconds=0.05, sleep=sleep)
    assert slept == []
    with pytest.raises(ValueError, match="settle_seconds"):
        time_interleaved({"a": a}, settle_seconds=-1.0)


def test_per_round_ratios_cancel_drift_and_the_median_drops_an_outlier_round():
    clk = FakeClock()
    # both engines slow down together (drift: x1, x2, x3, x4, x5), and round 3 has a spike on
    # engine a only; a is always 2x faster than b within a round
    def cost(name, base):
        def c(k):
            r = max(0, k - 1)            # 1 warm-up call, then one call per round
            scale = 1 + r
            spike = 50 if (name == "a" and r == 2) else 1
            return base * scale * spike
        return c
    a = clk.engine("a", cost("a", 0.001))
    b = clk.engine("b", cost("b", 0.002))
    t = time_interleaved({"a": a, "b": b}, rounds=5, warmup=1, min_round_seconds=0.0,
                         clock=clk, cpu_clock=clk.cpu)
    assert t.calls_per_round == {"a": 1, "b": 1}
    assert t.samples["a"] == pytest.approx([0.001, 0.002, 0.150, 0.004, 0.005])
    r = ratio_stats(t.samples["a"], t.samples["b"])
    assert r.median == pytest.approx(0.5)            # drift and the spike both gone
    assert r.max == pytest.approx(25.0)              # the spike is still visible in max
    assert summarize(t.samples["a"]).median == pytest.approx(0.004)  # drift is not


def test_timing_argument_errors_and_round_sizing():
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, warmup=0)
    with pytest.raises(ValueError):
        time_interleaved({}, rounds=1)
    with pytest.raises(ValueError):
        ratio_stats([1.0, 2.0], [1.0])
    assert calls_per_round(0.5, 0.05) == 1
    assert calls_per_round(1e-6, 0.05) == 10_000          # capped
    assert calls_per_round(0.0, 0.05) == 10_000
    assert calls_per_round(0.001, 0.0105) == 11


def test_profile_aggregation():
    runs = [[("Conv", "c1", 0.002, 4e9), ("Add", "a1", 0.001, 0.0), ("Conv", "c2", 0.001, 1e9)],
            [("Conv", "c1", 0.004, 4e9), ("Add", "a1", 0.001, 0.0), ("Conv", "c2", 0.003, 1e9)],
            [("Conv", "c1", 0.003, 4e9), ("Add", "a1", 0.002, 0.0), ("Conv", "c2", 0.002, 1e9)]]
    walls = [0.005, 0.010, 0.008]
    p = aggregate_profile(runs, walls, peak_gops=1000.0)
    ms = [s["ms"] for s in p["steps"]]
    assert ms == pytest.approx([3.0, 1.0, 2.0])            # per-step medians
    assert p["steps_ms"] == pytest.approx(6.0) and p["wall_ms"] == pytest.approx(8.0)
    assert p["coverage"] == pytest.approx(np.median([4 / 5, 8 / 10, 7 / 8]))
    assert sum(s["share"] for s in p["steps"]) == pytest.approx(1.0)
    conv = p["op_types"][0]
    assert (conv["op"], conv["count"], conv["ms"]) == ("Conv", 2, pytest.approx(5.0))
    assert conv["gops"] == pytest.approx(5.0 / 5e-3)       # 5 GOP in 5 ms
    assert conv["peak_fraction"] == pytest.approx(1.0)
    assert p["steps"][0]["gops"] == pytest.approx(4 / 3e-3)
    add = p["op_types"][1]
    assert add["gops"] is None and add["peak_fraction"] is None
    assert aggregate_profile(runs, walls)["steps"][0]["peak_fraction"] is None
    with pytest.raises(ValueError):
        aggregate_profile([runs[0], runs[1][:2]], walls[:2])


# ---- the CLI end to end -----------------------------------------------------------------------
def qe(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "qengine.cli", "bench", *map(str, args)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"qengine bench {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    m = models.resnet18()                # 32x32, width 16: a few ms to quantize
    path = d / "r18.onnx"
    onnx.save(m, str(path))
    calib = np.concatenate([models.random_input(m, batch=4, seed=s)["input"] for s in range(2)])
    np.save(d / "calib.npy", calib)
    return m, path, d


def test_cli_json_plot_profile(small_model):
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    m, path, d = small_model
    out, png = d / "r.json", d / "r.png"
    isa = ["--isa", "avx2"] if "avx2" in qengine.cpu.available_isas() else []
    r = qe(path, "--calib", d / "calib.npy", "--threads", "1", "--batch", "1,2",
           "--compare", "onnxruntime,onnxruntime-int8", "--rounds", "3", "--min-time", "0.01",
           "--profile", "--profile-runs", "3", "--json", out, "--plot", png, *isa)
    assert "no --calib" not in r.stderr
    res = json.loads(out.read_text())
    schema = json.loads((ROOT / "docs" / "bench.schema.json").read_text())
    jsonschema.validate(res, schema, cls=jsonschema.Draft202012Validator)
    assert res["settings"]["engines"] == ["qengine", "onnxruntime", "onnxruntime-int8"]
    if isa:     # the kernel path asked for, and its peak as the probe measured it
        mach = res["machine"]
        assert (mach["isa"], mach["peak_source"]) == ("avx2", "probe")
        assert mach["peak_gops_per_core"] > 0
        assert res["results"][0]["peak_gops"] == mach["peak_gops_per_core"]
    assert res["model"]["calibration"] == {"source": "file", "batches": 1, "samples": 8}
    quant = res["model"]["quantization"]          # real data: qengine.quantize's defaults
    assert quant["target_sqnr"] == 30.0 and quant["int8_nodes"] > 0
    assert quant["float_nodes"] == len(quant["float"])
    assert f"{quant['int8_nodes']} int8 nodes" in r.stdout and "fidelity target 30.0" in r.stdout
    assert [(c["threads"], c["batch"]) for c in res["results"]] == [(1, 1), (1, 2)]
    assert res["model"]["gop_per_image"] == pytest.approx(count_gop(m, 1), rel=1e-6)
    sizes = res["model"]["sizes_bytes"]
    assert sizes["float"] == path.stat().st_size and sizes["qengine"] < sizes["float"] / 3
    for c in res["results"]:
        assert c["gop"] == pytest.approx(count_gop(m, c["batch"]), rel=1e-6)
        for name, e in c["engines"].items():
            assert len(e["samples_ms"]) == 3 and e["min_ms"] <= e["median_ms"] <= e["max_ms"]
            assert e["median_ms"] == pytest.approx(np.median(e["samples_ms"]))
            assert 0 < e["cpu_min_ms"] <= e["cpu_median_ms"]
        for name, ratio in c["ratios"].items():
            per_round = np.array(c["engines"]["qengine"]["samples_ms"]) / \
                np.array(c["engines"][name]["samples_ms"])
            assert ratio["latency_ratio"] == pytest.approx(np.median(per_round))
            assert ratio["cpu_ratio"] is None or ratio["cpu_ratio"] > 0
        # int8 outputs of both engines are close to float (random calibration would be too)
        assert c["fidelity"]["reference"] == "onnxruntime"
        assert c["fidelity"]["sqnr_db"]["qengine"] > 20
        assert c["fidelity"]["sqnr_db"]["onnxruntime-int8"] > 20
        p = c["profile"]
        assert sum(s["ms"] for s in p["steps"]) == pytest.approx(p["steps_ms"])
        assert sum(t["ms"] for t in p["op_types"]) == pytest.approx(p["steps_ms"])
        assert sum(t["share"] for t in p["op_types"]) == pytest.approx(1.0)
        assert sum(t["gop"] for t in p["op_types"]) == pytest.approx(c["gop"])
        assert 0.3 < p["coverage"] <= 1.0        # the steps are most of a run's wall time
        assert p["op_types"][0]["op"] == "Conv" and p["op_types"][0]["gops"] > 0
    # the text report and the plot
    assert "qengine" in r.stdout and "onnxruntime-int8" in r.stdout and "op type" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("threads", [1, 2])
def test_profile_follows_a_settle_pause(small_model, threads):
    """At 2+ threads the profiled runs start after the settle pause, as every timed block does:
    the engine timed last may be another one whose pool still spins (it had taken a core from
    the profiled runs). At 1 thread nothing pauses."""
    from qengine.tools.engines import ENGINES, Engine
    m, path, d = small_model
    subject = bench.load_subject(str(path), calibration=np.load(d / "calib.npy"),
                                 warn=lambda *a: None)
    log = []
    profiled = subject.model.run_profiled
    subject.model.run_profiled = lambda feeds: (log.append("profile"), profiled(feeds))[1]

    def build_other(subj, t):
        return lambda feeds: log.append("other")
    other = Engine("other", "a spinning pool", (), build_other, lambda subj: None)
    res = bench.run_config(subject, [ENGINES["qengine"], other], threads, 1, rounds=2, warmup=1,
                           min_round_seconds=0.0, profile=True, profile_runs=2,
                           peak_per_core=None, settle_seconds=0.05,
                           sleep=lambda s: log.append(f"sleep {s}"))
    assert res["profile"]["runs"] == 2
    # after the timing, one run_profiled counts the GOPs; the profile is one untimed call and
    # its 2 runs
    assert "other" in log
    if threads == 1:
        assert not any(e.startswith("sleep") for e in log) and log[-5:] == ["other"] + ["profile"] * 4
    else:
        assert log[-5:] == ["profile", "sleep 0.05"] + ["profile"] * 3


def test_fidelity_target_follows_the_calibration_data(small_model):
    """Random calibration turns the fidelity target off (int8 everywhere, like
    onnxruntime-int8); an explicit target is passed to quantize and reported."""
    m, path, d = small_model
    fast = dict(compare=[], rounds=1, warmup=1, min_round_seconds=0.0, progress=False,
                print_fn=lambda *a: None, warn=lambda m: None)
    res = bench.benchmark(str(path), **fast)
    quant = res["model"]["quantization"]
    assert res["model"]["calibration"]["source"] == "random"
    assert "target_sqnr" not in quant and quant["float_nodes"] == 0 and quant["int8_nodes"] > 0
    assert any("fidelity target off" in n for n in res["notes"])
    # a target int8 cannot reach: the search keeps nodes float, and the report says which
    res = bench.benchmark(str(path), quantize_options={"target_sqnr": 150.0}, **fast)
    quant = res["model"]["quantization"]
    assert quant["target_sqnr"] == 150.0 and quant["kept_float"] and quant["float_nodes"] > 0
    assert not any("fidelity target off" in n for n in res["notes"])
    text = bench.format_result(res)
    assert "fidelity target 150.0 dB" in text and f"{quant['float_nodes']} float (" in text


@pytest.mark.parametrize("args, message", [
    (["no_such_model"], "neither a model file nor a built-in model"),
    (["{model}", "--compare", "onnxruntime,tensorrt"], "unknown engine 'tensorrt'"),
    (["{quantized}", "--compare", "onnxruntime"], "--float"),
    (["{model}", "--compare", "torch"], "needs a torch model"),
    (["{model}", "--threads", "0"], "positive integers"),
    (["{model}", "--calib", "{model}"], "expected a .npy, a .npz or a directory"),
    (["{calib}"], "cannot load ONNX model"),          # not a model at all
])
def test_cli_errors_are_one_clear_line(small_model, args, message):
    m, path, d = small_model
    quantized = d / "q.onnx"
    if not quantized.exists():
        qengine.quantize(str(path), np.load(d / "calib.npy"), progress=False).save(quantized)
    args = [a.format(model=path, quantized=quantized, calib=d / "calib.npy") for a in args]
    r = qe(*args, "--no-progress", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("qengine: error:")
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_api_quantized_model_defaults_to_onnxruntime_on_the_same_file(small_model):
    pytest.importorskip("onnxruntime")
    m, path, d = small_model
    q = qengine.quantize(str(path), np.load(d / "calib.npy"), progress=False)
    qpath = d / "q2.onnx"
    q.save(qpath)
    res = bench.benchmark(str(qpath), rounds=2, min_round_seconds=0.002, progress=False)
    assert res["model"]["source"] == "quantized-onnx"
    assert res["settings"]["engines"] == ["qengine", "onnxruntime-qdq"]
    assert res["model"]["calibration"]["source"] == "none"
    # with the float model: the float baselines, and onnxruntime-int8 calibrates on random data
    warnings = []
    res = bench.benchmark(str(qpath), float_model=str(path), rounds=1,
                          compare=["onnxruntime-int8", "fp32"], min_round_seconds=0.0,
                          progress=False, warn=warnings.append)
    assert res["settings"]["engines"] == ["qengine", "onnxruntime-int8", "fp32"]
    assert res["model"]["calibration"]["source"] == "random" and warnings
    assert res["results"][0]["fidelity"]["reference"] == "fp32"
    # skipping instead of failing
    res = bench.benchmark(str(qpath), compare=["onnxruntime", "torch"], rounds=1,
                          min_round_seconds=0.0, progress=False, strict=False)
    assert [s["engine"] for s in res["skipped"]] == ["onnxruntime", "torch"]
    assert "skipped onnxruntime" in bench.format_result(res)


def test_temporary_files_go_with_the_benchmark(small_model, tmp_path, monkeypatch):
    """onnxruntime-int8's model files (about 100 MB for ResNet-18) are removed when the
    benchmark returns or fails (every run had left a qengine-bench-* directory behind), its
    size is still reported, and a run that writes no file makes no directory."""
    pytest.importorskip("onnxruntime")
    m, path, d = small_model
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calib = np.load(d / "calib.npy")
    common = dict(calibration=calib, rounds=1, min_round_seconds=0.0, progress=False)
    made, real_path = [], bench.Subject.path

    def recorded_path(self, name):                      # the files the engines wrote
        made.append(real_path(self, name))
        return made[-1]
    monkeypatch.setattr(bench.Subject, "path", recorded_path)
    res = bench.benchmark(str(path), compare=["onnxruntime-int8"], threads=(1, 2), **common)
    assert res["model"]["sizes_bytes"]["onnxruntime-int8"] > 0
    assert any(p.endswith("onnxruntime-int8.onnx") for p in made)   # it did write there
    assert not list(tmp_path.glob("qengine-bench-*"))
    bench.benchmark(str(path), compare=["fp32"], **common)
    assert not list(tmp_path.glob("qengine-bench-*"))

    def failing_run_config(subject, engines, *a, **k):
        engines[1].build(subject, 1)                    # writes onnxruntime's model
        raise RuntimeError("midway")
    monkeypatch.setattr(bench, "run_config", failing_run_config)
    with pytest.raises(RuntimeError, match="midway"):
        bench.benchmark(str(path), compare=["onnxruntime-int8"], **common)
    assert len(made) > 3 and not list(tmp_path.glob("qengine-bench-*"))


def test_onnxruntime_int8_takes_an_old_model_zoo_file(tmp_path):
    """An IR 3, opset 9 file (the ONNX model zoo's: every initializer also a graph input):
    onnxruntime's quantize_static had failed on it ("Required inputs ... are missing", then an
    invalid model: DequantizeLinear with an axis below opset 13). The harness hands it the
    model with the initializers out of the inputs and the opset raised, and says so."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b = np.zeros(8, np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "zoo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 3, 3, 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 3
    path = tmp_path / "zoo.onnx"
    onnx.save(m, str(path))
    calib = np.random.default_rng(1).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    res = bench.benchmark(str(path), calibration=calib, compare=["onnxruntime",
                          "onnxruntime-int8"], rounds=1, min_round_seconds=0.0, progress=False)
    assert res["settings"]["engines"] == ["qengine", "onnxruntime", "onnxruntime-int8"]
    assert res["model"]["sizes_bytes"]["onnxruntime-int8"] > 0
    assert any("from opset 9 to 13" in n for n in res["notes"]), res["notes"]
    assert res["results"][0]["fidelity"]["sqnr_db"]["onnxruntime-int8"] > 20   # it works


def test_calibration_batches_respect_a_fixed_batch_dimension():
    class T:
        def __init__(self, shape):
            self.name, self.shape, self.dtype = "x", shape, np.float32
    data = np.zeros((10, 3), np.float64)
    fixed = bench.calibration_batches([T((2, 3))], data)
    assert [b["x"].shape for b in fixed] == [(2, 3)] * 5 and fixed[0]["x"].dtype == np.float32
    free = bench.calibration_batches([T(("N", 3))], data, max_batch=4)
    assert [b["x"].shape[0] for b in free] == [4, 4, 2]
    with pytest.raises(ValueError, match="lacks input"):
        bench.calibration_batches([T(("N", 3))], {"y": data})


def test_keras_file_through_the_harness(tmp_path):
    pytest.importorskip("onnxruntime")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    m = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    path = tmp_path / "small.keras"
    m.save(str(path))
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype(np.float32)
    res = bench.benchmark(str(path), calibration=x, compare=["onnxruntime"], rounds=2,
                          min_round_seconds=0.0, progress=False)
    assert res["model"]["source"] == "keras"
    assert res["model"]["calibration"]["source"] == "given"
    c = res["results"][0]
    # onnxruntime runs the float graph qengine read from the file: it agrees with Keras
    assert c["engines"]["onnxruntime"]["median_ms"] > 0
    assert c["fidelity"]["sqnr_db"]["qengine"] > 25
    ref = bench._as_list(m.predict(x[:1], verbose=0))[0]
    float_onnx = qengine.load(str(path)).to_onnx().SerializeToString()   # what the harness runs
    sess = __import__("onnxruntime").InferenceSession(float_onnx,
                                                      providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x[:1]})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
