"""Walk a Keras model config (Sequential or functional, nested models included) and emit the
graph, one layer call at a time.

Functional configs list every layer with its ``inbound_nodes``: one entry per call, whose
arguments name the tensors consumed as ``[layer, node index, tensor index]``. Two formats
exist: Keras 3 (``{"args": [...], "kwargs": {...}}`` with ``__keras_tensor__`` leaves) and
Keras 2 (a list of ``[layer, node, tensor, kwargs]``). Calls are processed once their inputs
exist, so shared layers and any topological order work. One quirk of Keras 3: a nested
*Functional* model owns one internal node before its calls, so ``input_layers`` /
``output_layers`` count its calls from 1 while call arguments count them from 0 (Keras 2 counts
from 1 in both).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...errors import ModelError, QEngineError, UnsupportedLayerError
from ...graph import Graph
from . import layers as _layers, spatial as _spatial  # noqa: F401  (register converters)
from .builder import GraphBuilder
from .call import CONVERTERS, OP_CONVERTERS, LayerCall
from .source import LayerDef, ModelDef, WeightStore, is_operation, layer_defs

__all__ = ["build_graph"]

BATCH = "N"
_QUANTIZED_POLICIES = ("int8", "int4", "float8", "gptq", "awq")


def build_graph(mdef: ModelDef) -> Graph:
    """The float Graph of a Keras model, exactly as Keras computes it (NHWC in and out)."""
    try:
        return _Walker(mdef).run()
    except QEngineError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        # the config's structure itself is not what Keras writes
        raise ModelError(f"{mdef.source}: malformed model config ({type(e).__name__}: "
                         f"{e})") from None


def _args_in(obj, out: list) -> bool:
    """Collect a call's positional arguments in order: ``("t", [layer, node, tensor])`` for a
    Keras-3 tensor leaf, ``("c", number)`` for a numeric constant (``x + 3.0``); False if
    something else is passed (unsupported)."""
    if obj is None:
        return True
    if isinstance(obj, dict):
        cls = obj.get("class_name")
        if cls == "__keras_tensor__":
            hist = (obj.get("config") or {}).get("keras_history")
            if not (isinstance(hist, list) and len(hist) == 3):
                raise ModelError(f"malformed keras_history {hist!r} in a layer call")
            out.append(("t", tuple(hist)))
            return True
        if cls == "__tuple__":
            return _args_in((obj.get("config") or {}).get("value"), out)
        return all([_args_in(v, out) for v in obj.values()])
    if isinstance(obj, (list, tuple)):
        return all([_args_in(v, out) for v in obj])
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(("c", float(obj)))
        return True
    return False


class _Walker:
    def __init__(self, mdef: ModelDef):
        self.mdef = mdef
        self.b = GraphBuilder(mdef.name)
        self.caches: dict[str, dict] = {}

    def run(self) -> Graph:
        outs = self.model(self.mdef.class_name, self.mdef.config, self.mdef.weights, "", None)
        g = self.b.graph
        seen: set[str] = set()
        for o in outs:
            if o in seen or o in g.input_names:    # graph outputs need their own tensors
                o = self.b.identity(o, f"{o}_output")
            seen.add(o)
            g.outputs.append(g.value(o))
        g.validate()
        return g

    # -- models ----------------------------------------------------------------------------
    def model(self, cls: str, config: dict, store: WeightStore, prefix: str,
              inputs: Optional[list]) -> list[str]:
        what = f"model {prefix.rstrip('/') or config.get('name') or cls!r}"
        if cls not in ("Sequential", "Functional", "Model"):
            raise ModelError(f"{what}: cannot import a Keras model of class {cls!r}: only "
                             f"Sequential and functional models can be imported")
        defs = layer_defs(config, what)
        seq = cls == "Sequential"
        store.bind(defs, seq)
        if seq:
            return self._sequential(config, defs, store, prefix, inputs, what)
        return self._functional(config, defs, store, prefix, inputs, what)

    def _sequential(self, config, defs, store, prefix, inputs, what) -> list[str]:
        rest = defs
        if defs and defs[0].class_name == "InputLayer":
            first, rest = defs[0], defs[1:]
            x = inputs[0] if inputs else self._input(first, prefix)
        elif inputs:
            x = inputs[0]
        else:
            shape = config.get("build_input_shape") or (
                defs and (defs[0].config.get("batch_input_shape") or
                          defs[0].config.get("batch_shape")))
            if not shape:
                raise ModelError(f"{what}: the Sequential model has no input shape; build it "
                                 f"(model.build(shape)) or start it with keras.Input(shape)")
            x = self._input(LayerDef("input", "InputLayer", {"batch_shape": list(shape)}),
                            prefix)
        if inputs is not None and len(inputs) != 1:
            raise ModelError(f"{what}: a Sequential model takes 1 input, got {len(inputs)}")
        for lay in rest:
            outs = self._call(lay, store, prefix, [x])
            if len(outs) != 1:
                raise ModelError(f"{what}: {lay.describe()} gives {len(outs)} outputs; a "
                                 f"Sequential model needs 1")
            x = outs[0]
        return [x]

    def _functional(self, config, defs, store, prefix, inputs, what) -> list[str]:
        by_name = {d.name: d for d in defs}
        legacy = any(isinstance(nd, list) for d in defs for nd in d.inbound)
        tensors: dict[tuple, list[str]] = {}
        in_refs = _io_refs(config.get("input_layers"), what, "input_layers")
        out_refs = _io_refs(config.get("output_layers"), what, "output_layers")
        if inputs is not None and len(inputs) != len(in_refs):
            raise ModelError(f"{what}: called with {len(inputs)} inputs, the model has "
                             f"{len(in_refs)}")
        for k, (name, _, _) in enumerate(in_refs):
            lay = by_name.get(name)
            if lay is None or lay.class_name != "InputLayer":
                raise ModelError(f"{what}: input {name!r} is not an InputLayer of the model")
            tensors[(name, 0)] = [inputs[k] if inputs is not None else self._input(lay, prefix)]
        pending = [(d, k, nd) for d in defs if d.class_name != "InputLayer"
                   for k, nd in enumerate(d.inbound)]
        while pending:
            rest = []
            for lay, k, nd in pending:
                _refuse_code(lay, prefix + lay.name)
                args = self._call_args(lay, nd, prefix)
                ins = self._resolve([a for kind, a in args if kind == "t"], tensors, by_name,
                                    legacy, what)
                if ins is not None and len(ins) != len(args):   # numeric constants (ops)
                    it = iter(ins)
                    ins = [next(it) if kind == "t" else
                           self.b.const(f"{prefix}{lay.name}/arg{j}", np.float32(a))
                           for j, (kind, a) in enumerate(args)]
                if ins is None:
                    rest.append((lay, k, nd))
                    continue
                tensors[(lay.name, k)] = self._call(lay, store, prefix, ins)
            if len(rest) == len(pending):
                names = sorted({lay.name for lay, _, _ in rest})
                raise ModelError(f"{what}: the inputs of layer(s) {names} are never produced "
                                 f"(a cycle or a reference to a missing call)")
            pending = rest
        outs = self._resolve(out_refs, tensors, by_name, True, what)
        if outs is None:
            raise ModelError(f"{what}: an output refers to a layer call that does not exist")
        return outs

    # -- tensors ---------------------------------------------------------------------------
    def _call_args(self, lay: LayerDef, nd, prefix: str) -> list[tuple]:
        """A call's positional arguments: ("t", ref) tensors and, for Keras operations only,
        ("c", number) constants."""
        if isinstance(nd, list):                         # Keras 2: [[name, node, tensor, kw]]
            refs = []
            for item in nd:
                if not (isinstance(item, (list, tuple)) and len(item) >= 3):
                    raise ModelError(f"{lay.describe()}: malformed inbound node {item!r}")
                refs.append(("t", tuple(item[:3])))
            return refs
        if not isinstance(nd, dict):
            raise ModelError(f"{lay.describe()}: malformed inbound node {nd!r}")
        args: list = []
        if not _args_in(nd.get("args", []), args) or (
                not is_operation(lay) and any(kind == "c" for kind, _ in args)):
            raise UnsupportedLayerError(lay.class_name, prefix + lay.name,
                                        "non-tensor positional arguments in a layer call")
        kw: list = []
        _args_in(nd.get("kwargs") or {}, kw)
        if any(kind == "t" for kind, _ in kw):
            raise UnsupportedLayerError(lay.class_name, prefix + lay.name,
                                        "tensors passed as keyword arguments (masks, "
                                        "initial states...) are not supported")
        return args

    def _resolve(self, refs, tensors, by_name, io_or_legacy: bool, what) -> Optional[list]:
        """Tensor names of ``refs``; None while one is not produced yet."""
        out = []
        for name, node, t in refs:
            lay = by_name.get(name)
            if lay is None:
                raise ModelError(f"{what}: a layer call reads layer {name!r}, which the model "
                                 f"does not have")
            if not (isinstance(node, int) and isinstance(t, int)):
                raise ModelError(f"{what}: malformed reference {[name, node, t]!r}")
            if io_or_legacy and self._has_own_node(lay):
                node -= 1                 # a nested functional model's internal node
            n_calls = 1 if lay.class_name == "InputLayer" else len(lay.inbound)
            if not 0 <= node < n_calls:
                raise ModelError(f"{what}: a reference to call {node} of {lay.describe()}, "
                                 f"which is called {n_calls} time(s)")
            got = tensors.get((name, node))
            if got is None:
                return None
            if not 0 <= t < len(got):
                raise ModelError(f"{what}: a reference to output {t} of {lay.describe()}, "
                                 f"which has {len(got)}")
            out.append(got[t])
        return out

    def _has_own_node(self, lay: LayerDef) -> bool:
        """Nested models whose first node is their own construction (Keras 3: Functional;
        Keras 2: also a Sequential that starts with an InputLayer)."""
        if not lay.is_model:
            return False
        if lay.class_name != "Sequential":
            return True
        first = (lay.config.get("layers") or [{}])[0]
        return self.mdef.keras_major < 3 and isinstance(first, dict) and \
            first.get("class_name") == "InputLayer"

    def _input(self, lay: LayerDef, prefix: str) -> str:
        c = lay.config
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape is None and c.get("shape") is not None:
            shape = [c.get("batch_size")] + list(c["shape"])
        if not isinstance(shape, (list, tuple)) or not shape:
            raise ModelError(f"{lay.describe()}: no input shape in its config")
        if c.get("sparse") or c.get("ragged"):
            raise UnsupportedLayerError("InputLayer", lay.name, "sparse or ragged inputs")
        dtype = c.get("dtype") or "float32"
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name", "float32")
        if not (isinstance(dtype, str) and ("float" in dtype)):
            raise UnsupportedLayerError("InputLayer", lay.name,
                                        f"input dtype {dtype!r}: only float inputs are "
                                        f"supported (no Embedding / token inputs)")
        name = prefix + lay.name
        dims = [BATCH if (i == 0 and d is None) else (f"{name}_{i}" if d is None else int(d))
                for i, d in enumerate(shape)]
        return self.b.add_input(name, dims)

    # -- layers ----------------------------------------------------------------------------
    def _call(self, lay: LayerDef, store: WeightStore, prefix: str, ins: list) -> list[str]:
        path = prefix + lay.name
        if lay.is_model:
            return self.model(lay.class_name, lay.config, store.sub(lay), path + "/", ins)
        _refuse_code(lay, path)
        if lay.class_name == "InputLayer":
            return list(ins)
        fn = (OP_CONVERTERS if is_operation(lay) else CONVERTERS).get(lay.class_name)
        if fn is None and is_operation(lay):
            raise UnsupportedLayerError(lay.class_name, path,
                                        f"the Keras operation {lay.module}.{lay.class_name} "
                                        f"on symbolic tensors is not supported (supported: "
                                        f"{', '.join(sorted(OP_CONVERTERS))}); use layers")
        if fn is None:
            raise UnsupportedLayerError(lay.class_name, path)
        _check_dtype_policy(lay, path)
        call = LayerCall(self.b, lay, store, path, ins, self.mdef.keras_major,
                         self.caches.setdefault(path, {}))
        n_before = len(self.b.graph.nodes)
        try:
            res = fn(call)
        except QEngineError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError,
                OverflowError, ZeroDivisionError) as e:  # a config value of a wrong kind/size
            raise call.error(f"malformed config ({type(e).__name__}: {e})") from None
        outs = [res] if isinstance(res, str) else list(res)
        fresh = {o for n in self.b.graph.nodes[n_before:] for o in n.outputs}
        for i, o in enumerate(outs):     # the layer's output tensor carries the layer's name
            if o in fresh and o not in ins:
                outs[i] = self.b.rename(o, path if len(outs) == 1 else f"{path}:{i}")
        return outs


def _refuse_code(lay: LayerDef, path: str) -> None:
    """Layers whose behaviour is Python code (Lambda) or a backend op, not a layer config."""
    if lay.class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        raise UnsupportedLayerError(lay.class_name, path,
                                    "a Lambda layer's Python code cannot be imported "
                                    "safely; rebuild the model with built-in layers")
    if lay.module and lay.module.split(".")[0] not in ("keras", "tf_keras", "tensorflow"):
        raise UnsupportedLayerError(lay.class_name, path,
                                    f"a custom layer (module {lay.module!r}): its code is not "
                                    f"part of the model file")


def _io_refs(v, what: str, key: str) -> list[tuple]:
    """input_layers / output_layers: one ``[name, node, tensor]``, a list of them, or a dict
    (Keras 3 structured outputs; its values in order)."""
    if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
        return [tuple(v)]
    if isinstance(v, dict):
        v = list(v.values())
    if isinstance(v, (list, tuple)) and v and all(
            isinstance(r, (list, tuple)) and len(r) == 3 and isinstance(r[0], str) for r in v):
        return [tuple(r) for r in v]
    raise ModelError(f"{what}: malformed or empty {key} {v!r}")


def _check_dtype_policy(lay: LayerDef, path: str) -> None:
    d = lay.config.get("dtype")
    cls = d.get("class_name", "") if isinstance(d, dict) else ""
    name = (d.get("config") or {}).get("name") if isinstance(d, dict) else d
    if "Quantized" in cls or (isinstance(name, str) and name.split("_")[0] in
                              _QUANTIZED_POLICIES):
        raise UnsupportedLayerError(lay.class_name, path,
                                    f"Keras-quantized layers (dtype policy {name!r}); import "
                                    f"the float model and let qengine quantize it")
