"""``Op.absolute_linear`` against the dense Jacobian, for every single-node case of the registry.

For each affine node with one dynamic input whose op gives ``|L| v``, the Jacobian ``J`` of the
op's forward (by autograd) must give ``|J| v`` for random ``v``, and the forward must be
``J v + f(0)`` (the affine contract forward-mode bounds rest on). Ops that give nothing are
cut by those bounds, which is always sound, so they are only counted.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from tests.bounds.test_crown_registry import MODELS
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph


def _affine_nodes(path: Path) -> list[tuple[TorchGraph, int]]:
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    found = []
    for index, node in enumerate(tgraph.graph.nodes):
        batched = [bool(n) and n not in tgraph.constants for n in node.inputs]
        op = tgraph.ops[index]
        if sum(batched) == 1 and len([o for o in node.outputs if o]) == 1 and op.is_affine(node, batched):
            found.append((tgraph, index))
    return found


@pytest.mark.parametrize(("name", "model", "ranges"), MODELS, ids=[m[0] for m in MODELS])
def test_absolute_linear_is_the_absolute_jacobian(tmp_path: Path, name: str, model: onnx.ModelProto,
                                                  ranges: list[tuple[float, float]]) -> None:
    path = tmp_path / "case.onnx"
    onnx.save(model, path)
    torch.manual_seed(0)
    for tgraph, index in _affine_nodes(path):
        if tgraph.graph.inputs[0].dtype.kind == "f":  # integer data: no Jacobian to compare with
            _check_node(tgraph, index, name)


def _check_node(tgraph: TorchGraph, index: int, name: str) -> None:
    node, op = tgraph.graph.nodes[index], tgraph.ops[index]
    batched = [bool(n) and n not in tgraph.constants for n in node.inputs]
    position = batched.index(True)
    shape = tgraph.graph.shapes[node.inputs[position]]

    def f(v: torch.Tensor) -> torch.Tensor:
        args = list(tgraph.constant_args(node))
        args[position] = v.reshape(1, *shape)
        return op.forward(node, args, batched)[0].reshape(-1)

    size = int(torch.tensor(shape).prod()) if shape else 1
    v = torch.randn(3, size, dtype=torch.float64)
    args = list(tgraph.constant_args(node))
    args[position] = v.reshape(3, *shape)
    result = op.absolute_linear(node, args, batched)
    if result is None:
        return
    absolute, rounded = result
    assert rounded >= 0
    jacobian = torch.autograd.functional.jacobian(f, torch.zeros(size, dtype=torch.float64))
    assert torch.allclose(absolute.reshape(3, -1), v @ jacobian.abs().T, rtol=1e-12, atol=1e-12), name
    linear = torch.stack([f(row) for row in v]) - f(torch.zeros(size, dtype=torch.float64))
    assert torch.allclose(linear, v @ jacobian.T, rtol=1e-10, atol=1e-10), name

def test_some_cases_give_an_absolute_linear_part(tmp_path: Path) -> None:
    """The parametrised test is not vacuous: the Linear, BatchNormalization, Conv, Flatten,
    Reshape and Sub cases reach the comparison."""
    seen = set()
    for _, model, _ in MODELS:
        path = tmp_path / "case.onnx"
        onnx.save(model, path)
        for tgraph, index in _affine_nodes(path):
            node = tgraph.graph.nodes[index]
            batched = [bool(n) and n not in tgraph.constants for n in node.inputs]
            args = list(tgraph.constant_args(node))
            shape = tgraph.graph.shapes[node.inputs[batched.index(True)]]
            args[batched.index(True)] = torch.zeros(1, *shape, dtype=torch.float64)
            if tgraph.ops[index].absolute_linear(node, args, batched) is not None:
                seen.add(node.op)
    assert {"Linear", "BatchNormalization", "Conv", "Flatten", "Reshape"} <= seen, seen
