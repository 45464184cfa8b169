"""Float import of every supported Keras layer family: live models and the same models saved
as .keras files, against model.predict within 1e-5 relative."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras", reason="Keras 3 (the 'test' extra) is not installed",
                            exc_type=ImportError)

import qengine  # noqa: E402
from keras_models import functional_models, layer_models, randomize  # noqa: E402
from keras_testutil import assert_close, keras_outputs, random_inputs, run_graph  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LAYER_MODELS = layer_models(keras)
FUNCTIONAL_MODELS = functional_models(keras)


def _check(build, name, tmp_path):
    keras.utils.set_random_seed(0)
    model = randomize(build())
    x = random_inputs(model, batch=3)
    ref = keras_outputs(model, x)
    graph = qengine.from_keras(model)
    assert_close(run_graph(graph, x), ref, f"{name} (live)")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    assert_close(run_graph(qengine.from_keras(path), x), ref, f"{name} (.keras file)")
    return model, graph, x, ref


@pytest.mark.parametrize("name", sorted(LAYER_MODELS))
def test_layer_family(name, tmp_path):
    _check(LAYER_MODELS[name], name, tmp_path)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_MODELS))
def test_functional_model(name, tmp_path):
    model, graph, x, ref = _check(FUNCTIONAL_MODELS[name], name, tmp_path)
    # the unoptimized translation computes the same
    assert_close(run_graph(qengine.from_keras(model, optimize=False), x), ref, name)
    # the legacy HDF5 full-model format too
    path = tmp_path / f"{name}.h5"
    model.save(path)
    assert_close(run_graph(qengine.from_keras(path), x), ref, f"{name} (.h5 file)")


def test_graph_naming_and_layout():
    """Inputs/outputs keep Keras' names and NHWC shapes with a symbolic batch; nodes are
    named after their layers."""
    keras.utils.set_random_seed(0)
    model = randomize(FUNCTIONAL_MODELS["resnet_like"]())
    g = qengine.from_keras(model)
    assert g.input_names == ["image"]
    assert g.inputs[0].shape == ("N", 8, 8, 3)
    assert g.outputs[0].shape == ("N", 3)
    assert g.output_names == [model.layers[-1].name]
    layer_names = {lay.name for lay in model.layers}
    assert all(n.name.split("/")[0] in layer_names for n in g.nodes)


def test_transposes_cancel_between_layers():
    """Conv -> BN -> ReLU -> Conv chains and residual Adds carry no Transposes: only the
    input's layout change remains (GAP ends in NCHW, Flatten of (N, C, 1, 1) needs none)."""
    keras.utils.set_random_seed(0)
    model = randomize(FUNCTIONAL_MODELS["resnet_like"]())
    g = qengine.from_keras(model)
    raw = qengine.from_keras(model, optimize=False)
    count = lambda gr: sum(n.op_type == "Transpose" for n in gr.nodes)   # noqa: E731
    assert count(raw) > 20
    assert count(g) == 1
    assert g.producer(g.nodes[0].outputs[0]).op_type == "Transpose"


def test_batch_size_is_free():
    keras.utils.set_random_seed(0)
    model = randomize(LAYER_MODELS["conv2d"]())
    g = qengine.from_keras(model)
    for batch in (1, 5):
        x = random_inputs(model, batch=batch, seed=batch)
        assert_close(run_graph(g, x), keras_outputs(model, x), f"batch {batch}")


def test_tutorial_model_float(tmp_path):
    """The tutorial's exact model (input_shape= on the first layer, as it is written)."""
    from keras.layers import Conv2D, Dense, Flatten
    from keras.models import Sequential
    keras.utils.set_random_seed(0)
    model = Sequential()
    with pytest.warns(UserWarning):
        model.add(Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    model.add(Flatten())
    model.add(Dense(10, activation="softmax"))
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    ref = keras_outputs(model, x)
    assert_close(run_graph(qengine.from_keras(model), x), ref, "tutorial")
    model.save(tmp_path / "tutorial.keras")
    assert_close(run_graph(qengine.from_keras(tmp_path / "tutorial.keras"), x), ref,
                 "tutorial (.keras)")


def test_digits_model_matches_onnx():
    """The demo's digits model rebuilt in Keras has the ONNX model's float accuracy."""
    from qengine.demo import MODEL_PATH, keras_demo_model, load_demo_data
    from qengine.frontends import import_onnx
    data = load_demo_data()
    model = keras_demo_model()
    g = qengine.from_keras(model)
    ours = run_graph(g, data["test"])[0]
    onnx_out = run_graph(import_onnx(str(MODEL_PATH)), data["test"])[0]
    assert_close([ours], keras_outputs(model, data["test"]), "digits")
    acc = lambda p: float((p.argmax(1) == data["labels"]).mean())   # noqa: E731
    assert acc(ours) == acc(onnx_out) > 0.9


@pytest.mark.parametrize("name", ["MobileNetV3Small"])
def test_keras_applications(name):
    """A real architecture from keras.applications (random weights, no download): squeeze-
    excite gates, hard-swish written as keras ops, Rescaling preprocessing, depthwise
    convolutions; logits compared, and the main path carries no Transposes. (EfficientNetB0,
    ResNet50, DenseNet121, InceptionV3, Xception, VGG16 pass the same check; left out for
    time.)"""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                              classes=10, classifier_activation=None)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32) * 255
    g = qengine.from_keras(model)
    assert_close(run_graph(g, x), keras_outputs(model, x), name)
    big = [n for n in g.nodes if n.op_type == "Transpose" and
           sum(d != 1 for d in g.value(n.inputs[0]).shape[1:]) > 1]
    assert len(big) == 1, [n.name for n in big]      # the input's NHWC -> NCHW only
