"""Shared helpers of the Keras import tests: model runners and the float comparison.

Imported after ``KERAS_BACKEND`` is set by the test module (torch: the backend the test extra
installs). Every comparison is against ``model.predict`` on the same inputs.
"""
from __future__ import annotations

import numpy as np

from qengine.runtime.reference import ReferenceExecutor

#: float import vs model.predict: relative, with atol scaled to the output's magnitude
RTOL = 1e-5


def run_graph(graph, inputs) -> list:
    """Run ``graph`` with the reference executor (shapes checked); outputs in graph order."""
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    feeds = dict(zip(graph.input_names, inputs))
    out = ReferenceExecutor(graph, check_shapes=True).run(feeds)
    return [out[n] for n in graph.output_names]


def keras_outputs(model, inputs) -> list:
    """``model.predict`` as a list in the order of the model config's output_layers."""
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
        inputs = inputs[0]
    y = model.predict(inputs, verbose=0)
    if isinstance(y, dict):
        outs = model.get_config().get("output_layers")
        return [np.asarray(y[k]) for k in outs] if isinstance(outs, dict) else list(y.values())
    if isinstance(y, (list, tuple)):
        return [np.asarray(v) for v in y]
    return [np.asarray(y)]


def assert_close(ours, ref, what: str = "") -> None:
    assert len(ours) == len(ref), f"{what}: {len(ours)} outputs vs {len(ref)}"
    for k, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"{what} output {k}: shape {a.shape} vs {b.shape}"
        atol = RTOL * max(float(np.abs(b).max()), 1e-30)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol, err_msg=f"{what} output {k}")


def random_inputs(model, batch: int = 2, seed: int = 0) -> list:
    """Standard-normal float32 inputs for every model input (None dims -> 5)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([batch] + [d if d is not None else 5 for d in t.shape[1:]])
            .astype(np.float32) for t in model.inputs]
