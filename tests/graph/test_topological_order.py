"""The loader's node order (verifier.graph.loader.topological_nodes) against graphlib's
topological sorter as the oracle for what is an order and what is a cycle."""

from __future__ import annotations

import random
from graphlib import CycleError, TopologicalSorter

import pytest
from onnx import helper

from verifier.errors import ModelError
from verifier.graph.loader import topological_nodes


def _random_graph(seed: int, nodes: int, back_edge: bool) -> helper.GraphProto:
    """Node i reads up to three earlier nodes' outputs (or the input ``x``), possibly the same
    one twice; the node list is shuffled; ``back_edge`` makes an early node read a later one."""
    rng = random.Random(seed)
    made = []
    for i in range(nodes):
        sources = [f"v{rng.randrange(i)}" if i and rng.random() < 0.8 else "x" for _ in range(rng.randint(1, 3))]
        made.append(helper.make_node("Sum", sources, [f"v{i}"], name=f"n{i}"))
    if back_edge and nodes > 2:
        first = rng.randrange(nodes - 1)
        made[first].input.append(f"v{rng.randrange(first, nodes)}")
    rng.shuffle(made)
    return helper.make_graph(made, "g", [], [])


def _oracle_has_cycle(graph: helper.GraphProto) -> bool:
    producer = {out: node.name for node in graph.node for out in node.output}
    sorter = TopologicalSorter({node.name: {producer[i] for i in node.input if i in producer} for node in graph.node})
    try:
        sorter.prepare()
    except CycleError:
        return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_every_node_comes_after_the_nodes_it_reads(seed: int) -> None:
    graph = _random_graph(seed, nodes=1 + seed % 13 * 3, back_edge=False)
    order = topological_nodes(graph)
    assert sorted(n.name for n in order) == sorted(n.name for n in graph.node)
    placed: set[str] = {"x"}
    for node in order:
        assert all(name in placed for name in node.input), node.name
        placed.update(node.output)


@pytest.mark.parametrize("seed", range(40))
def test_cycles_are_reported_exactly_when_graphlib_finds_one(seed: int) -> None:
    graph = _random_graph(seed, nodes=3 + seed % 7, back_edge=True)
    if _oracle_has_cycle(graph):
        with pytest.raises(ModelError, match="cycle"):
            topological_nodes(graph)
    else:
        topological_nodes(graph)


def test_a_node_that_reads_its_own_output_is_a_cycle() -> None:
    graph = helper.make_graph([helper.make_node("Sum", ["x", "y"], ["y"])], "g", [], [])
    with pytest.raises(ModelError, match="cycle"):
        topological_nodes(graph)


def test_a_graph_in_order_keeps_its_order() -> None:
    graph = _random_graph(7, nodes=30, back_edge=False)
    ordered = topological_nodes(graph)
    again = helper.make_graph(ordered, "g", [], [])
    assert [n.name for n in topological_nodes(again)] == [n.name for n in ordered]
