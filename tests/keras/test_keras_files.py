"""Keras files: import without Keras or TensorFlow, Keras-2 era files, and bad files that
must fail with a clear error (never a crash, never code execution)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

h5py = pytest.importorskip("h5py", reason="h5py (the 'keras' extra) is not installed")
keras = pytest.importorskip("keras", reason="Keras 3 (the 'test' extra) is not installed",
                            exc_type=ImportError)

import qengine  # noqa: E402
from qengine.errors import ModelError, UnsupportedLayerError  # noqa: E402
from keras_models import functional_models, randomize  # noqa: E402
from keras_testutil import assert_close, keras_outputs, random_inputs, run_graph  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A child process where importing keras, tensorflow (and tf_keras) raises ImportError.
_CHILD = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
try:
    import keras
except ImportError:
    pass
else:
    raise SystemExit("keras was importable")
import qengine
from qengine.runtime.reference import ReferenceExecutor
g = qengine.from_keras(sys.argv[1])
data = np.load(sys.argv[2])
n_in = len(g.input_names)
out = ReferenceExecutor(g).run({k: data[f"x{i}"] for i, k in enumerate(g.input_names)})
for i, name in enumerate(g.output_names):
    ref = data[f"y{i}"]
    np.testing.assert_allclose(out[name], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
assert not any(m.split(".")[0] in ("keras", "tensorflow", "tf_keras") for m in sys.modules)
print("OK", len(g.nodes))
"""


@pytest.fixture(scope="module")
def saved_resnet(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = randomize(functional_models(keras)["resnet_like"]())
    path = tmp_path_factory.mktemp("keras") / "resnet.keras"
    model.save(path)
    return model, path


def test_import_without_keras_or_tensorflow(saved_resnet, tmp_path):
    model, path = saved_resnet
    x = random_inputs(model, batch=2)
    ref = keras_outputs(model, x)
    np.savez(tmp_path / "io.npz", **{f"x{i}": v for i, v in enumerate(x)},
             **{f"y{i}": v for i, v in enumerate(ref)})
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(tmp_path / "io.npz")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK")


def test_keras2_legacy_h5(tmp_path):
    """A Keras-2 (tf.keras) era full-model .h5, written by hand: the list form of
    inbound_nodes, batch_input_shape, LeakyReLU's 'alpha', weight names with ':0', and
    Keras 2's hard_sigmoid (0.2 x + 0.5)."""
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(4).astype(
        np.float32)
    layer = lambda cls, name, cfg, inbound: {"class_name": cls, "name": name,  # noqa: E731
                                              "config": {"name": name, "trainable": True,
                                                         "dtype": "float32", **cfg},
                                              "inbound_nodes": inbound}
    config = {"class_name": "Functional", "config": {
        "name": "model", "layers": [
            layer("InputLayer", "input_1", {"batch_input_shape": [None, 6],
                                            "dtype": "float32"}, []),
            layer("Dense", "dense", {"units": 4, "activation": "hard_sigmoid",
                                     "use_bias": True}, [[["input_1", 0, 0, {}]]]),
            layer("LeakyReLU", "leaky", {"alpha": 0.1}, [[["dense", 0, 0, {}]]]),
            layer("Add", "add", {}, [[["dense", 0, 0, {}], ["leaky", 0, 0, {}]]]),
        ],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["add", 0, 0]]}}
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.13.1"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"input_1", b"dense", b"leaky", b"add"])
        for name in ("input_1", "leaky", "add"):
            mw.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        g = mw.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        g["dense/kernel:0"], g["dense/bias:0"] = W, b
    x = rng.standard_normal((3, 6)).astype(np.float32)
    h = np.clip((x @ W + b) * 0.2 + 0.5, 0, 1)
    expect = h + np.where(h > 0, h, 0.1 * h)
    assert_close(run_graph(qengine.from_keras(path), x), [expect], "keras 2 h5")


# -- bad files -----------------------------------------------------------------------------
def _rewrite(src, dst, drop=(), replace=None):
    """Copy a .keras archive, dropping or replacing members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            data = zin.read(item.filename)
            if replace and item.filename in replace:
                data = replace[item.filename](data)
            zout.writestr(item, data)
    return dst


def _config(data: bytes, edit) -> bytes:
    cfg = json.loads(data)
    edit(cfg)
    return json.dumps(cfg).encode()


def test_truncated_archive(saved_resnet, tmp_path):
    _, path = saved_resnet
    data = path.read_bytes()
    bad = tmp_path / "truncated.keras"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        qengine.from_keras(bad)


def test_not_a_model(tmp_path):
    bad = tmp_path / "noise.keras"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ModelError, match="not a Keras model"):
        qengine.from_keras(bad)
    with pytest.raises(ModelError, match="no Keras model file"):
        qengine.from_keras(tmp_path / "missing.keras")
    with pytest.raises(ModelError, match="expects a Keras model"):
        qengine.from_keras(42)


def test_missing_members(saved_resnet, tmp_path):
    _, path = saved_resnet
    with pytest.raises(ModelError, match="no config.json"):
        qengine.from_keras(_rewrite(path, tmp_path / "a.keras", drop=("config.json",)))
    with pytest.raises(ModelError, match=r"no weights file model\.weights\.h5.*conv2d"):
        qengine.from_keras(_rewrite(path, tmp_path / "b.keras", drop=("model.weights.h5",)))
    with pytest.raises(ModelError, match="config.json is not valid JSON"):
        qengine.from_keras(_rewrite(path, tmp_path / "c.keras",
                                    replace={"config.json": lambda d: d[:-10]}))
    with pytest.raises(ModelError, match="not a readable HDF5 file"):
        qengine.from_keras(_rewrite(path, tmp_path / "d.keras",
                                    replace={"model.weights.h5": lambda d: d[:100]}))


def test_weight_shape_mismatch_names_the_layer(tmp_path):
    keras.utils.set_random_seed(0)
    small = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="head")])
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="head")])
    small.save(tmp_path / "small.keras")
    other.save(tmp_path / "other.keras")
    with zipfile.ZipFile(tmp_path / "other.keras") as z:
        weights = z.read("model.weights.h5")
    bad = _rewrite(tmp_path / "small.keras", tmp_path / "bad.keras",
                   replace={"model.weights.h5": lambda d: weights})
    with pytest.raises(ModelError, match=r"'head' \(Dense\): weights shape mismatch"):
        qengine.from_keras(bad)


def test_unknown_layer_names_layer_and_class(saved_resnet, tmp_path):
    _, path = saved_resnet

    def edit(cfg):
        lay = cfg["config"]["layers"][3]
        lay["class_name"] = "FancyAttention"
    bad = _rewrite(path, tmp_path / "u.keras",
                   replace={"config.json": lambda d: _config(d, edit)})
    name = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"][3]["name"]
    with pytest.raises(UnsupportedLayerError,
                       match=rf"layer '{name}' of class FancyAttention") as e:
        qengine.from_keras(bad)
    assert e.value.class_name == "FancyAttention" and e.value.layer == name

    def custom(cfg):    # a user subclass of a built-in, registered under the same name
        cfg["config"]["layers"][3].update(module="my_package.layers",
                                          registered_name="my_package>Dense")
    bad = _rewrite(path, tmp_path / "c.keras",
                   replace={"config.json": lambda d: _config(d, custom)})
    with pytest.raises(UnsupportedLayerError, match=rf"'{name}'.*custom layer.*my_package"):
        qengine.from_keras(bad)


def test_lambda_layer_is_refused(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2, name="double")(inp))
    with pytest.raises(UnsupportedLayerError, match="'double' of class Lambda.*code"):
        qengine.from_keras(model)
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(UnsupportedLayerError, match="'double' of class Lambda"):
        qengine.from_keras(tmp_path / "lambda.keras")


def test_unsupported_constructs(tmp_path):
    inp = keras.Input((4,))
    ops_model = keras.Model(inp, keras.ops.cumsum(keras.layers.Dense(2)(inp) * 2.0, axis=1))
    with pytest.raises(UnsupportedLayerError, match="operation keras.src.ops.numpy.Cumsum"):
        qengine.from_keras(ops_model)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)
    sub = Sub()
    sub(np.zeros((1, 4), np.float32))
    with pytest.raises(ModelError, match="only Sequential and functional"):
        qengine.from_keras(sub)
    seq = keras.Sequential([keras.Input((4, 4)), keras.layers.LayerNormalization(
        axis=1)])
    with pytest.raises(UnsupportedLayerError, match="trailing axes"):
        qengine.from_keras(seq)
    emb = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(5, 2)])
    with pytest.raises(UnsupportedLayerError, match="int32.*only float inputs"):
        qengine.from_keras(emb)


def test_damaged_configs_fail_cleanly(tmp_path):
    """Every config value of a small model replaced by values of the wrong kind or size:
    the import succeeds or raises a qengine error naming the problem; never anything else."""
    import copy

    from qengine.errors import QEngineError
    from qengine.frontends.keras.archive import H5Store, read_keras_file
    from qengine.frontends.keras.walker import build_graph
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    model.save(tmp_path / "small.keras")
    mdef = read_keras_file(tmp_path / "small.keras")
    weird = [None, "x", -1, 0, 10 ** 9, [1, 2, 3], {"a": 1}, 2.5]
    entries = mdef.config["layers"]
    targets = [(k, key) for k, lay in enumerate(entries)
               for key in list(lay["config"]) + ["class_name", "config"]]
    ok = failed = 0
    for k, key in targets:
        for value in weird:
            m = copy.copy(mdef)
            m.config = copy.deepcopy(mdef.config)
            m.weights = H5Store(mdef.weights.group, "small.keras")
            lay = m.config["layers"][k]
            (lay if key in ("class_name", "config") else lay["config"])[key] = value
            try:
                build_graph(m)
                ok += 1
            except QEngineError:
                failed += 1
    assert ok > 0 and failed > 0
