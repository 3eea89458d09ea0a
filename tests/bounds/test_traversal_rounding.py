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

from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import FINAL, Crown
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


@pytest.mark.parametrize("width", [1000, 100_000])
def test_alpha_slopes_keep_the_bound_below_the_exact_relaxation_minimum(width: int) -> None:
    """Through an unstable ReLU layer with alpha slopes (the weights of an alpha pass are built
    from the op's slope range, not the slopes): the certified bound stays below the exact
    rational minimum of the same linear relaxation, whose float sum drops every small term.
    Without the allowance (``allowance_factor`` patched to 0) the bound is above it."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "wide_alpha", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, width])],
                              [numpy_helper.from_array(np.ones((1, width)), "W")])
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    lower, upper = torch.full((1, 1, 1), -1.0, dtype=torch.float64), torch.ones(1, 1, 1, dtype=torch.float64)
    row = np.full(width, 2.0**-55)  # positive rows take the lower (alpha) lines
    row[0] = 1.0
    slope = 1 / 3  # rounded; every product with it rounds too
    alpha = torch.full((1, 1, width), slope, dtype=torch.float64)
    crown = Crown(TorchGraph(model, "cpu", torch.float64), [lower], [upper])
    node = model.nodes[1].name
    bound = crown.lower_bound(torch.tensor(row).reshape(1, width),
                              Multipliers(slopes={(node, FINAL): alpha.reshape(1, 1, 1, width)})).item()
    # the relaxation: y_j >= slope * h_j = slope * x (biases 0), minimised over x in [-1, 1]
    coefficient = sum((Fraction(c) for c in row[1:]), Fraction(row[0])) * Fraction(slope)
    exact = -abs(coefficient)
    assert Fraction(bound) <= exact
    assert exact - Fraction(bound) < Fraction(1, 10**9)
