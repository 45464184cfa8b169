"""Mutations of ONNX models: on the serialized bytes (bit flips, truncation, splices) and on
the parsed ModelProto (attributes, shapes, element types, initializer data, graph wiring).

Each mutator is `fn(model, rng) -> str | None`: it edits the ModelProto in place and returns a
short description of what it did (None when it found nothing to mutate). The descriptions make
a failing case readable; the case itself is reproduced from its seed number.
"""
from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

# Integers that break size arithmetic: zero, negatives, int32/int64 edges, huge dims.
NASTY_INTS = [0, -1, -2, 1, 2, 3, 7, 64, 255, 256, 65536, 2 ** 24, 2 ** 31 - 1, -2 ** 31,
              2 ** 32, 2 ** 40, 2 ** 62, 2 ** 63 - 1, -2 ** 63]
NASTY_FLOATS = [0.0, -0.0, -1.0, 1e-45, 1e-38, 1e38, 3.4e38, float("inf"), float("-inf"),
                float("nan"), 0.5, 2.0, 1e9, -1e9]
# Element types qengine reads, does not read, and that do not exist.
ELEM_TYPES = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 16, 17, 21, 22, 25, 99]
OP_TYPES = ["Conv", "MaxPool", "AveragePool", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip",
            "Concat", "Reshape", "Transpose", "Resize", "Pad", "Slice", "Split", "Flatten",
            "QuantizeLinear", "DequantizeLinear", "Softmax", "Gather", "Expand", "Tile",
            "ConstantOfShape", "Range", "TopK", "Loop", "If", "NoSuchOp", "ConvTranspose",
            "GlobalAveragePool", "Sigmoid", "Squeeze", "Unsqueeze", "ReduceMean", "Shape",
            "BatchNormalization", "LayerNormalization", "Einsum", "Where", "Cast"]


def _nasty_int(rng: random.Random) -> int:
    return rng.choice(NASTY_INTS) if rng.random() < 0.7 else rng.randint(-10, 40)


def _pick(rng: random.Random, seq):
    seq = list(seq)
    return rng.choice(seq) if seq else None


def _all_nodes(m: onnx.ModelProto):
    return list(m.graph.node)


def _ranks_hint(m):
    """Rough lengths for list attributes of spatial ops (2 spatial dims is the common case)."""
    return [1, 2, 3, 4, 0, 6, 8]


# -- attributes ------------------------------------------------------------------------------
def attr_value(m, rng):
    """Set an existing int/float/ints/floats/string attribute to a hostile value."""
    cands = [(n, a) for n in _all_nodes(m) for a in n.attribute]
    if not cands:
        return None
    n, a = rng.choice(cands)
    if a.type == AttributeProto.INT:
        a.i = _nasty_int(rng)
        return f"{n.op_type}.{a.name} = {a.i}"
    if a.type == AttributeProto.INTS:
        k = rng.choice([len(a.ints), len(a.ints), 0, 1, len(a.ints) + 1, max(len(a.ints) - 1, 0)])
        vals = [_nasty_int(rng) if rng.random() < 0.5 else (a.ints[i] if i < len(a.ints) else 1)
                for i in range(k)]
        del a.ints[:]
        a.ints.extend(int(np.clip(v, -2 ** 63, 2 ** 63 - 1)) for v in vals)
        return f"{n.op_type}.{a.name} = {list(a.ints)}"
    if a.type == AttributeProto.FLOAT:
        a.f = rng.choice(NASTY_FLOATS)
        return f"{n.op_type}.{a.name} = {a.f}"
    if a.type == AttributeProto.FLOATS:
        for i in range(len(a.floats)):
            if rng.random() < 0.5:
                a.floats[i] = rng.choice(NASTY_FLOATS)
        return f"{n.op_type}.{a.name} = {list(a.floats)}"
    if a.type == AttributeProto.STRING:
        a.s = rng.choice([b"", b"NOTSET", b"SAME_UPPER", b"VALID", b"linear", b"cubic",
                          b"nearest", b"reflect", b"edge", b"wrap", b"\xff\xfe", b"x" * 300])
        return f"{n.op_type}.{a.name} = {a.s[:20]!r}"
    if a.type == AttributeProto.TENSOR:
        return _mutate_tensor(a.t, rng, f"{n.op_type}.{a.name}")
    return None


def attr_retype(m, rng):
    """Give an attribute another type (INT -> FLOATS, INTS -> STRING, ...), or drop it."""
    cands = [(n, a) for n in _all_nodes(m) for a in n.attribute]
    if not cands:
        return None
    n, a = rng.choice(cands)
    choice = rng.randrange(6)
    name = a.name
    if choice == 0:
        n.attribute.remove(a)
        return f"{n.op_type}.{name} dropped"
    value = {1: 1.5, 2: [1.0, 2.0], 3: "oops", 4: 3, 5: [2, 2, 2, 2, 2]}[choice]
    new = onnx.helper.make_attribute(name, value)
    a.CopyFrom(new)
    return f"{n.op_type}.{name} retyped to {AttributeProto.AttributeType.Name(a.type)}"


def attr_add(m, rng):
    """Add a spatial attribute with absurd values: negative pads, zero strides, huge kernels,
    dilations, an unknown auto_pad, a bogus group or axis."""
    nodes = _all_nodes(m)
    if not nodes:
        return None
    n = rng.choice(nodes)
    key = rng.choice(["pads", "strides", "kernel_shape", "dilations", "group", "axis", "perm",
                      "auto_pad", "ceil_mode", "count_include_pad", "transB", "alpha", "axes",
                      "keepdims", "mode", "split", "output_padding", "storage_order"])
    for a in list(n.attribute):
        if a.name == key:
            n.attribute.remove(a)
    if key in ("group", "axis", "ceil_mode", "count_include_pad", "transB", "keepdims",
               "storage_order"):
        val = _nasty_int(rng)
    elif key == "alpha":
        val = rng.choice(NASTY_FLOATS)
    elif key in ("auto_pad", "mode"):
        val = rng.choice(["SAME_LOWER", "SAME_UPPER", "VALID", "NOTSET", "bogus", "linear"])
    else:
        k = rng.choice(_ranks_hint(m))
        val = [_nasty_int(rng) if rng.random() < 0.6 else rng.randint(0, 4) for _ in range(k)]
        val = [int(np.clip(v, -2 ** 63, 2 ** 63 - 1)) for v in val]
    n.attribute.append(onnx.helper.make_attribute(key, val))
    return f"{n.op_type}.{key} = {val}"


# -- tensors (initializers, Constant values) ---------------------------------------------------
def _mutate_tensor(t: TensorProto, rng: random.Random, what: str):
    choice = rng.randrange(9)
    try:
        arr = numpy_helper.to_array(t)
    except Exception:
        arr = None
    if choice == 0:      # dims disagree with the data
        dims = list(t.dims) or [1]
        i = rng.randrange(len(dims))
        dims[i] = rng.choice([0, 1, dims[i] + 1, dims[i] * 2, 2 ** 31, -3])
        del t.dims[:]
        t.dims.extend(dims)
        return f"{what}: dims -> {dims}"
    if choice == 1:      # the element type changes under the same bytes
        t.data_type = rng.choice(ELEM_TYPES)
        return f"{what}: data_type -> {t.data_type}"
    if choice == 2 and t.raw_data:     # truncated payload
        t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data))]
        return f"{what}: raw_data truncated to {len(t.raw_data)}"
    if arr is None or arr.dtype.kind not in "fiub":
        return None
    flat = arr.reshape(-1).copy()
    if choice == 3 and flat.size:      # special values
        k = rng.randint(1, max(1, flat.size))
        idx = [rng.randrange(flat.size) for _ in range(k)]
        if flat.dtype.kind == "f":
            flat[idx] = rng.choice(NASTY_FLOATS)
        else:
            info = np.iinfo(flat.dtype) if flat.dtype.kind in "iu" else None
            vals = [0, 1] if info is None else [info.min, info.max, 0, -1 % (info.max + 1)]
            flat[idx] = np.array(rng.choice(vals)).astype(flat.dtype)
        new = flat.reshape(arr.shape)
        desc = f"{what}: {k} special values"
    elif choice == 4:    # another shape, same type (mismatched weights)
        shape = list(arr.shape) or [1]
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, shape[i] + 1, max(shape[i] - 1, 0), shape[i] * 2])
        if rng.random() < 0.3:
            shape = shape + [1] if rng.random() < 0.5 else shape[1:]
        n = int(np.prod(shape))
        if n > 1 << 20:
            return None
        new = np.resize(flat, n).reshape(shape) if flat.size else np.zeros(shape, arr.dtype)
        desc = f"{what}: shape {list(arr.shape)} -> {shape}"
    elif choice == 5:    # another dtype, values cast
        dt = rng.choice([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32,
                         np.int64, np.bool_, np.int16])
        with np.errstate(all="ignore"):
            new = arr.astype(dt)
        desc = f"{what}: dtype {arr.dtype} -> {np.dtype(dt).name}"
    elif choice == 6 and flat.size:    # scaled values: tiny, huge, negative scales
        if flat.dtype.kind != "f":
            return None
        new = (arr * np.float32(rng.choice([0.0, -1.0, 1e-30, 1e30, 1e-7, 1e7]))).astype(arr.dtype)
        desc = f"{what}: values scaled"
    elif choice == 7:    # a scalar where a vector was, or the reverse
        new = flat[:1].reshape(()) if arr.ndim else np.repeat(arr.reshape(1), rng.choice([2, 3]))
        desc = f"{what}: rank {arr.ndim} -> {new.ndim}"
    else:                # random ints where shapes/indices are read (Reshape, Slice, Pad...)
        if flat.dtype.kind not in "iu":
            return None
        new = np.array([_nasty_int(rng) for _ in range(max(1, flat.size))], dtype=np.int64)
        if rng.random() < 0.5:
            keep = flat.dtype if flat.dtype != np.uint64 else np.int64
            new = new[:max(1, flat.size)].astype(keep)
        new = new.reshape(arr.shape) if new.size == flat.size else new
        desc = f"{what}: ints -> {new.reshape(-1)[:8].tolist()}"
    name = t.name
    t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new), name))
    return desc


def initializer(m, rng):
    """Mutate one initializer (weights, scales, zero points, shape constants)."""
    inits = list(m.graph.initializer)
    consts = [a.t for n in m.graph.node if n.op_type == "Constant" for a in n.attribute
              if a.type == AttributeProto.TENSOR]
    pool = inits + consts
    if not pool:
        return None
    # quantization parameters are the interesting part of a QDQ model: favour them
    qparams = [t for t in pool if "scale" in t.name or "zero_point" in t.name or
               t.name.endswith(("_s", "_zp"))]
    t = rng.choice(qparams) if qparams and rng.random() < 0.4 else rng.choice(pool)
    return _mutate_tensor(t, rng, f"initializer {t.name!r}")


def drop_initializer(m, rng):
    inits = list(m.graph.initializer)
    if not inits:
        return None
    t = rng.choice(inits)
    m.graph.initializer.remove(t)
    return f"initializer {t.name!r} removed"


# -- value infos (graph inputs, outputs, annotations) --------------------------------------------
def _value_infos(m):
    return list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)


def value_shape(m, rng):
    """Declared shapes: huge, zero, negative or symbolic dims; ranks changed; shape dropped."""
    vis = _value_infos(m)
    if not vis:
        return None
    v = rng.choice(vis)
    tt = v.type.tensor_type
    choice = rng.randrange(5)
    if choice == 0:
        tt.ClearField("shape")
        return f"value {v.name!r}: shape cleared"
    dims = tt.shape.dim
    if choice == 1 or not len(dims):
        d = dims.add()
        d.dim_value = rng.choice([1, 2, 3])
        return f"value {v.name!r}: rank +1"
    if choice == 2:
        del dims[rng.randrange(len(dims))]
        return f"value {v.name!r}: rank -1"
    d = dims[rng.randrange(len(dims))]
    if choice == 3:
        d.dim_param = rng.choice(["N", "M", "batch", "", "?"])
        return f"value {v.name!r}: dim -> {d.dim_param!r}"
    d.dim_value = rng.choice([0, 1, 2, 5, 2 ** 20, 2 ** 31, 2 ** 40, 2 ** 62, -1, -7])
    return f"value {v.name!r}: dim -> {d.dim_value}"


def value_type(m, rng):
    """Declared element types: unsupported, undefined, or not tensors at all."""
    vis = _value_infos(m)
    if not vis:
        return None
    v = rng.choice(vis)
    if rng.random() < 0.15:
        v.type.ClearField("tensor_type")
        v.type.sequence_type.elem_type.tensor_type.elem_type = 1
        return f"value {v.name!r}: sequence type"
    v.type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
    return f"value {v.name!r}: elem_type -> {v.type.tensor_type.elem_type}"


# -- graph wiring --------------------------------------------------------------------------------
def _tensor_names(m):
    names = {i.name for i in m.graph.input} | {t.name for t in m.graph.initializer}
    for n in m.graph.node:
        names.update(x for x in n.output if x)
    return sorted(names)


def rewire(m, rng):
    """Point one node input at another tensor (shape/dtype mismatch), a missing name, or ''."""
    nodes = [n for n in _all_nodes(m) if n.input]
    if not nodes:
        return None
    n = rng.choice(nodes)
    i = rng.randrange(len(n.input))
    old = n.input[i]
    r = rng.random()
    n.input[i] = "" if r < 0.1 else ("no_such_tensor" if r < 0.2 else rng.choice(_tensor_names(m)))
    return f"{n.op_type} {n.name!r} input {i}: {old!r} -> {n.input[i]!r}"


def node_arity(m, rng):
    """Add or remove node inputs or outputs."""
    nodes = _all_nodes(m)
    if not nodes:
        return None
    n = rng.choice(nodes)
    choice = rng.randrange(4)
    if choice == 0 and n.input:
        del n.input[-1]
        return f"{n.op_type} {n.name!r}: last input removed"
    if choice == 1:
        n.input.append(rng.choice(_tensor_names(m) + [""]))
        return f"{n.op_type} {n.name!r}: input added"
    if choice == 2 and len(n.output) > 1:
        del n.output[-1]
        return f"{n.op_type} {n.name!r}: last output removed"
    n.output.append(rng.choice([f"extra_{rng.randrange(99)}", n.output[0] if n.output else "x"]))
    return f"{n.op_type} {n.name!r}: output added"


def node_op(m, rng):
    """Replace a node's op type, domain, or delete / duplicate the node."""
    nodes = _all_nodes(m)
    if not nodes:
        return None
    n = rng.choice(nodes)
    choice = rng.randrange(5)
    if choice == 0:
        m.graph.node.remove(n)
        return f"node {n.name!r} ({n.op_type}) deleted"
    if choice == 1:
        m.graph.node.append(n)       # a second producer of the same outputs
        return f"node {n.name!r} duplicated"
    if choice == 2:
        n.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "bogus.domain", "ai.onnx"])
        return f"node {n.name!r} domain -> {n.domain}"
    old = n.op_type
    n.op_type = rng.choice(OP_TYPES)
    return f"node {n.name!r}: {old} -> {n.op_type}"


def node_order(m, rng):
    """Shuffle the node list (qengine sorts topologically) or make a cycle."""
    nodes = list(m.graph.node)
    if len(nodes) < 2:
        return None
    if rng.random() < 0.5:
        rng.shuffle(nodes)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        return "nodes shuffled"
    a, b = rng.sample(range(len(nodes)), 2)
    lo, hi = min(a, b), max(a, b)
    if nodes[lo].input and nodes[hi].output:
        nodes[lo].input[0] = nodes[hi].output[0]
        return f"cycle {nodes[lo].name!r} <- {nodes[hi].name!r}"
    return None


def graph_io(m, rng):
    """Graph inputs/outputs removed, duplicated, renamed to missing tensors."""
    g = m.graph
    choice = rng.randrange(5)
    if choice == 0 and g.output:
        g.output.remove(rng.choice(list(g.output)))
        return "an output removed"
    if choice == 1 and g.output:
        o = rng.choice(list(g.output))
        o.name = rng.choice(["missing_output", ""] + _tensor_names(m))
        return f"output renamed to {o.name!r}"
    if choice == 2 and g.input:
        g.input.append(g.input[0])
        return "input duplicated"
    if choice == 3 and g.input:
        g.input.remove(g.input[0])
        return "first input removed"
    vi = onnx.helper.make_tensor_value_info(rng.choice(["extra_in"] + _tensor_names(m)),
                                            rng.choice([1, 7, 2]), [rng.choice([1, "N", 3])])
    g.input.append(vi)
    return f"input {vi.name!r} added"


def opset(m, rng):
    """Opset imports: ancient, future, missing, duplicated, foreign domains; IR version."""
    choice = rng.randrange(4)
    if choice == 0:
        m.ir_version = rng.choice([0, 1, 3, 4, 7, 10, 11, 99])
        return f"ir_version -> {m.ir_version}"
    if choice == 1:
        del m.opset_import[:]
        return "opset imports removed"
    if choice == 2:
        m.opset_import.add(domain=rng.choice(["", "com.microsoft", "x"]),
                           version=rng.choice([1, 7, 25, 9999]))
        return "opset import added"
    for o in m.opset_import:
        o.version = rng.choice([0, 1, 6, 7, 9, 10, 11, 12, 13, 19, 21, 23, 25, 1000, -1])
    return f"opset -> {[o.version for o in m.opset_import]}"


def functions(m, rng):
    """A model-local function: a node calling a function that calls itself or is malformed."""
    body = onnx.helper.make_node(rng.choice(["F", "Relu", "Nope"]), ["a"], ["b"],
                                 domain=rng.choice(["", "local"]))     # F calls itself
    f = onnx.helper.make_function("local", "F", ["a"], ["b"], [body],
                                  [onnx.helper.make_opsetid("", 17)])
    m.functions.append(f)
    m.opset_import.add(domain="local", version=1)
    nodes = list(m.graph.node)
    if nodes:
        n = rng.choice(nodes)
        n.op_type, n.domain = "F", "local"
        return f"node {n.name!r} -> local function F"
    return "function added"


# -- the spatial ops' favourites: the issue's list -----------------------------------------------
def spatial(m, rng):
    """Conv/pool attributes the issue names: negative pads, zero strides, kernel larger than the
    input, huge dilations, group not dividing channels."""
    nodes = [n for n in _all_nodes(m) if n.op_type in ("Conv", "MaxPool", "AveragePool",
                                                       "ConvTranspose", "LpPool")]
    if not nodes:
        return None
    n = rng.choice(nodes)
    attrs = {a.name: a for a in n.attribute}
    rank = len(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else 2
    key, val = rng.choice([
        ("pads", [rng.choice([-1, -5, 0, 1, 2 ** 31]) for _ in range(2 * rank)]),
        ("strides", [rng.choice([0, 0, 1, -1, 2 ** 40]) for _ in range(rank)]),
        ("kernel_shape", [rng.choice([64, 1000, 2 ** 20, 0, -2]) for _ in range(rank)]),
        ("dilations", [rng.choice([0, 50, 2 ** 30, -1]) for _ in range(rank)]),
        ("group", rng.choice([0, -1, 3, 5, 1000])),
        ("kernel_shape", [3] * (rank + 1)),
        ("auto_pad", rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "wrong"])),
    ])
    if key in attrs:
        n.attribute.remove(attrs[key])
    n.attribute.append(onnx.helper.make_attribute(key, val))
    return f"{n.op_type} {n.name!r}: {key} = {val}"


# -- bytes -----------------------------------------------------------------------------------------
def bytes_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Bit flips, byte runs, truncation, splices of the serialized model."""
    b = bytearray(data)
    choice = rng.randrange(5)
    if choice == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flips"
    if choice == 1:
        cut = rng.randrange(len(b))
        return bytes(b[:cut]), f"truncated at {cut}/{len(b)}"
    if choice == 2:
        i = rng.randrange(len(b))
        run = bytes([rng.choice([0, 0xff, 0x7f, 0x80])]) * rng.randint(1, 16)
        return bytes(b[:i] + run + b[i + len(run):]), f"byte run at {i}"
    if choice == 3:
        i, j = sorted(rng.sample(range(len(b)), 2))
        return bytes(b[:i] + b[j:]), f"bytes {i}:{j} deleted"
    i, j = sorted(rng.sample(range(len(b)), 2))
    k = rng.randrange(len(b))
    return bytes(b[:k] + b[i:j][:4096] + b[k:]), f"bytes {i}:{j} spliced at {k}"


PROTO_MUTATORS = [attr_value, attr_retype, attr_add, initializer, drop_initializer, value_shape,
                  value_type, rewire, node_arity, node_op, node_order, graph_io, opset,
                  functions, spatial, spatial, initializer]


def mutate_model(data: bytes, rng: random.Random, byte_level: float = 0.15) -> tuple[bytes, list]:
    """One fuzz case from a seed model: 1-3 structural mutations, sometimes followed by a
    byte-level one. Returns (bytes, descriptions)."""
    m = onnx.load_from_string(data)
    desc = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        for _attempt in range(5):
            fn = rng.choice(PROTO_MUTATORS)
            try:
                d = fn(m, rng)
            except (ValueError, TypeError, OverflowError) as e:   # protobuf refused a value
                d = None
            if d is not None:
                desc.append(d)
                break
    out = m.SerializeToString()
    if rng.random() < byte_level:
        out, d = bytes_mutation(out, rng)
        desc.append(d)
    return out, desc
