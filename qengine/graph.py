"""qengine's graph IR: values, nodes and the graph that holds them.

Format-neutral (frontends translate into it, passes rewrite it, executors run it) and depends on
nothing but numpy. Conventions:

- A tensor is named by a string. ``""`` in a node's inputs marks an omitted optional input.
- A shape is a tuple whose dims are ``int`` (static), ``str`` (symbolic, e.g. the batch ``"N"``;
  equal names mean equal sizes) or ``None`` (unknown); a shape of ``None`` means unknown rank.
- Constants are initializers: numpy arrays held by name. They are treated as immutable: a pass
  that changes a weight stores a new array, so :meth:`Graph.copy` can share them.
- ``nodes`` is kept in topological order by every helper here; :meth:`Graph.toposort` restores
  it after free-form edits.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

import numpy as np

from .errors import ModelError

__all__ = ["Dim", "Shape", "Value", "Node", "Graph", "format_shape"]

Dim = Union[int, str, None]
Shape = Optional[tuple]


def _norm_shape(shape) -> Shape:
    if shape is None:
        return None
    out = []
    for d in shape:
        if d is None or isinstance(d, str):
            out.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ModelError(f"invalid dimension {d!r} in shape {tuple(shape)!r}")
    return tuple(out)


def format_shape(shape: Shape) -> str:
    """``[N,3,224,224]``; ``?`` for an unknown dim, ``[?...]`` for an unknown rank."""
    if shape is None:
        return "[?...]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class Value:
    """What is known of one tensor: its name, shape and element type (numpy dtype or None).
    Immutable: to change what is known, store a new Value (Graph.set_value)."""

    name: str
    shape: Shape = None
    dtype: Optional[np.dtype] = None

    def __post_init__(self):
        object.__setattr__(self, "shape", _norm_shape(self.shape))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dim is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def numel(self) -> Optional[int]:
        return int(np.prod(self.shape, dtype=np.int64)) if self.is_static else None

    def __str__(self) -> str:
        dt = "?" if self.dtype is None else self.dtype.name
        return f"{self.name}: {dt}{format_shape(self.shape)}"


@dataclass(eq=False)
class Node:
    """One operator application. Compared by identity: two nodes are never 'equal' by content.

    ``attrs`` holds plain Python values (int, float, str, lists of them) or numpy arrays.
    """

    name: str
    op_type: str
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    domain: str = ""

    def __post_init__(self):
        self.inputs, self.outputs = list(self.inputs), list(self.outputs)
        self.attrs = dict(self.attrs)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> str:
        """The i-th input name, ``""`` when omitted (also past the end)."""
        return self.inputs[i] if i < len(self.inputs) else ""

    def copy(self) -> "Node":
        attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in self.attrs.items()}
        return Node(self.name, self.op_type, list(self.inputs), list(self.outputs), attrs,
                    self.domain)

    def __repr__(self) -> str:
        dom = f"{self.domain}." if self.domain else ""
        return (f"Node({self.name!r}, {dom}{self.op_type}, in={self.inputs}, "
                f"out={self.outputs})")


class Graph:
    """A dataflow graph: nodes in topological order, graph inputs/outputs, initializers.

    ``values`` maps a tensor name to what is known of it (shape, dtype); it may lack entries
    for tensors nobody has described yet (use :meth:`value`, which never fails).
    ``opset`` maps an operator domain (``""`` is the default ONNX domain) to its version.
    """

    def __init__(self, name: str = "graph", nodes: Iterable[Node] = (),
                 inputs: Iterable[Value] = (), outputs: Iterable[Value] = (),
                 initializers: Optional[dict] = None, values: Optional[dict] = None,
                 opset: Optional[dict] = None):
        self.name = name
        self.nodes: list[Node] = list(nodes)
        self.inputs: list[Value] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.initializers: dict[str, np.ndarray] = dict(initializers or {})
        self.values: dict[str, Value] = dict(values or {})
        self.opset: dict[str, int] = dict(opset or {"": 17})
        for v in self.inputs + self.outputs:
            self.values.setdefault(v.name, v)

    # -- queries ------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.outputs]

    def is_constant(self, name: str) -> bool:
        return name in self.initializers

    def value(self, name: str) -> Value:
        """What is known of tensor ``name`` (exact for initializers; empty if nothing is)."""
        arr = self.initializers.get(name)
        if arr is not None:
            return Value(name, arr.shape, arr.dtype)
        return self.values.get(name) or Value(name)

    def set_value(self, name: str, shape: Shape, dtype) -> Value:
        v = Value(name, shape, dtype)
        self.values[name] = v
        for lst in (self.inputs, self.outputs):
            for i, old in enumerate(lst):
                if old.name == name:
                    lst[i] = v
        return v

    def producer(self, name: str) -> Optional[Node]:
        """The node that outputs ``name``, or None (graph input, initializer, or unknown)."""
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def consumers(self, name: str) -> list[Node]:
        """Nodes that read ``name``, in graph order (a node reading it twice appears once)."""
        return [n for n in self.nodes if name in n.inputs]

    def producers_map(self) -> dict[str, Node]:
        """name -> producing node, for every node output (one scan; for passes doing many
        lookups: it is a snapshot, rebuild it after edits)."""
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers_map(self) -> dict[str, list[Node]]:
        """name -> consuming nodes, a snapshot like :meth:`producers_map`."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(n.inputs):
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def tensor_names(self) -> set[str]:
        names = set(self.initializers) | set(self.input_names)
        for n in self.nodes:
            names.update(o for o in n.outputs if o)
        return names

    def unique_name(self, base: str) -> str:
        """A name used by no tensor and no node: ``base``, else ``base_1``, ``base_2``, ..."""
        taken = self.tensor_names() | {n.name for n in self.nodes} | set(self.values)
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    # -- structure ----------------------------------------------------------------------------
    def toposort(self) -> None:
        """Order ``nodes`` topologically, keeping the current order where it is already valid.

        Raises ModelError naming the nodes of a cycle.
        """
        prod = self.producers_map()
        index = {id(n): i for i, n in enumerate(self.nodes)}
        deps: dict[int, int] = {}
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            srcs = {id(prod[i]) for i in n.inputs if i in prod and prod[i] is not n}
            if any(prod.get(i) is n for i in n.inputs if i):
                raise ModelError(f"node {n.name!r} ({n.op_type}) reads its own output: a cycle")
            deps[id(n)] = len(srcs)
            for s in srcs:
                users.setdefault(s, []).append(n)
        heap = [(index[id(n)], n) for n in self.nodes if deps[id(n)] == 0]
        heapq.heapify(heap)
        order: list[Node] = []
        while heap:
            _, n = heapq.heappop(heap)
            order.append(n)
            for u in users.get(id(n), ()):
                deps[id(u)] -= 1
                if deps[id(u)] == 0:
                    heapq.heappush(heap, (index[id(u)], u))
        if len(order) != len(self.nodes):
            left = [n for n in self.nodes if deps[id(n)] > 0]
            raise ModelError(f"the graph has a cycle through node(s) {self._cycle(left, prod)}")
        self.nodes = order

    @staticmethod
    def _cycle(left: list[Node], prod: dict[str, Node]) -> str:
        """Walk producer links among the unsorted nodes until one repeats: that is a cycle."""
        pending = {id(n) for n in left}
        n, seen = left[0], []
        while n.name not in seen:
            seen.append(n.name)
            n = next(prod[i] for i in n.inputs if i in prod and id(prod[i]) in pending)
        cyc = seen[seen.index(n.name):]
        return " -> ".join(repr(c) for c in reversed(cyc + [n.name]))

    def validate(self) -> None:
        """Check the graph is well formed; raise ModelError naming the first problem.

        Unique non-empty node names; every tensor produced once; every node input produced
        earlier, a graph input or an initializer; every graph output available.
        """
        names = Counter(n.name for n in self.nodes)
        for n in self.nodes:
            if not n.name:
                raise ModelError(f"a {n.op_type} node has an empty name")
            if names[n.name] > 1:
                raise ModelError(f"node name {n.name!r} is used by {names[n.name]} nodes")
        if len(set(self.input_names)) != len(self.inputs):
            raise ModelError(f"duplicate graph input names: {self.input_names}")
        for name, arr in self.initializers.items():
            if not isinstance(arr, np.ndarray):
                raise ModelError(f"initializer {name!r} is not a numpy array")
        avail = set(self.input_names)
        for name in self.initializers:
            if name in avail:
                raise ModelError(f"{name!r} is both a graph input and an initializer")
            avail.add(name)
        made_by: dict[str, str] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in avail:
                    later = self.producer(i)
                    if later is not None:
                        raise ModelError(f"node {n.name!r} ({n.op_type}) reads {i!r} before "
                                         f"node {later.name!r} produces it: not in "
                                         f"topological order (call toposort())")
                    raise ModelError(f"node {n.name!r} ({n.op_type}) reads {i!r}, which is no "
                                     f"graph input, initializer or node output")
            for o in n.outputs:
                if not o:
                    continue
                if o in made_by:
                    raise ModelError(f"tensor {o!r} is produced by nodes {made_by[o]!r} and "
                                     f"{n.name!r}")
                if o in avail:
                    raise ModelError(f"node {n.name!r} ({n.op_type}) overwrites {o!r}, a graph "
                                     f"input or initializer")
                made_by[o] = n.name
                avail.add(o)
        for v in self.outputs:
            if v.name not in avail:
                raise ModelError(f"graph output {v.name!r} is produced by no node")

    # -- editing ------------------------------------------------------------------------------
    def add_node(self, node: Node, index: Optional[int] = None) -> Node:
        """Insert ``node`` at ``index``, else right after the last producer of its inputs
        (readers of its outputs must come later: call toposort() if unsure). A duplicate or
        empty node name is made unique."""
        if any(n.name == node.name for n in self.nodes) or not node.name:
            node.name = self.unique_name(node.name or node.op_type)
        if index is None:
            index = 0
            for i, n in enumerate(self.nodes):
                if any(o and o in node.inputs for o in n.outputs):
                    index = i + 1
        self.nodes.insert(index, node)
        return node

    def remove_node(self, node: Node) -> None:
        """Remove ``node`` (its outputs' value entries go too, unless they are graph outputs)."""
        self.nodes = [n for n in self.nodes if n is not node]
        outs = set(self.output_names)
        for o in node.outputs:
            if o and o not in outs:
                self.values.pop(o, None)

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers[name] = np.asarray(array)
        self.values.pop(name, None)
        return name

    def replace_uses(self, old: str, new: str) -> int:
        """Make every node that reads ``old`` read ``new`` instead; graph outputs keep their
        names (rename the producer's output for that). Returns the number of inputs changed."""
        count = 0
        for n in self.nodes:
            for i, x in enumerate(n.inputs):
                if x == old:
                    n.inputs[i] = new
                    count += 1
        return count

    def rename_value(self, old: str, new: str) -> None:
        """Rename tensor ``old`` everywhere: producer, readers, graph inputs/outputs, values."""
        if new in self.tensor_names():
            raise ModelError(f"cannot rename {old!r} to {new!r}: the name is taken")
        for n in self.nodes:
            n.inputs = [new if x == old else x for x in n.inputs]
            n.outputs = [new if x == old else x for x in n.outputs]
        if old in self.initializers:
            self.initializers[new] = self.initializers.pop(old)
        for lst in (self.inputs, self.outputs):
            for i, v in enumerate(lst):
                if v.name == old:
                    lst[i] = Value(new, v.shape, v.dtype)
        if old in self.values:
            v = self.values.pop(old)
            self.values[new] = Value(new, v.shape, v.dtype)

    def prune(self) -> int:
        """Remove nodes none of whose outputs is used, then unused initializers and value
        entries. Returns the number of nodes removed."""
        keep = set(self.output_names)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in keep for o in n.outputs if o):
                kept.append(n)
                keep.update(i for i in n.inputs if i)
        removed = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in keep}
        live = keep | set(self.input_names) | {o for n in self.nodes for o in n.outputs}
        self.values = {k: v for k, v in self.values.items() if k in live}
        return removed

    def copy(self) -> "Graph":
        """An independent copy of the structure; initializer arrays are shared (immutable)."""
        g = Graph(self.name, [n.copy() for n in self.nodes], list(self.inputs),
                  list(self.outputs), dict(self.initializers), dict(self.values),
                  dict(self.opset))
        return g

    # -- printing -----------------------------------------------------------------------------
    def summary(self, max_nodes: Optional[int] = 200) -> str:
        """A readable text table: inputs, outputs, op counts, parameters and the node list."""
        lines = [f"Graph {self.name!r}  opset " +
                 ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(self.opset.items()))]
        lines.append("Inputs:")
        lines += [f"  {v.name:<24} {_dt(v.dtype)}{format_shape(v.shape)}" for v in self.inputs]
        lines.append("Outputs:")
        for v in self.outputs:
            v = self.value(v.name) if v.shape is None else v
            lines.append(f"  {v.name:<24} {_dt(v.dtype)}{format_shape(v.shape)}")
        n_par = sum(int(a.size) for a in self.initializers.values())
        n_bytes = sum(int(a.nbytes) for a in self.initializers.values())
        lines.append(f"Parameters: {n_par:,} in {len(self.initializers)} initializers "
                     f"({_human_bytes(n_bytes)})")
        counts = Counter(n.op_type for n in self.nodes)
        lines.append(f"Ops ({len(self.nodes)} nodes): " +
                     ", ".join(f"{op} {c}" for op, c in counts.most_common()))
        lines.append("Nodes:")
        width = max([len(n.name) for n in self.nodes] + [4])
        width = min(width, 32)
        shown = self.nodes if max_nodes is None else self.nodes[:max_nodes]
        for k, n in enumerate(shown):
            ins = ", ".join(self._describe(i) for i in n.inputs)
            outs = ", ".join(self._describe(o) for o in n.outputs)
            lines.append(f"  {k:>4} {n.op_type:<18} {n.name:<{width}}  {ins} -> {outs}")
        if len(shown) < len(self.nodes):
            lines.append(f"  ... {len(self.nodes) - len(shown)} more nodes")
        return "\n".join(lines)

    def _describe(self, name: str) -> str:
        if not name:
            return "-"
        v = self.value(name)
        tag = "(const)" if name in self.initializers else ""
        return f"{name}{tag}{format_shape(v.shape)}"

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={self.input_names}, "
                f"outputs={self.output_names})")


def _dt(dtype) -> str:
    return "?" if dtype is None else np.dtype(dtype).name


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
