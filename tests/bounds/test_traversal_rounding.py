"""The backward traversal's own float64 rounding (verifier.bounds.traversal_rounding), against
exact rational arithmetic: a row whose transposed product sums 100,000 terms, built so that
float summation loses every small term (each is below half a unit in the last place of the
running sum). Before the allowance, the certified bound exceeded the exact minimum by 774 units
of float64 rounding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("width", [1000, 100_000])
def test_a_wide_transposed_sum_stays_below_the_exact_minimum(width: int, relu: bool) -> None:
    weights = np.ones((1, width))
    row = np.full(width, -(2.0**-55))  # each below half an ulp of 1: float sums drop them all
    row[0] = 1.0
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h" if relu else "y"])]
    if relu:
        nodes.append(helper.make_node("Relu", ["h"], ["y"]))
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, width])],
                              [numpy_helper.from_array(weights, "W")])
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    point = torch.ones(1, 1, 1, dtype=torch.float64)  # the box is the single point x = 1
    bound = Crown(TorchGraph(model, "cpu", torch.float64), [point], [point]).lower_bound(
        torch.tensor(row).reshape(1, width)).item()
    exact = Fraction(1) - (width - 1) * Fraction(2) ** -55  # y = W x is exact at x = 1
    assert Fraction(bound) <= exact
    assert exact - Fraction(bound) < Fraction(1, 10**9)  # the allowance costs nothing visible
