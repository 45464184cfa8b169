"""The graph IR on its own: values, nodes, topological order, validation, editing, printing."""
from __future__ import annotations

import numpy as np
import pytest

from qengine.errors import ModelError
from qengine.graph import Graph, Node, Value, format_shape


def chain() -> Graph:
    """x -> Conv(W) -> Relu -> y, plus a dead Neg branch."""
    nodes = [Node("conv", "Conv", ["x", "W"], ["c"]),
             Node("relu", "Relu", ["c"], ["y"]),
             Node("dead", "Neg", ["c"], ["unused"])]
    return Graph("g", nodes, [Value("x", ("N", 3, 8, 8), np.float32)],
                 [Value("y", ("N", 4, 6, 6), np.float32)],
                 {"W": np.ones((4, 3, 3, 3), np.float32)})


def test_value_basics():
    v = Value("x", ("N", 3, None, 4), np.float32)
    assert v.rank == 4 and not v.is_static and v.numel() is None
    assert str(v) == "x: float32[N,3,?,4]"
    s = Value("w", (2, 3), "int8")
    assert s.is_static and s.numel() == 6 and s.dtype == np.int8
    assert Value("u").rank is None and format_shape(None) == "[?...]"
    with pytest.raises(ModelError):
        Value("bad", (2, -1))


def test_queries():
    g = chain()
    assert g.producer("c").name == "conv" and g.producer("x") is None
    assert [n.name for n in g.consumers("c")] == ["relu", "dead"]
    assert g.value("W").shape == (4, 3, 3, 3)        # exact from the initializer
    assert g.value("nothing").shape is None
    assert g.producers_map()["y"].name == "relu"
    assert set(g.consumers_map()["c"]) == {g.node("relu"), g.node("dead")}
    assert g.unique_name("c") == "c_1" and g.unique_name("fresh") == "fresh"


def test_toposort_is_stable_and_fixes_order():
    g = chain()
    g.nodes.reverse()                     # dead, relu, conv
    g.toposort()
    assert [n.name for n in g.nodes] == ["conv", "dead", "relu"]   # conv first, rest kept
    g.validate()


def test_toposort_names_the_cycle():
    g = Graph("cyc", [Node("a", "Add", ["x", "d"], ["b"]), Node("b", "Relu", ["b"], ["c"]),
                      Node("c", "Relu", ["c"], ["d"])],
              [Value("x", (2,), np.float32)], [Value("d", (2,), np.float32)])
    with pytest.raises(ModelError, match="'a' -> 'b' -> 'c' -> 'a'|cycle"):
        g.toposort()
    g2 = Graph("self", [Node("s", "Relu", ["z"], ["z"])], [], [Value("z")])
    with pytest.raises(ModelError, match="'s'.*own output"):
        g2.toposort()


@pytest.mark.parametrize("edit, match", [
    (lambda g: g.nodes.append(Node("relu", "Relu", ["y"], ["y2"])), "used by 2 nodes"),
    (lambda g: g.nodes.append(Node("", "Relu", ["y"], ["y2"])), "empty name"),
    (lambda g: g.nodes.append(Node("r2", "Relu", ["nowhere"], ["y2"])), "nowhere"),
    (lambda g: g.nodes.append(Node("r2", "Relu", ["x"], ["y"])), "produced by nodes"),
    (lambda g: g.nodes.append(Node("r2", "Relu", ["x"], ["W"])), "overwrites"),
    (lambda g: g.nodes.insert(0, g.nodes.pop(1)), "topological"),
    (lambda g: g.outputs.append(Value("ghost")), "ghost"),
    (lambda g: g.inputs.append(Value("W")), "both a graph input and an initializer"),
])
def test_validate_finds_problems(edit, match):
    g = chain()
    edit(g)
    with pytest.raises(ModelError, match=match):
        g.validate()


def test_editing_helpers():
    g = chain()
    n = g.add_node(Node("relu", "Sigmoid", ["c"], ["s"]))     # duplicate name made unique
    assert n.name == "relu_1" and g.nodes.index(n) == 1     # right after its producer
    g = chain()
    assert g.replace_uses("c", "x") == 2
    assert [n.inputs[0] for n in g.nodes[1:]] == ["x", "x"]
    g = chain()
    g.rename_value("y", "out")
    assert g.output_names == ["out"] and g.nodes[1].outputs == ["out"]
    with pytest.raises(ModelError, match="taken"):
        g.rename_value("out", "c")
    g.rename_value("W", "weight")
    assert "weight" in g.initializers and g.nodes[0].inputs[1] == "weight"


def test_prune_removes_dead_nodes_and_unused_weights():
    g = chain()
    g.initializers["spare"] = np.zeros(3)
    assert g.prune() == 1
    assert [n.name for n in g.nodes] == ["conv", "relu"] and "spare" not in g.initializers
    g.validate()


def test_copy_is_independent_but_shares_weights():
    g = chain()
    h = g.copy()
    h.nodes[0].inputs[0] = "zzz"
    h.nodes[1].attrs["alpha"] = 1.0
    h.remove_node(h.nodes[2])
    assert g.nodes[0].inputs[0] == "x" and g.nodes[1].attrs == {} and len(g.nodes) == 3
    assert h.initializers["W"] is g.initializers["W"]


def test_summary_is_a_readable_table():
    g = chain()
    g.values["c"] = Value("c", ("N", 4, 6, 6), np.float32)
    text = g.summary()
    for part in ("Graph 'g'", "Inputs:", "x", "float32[N,3,8,8]", "Outputs:",
                 "Parameters: 108 in 1 initializers (432 B)", "Ops (3 nodes): Conv 1",
                 "W(const)[4,3,3,3]", "-> c[N,4,6,6]"):
        assert part in text, part
    assert "... 2 more nodes" in g.summary(max_nodes=1)
