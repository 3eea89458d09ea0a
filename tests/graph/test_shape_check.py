"""The cross-check against ONNX shape inference (verifier.graph.shape_check): giving large
weights to inference as typed inputs must not change a single inferred shape (the oracle is
ONNX inference on the whole model), and a disagreement names the value and its node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from verifier.errors import ModelError
from verifier.graph import shape_check
from verifier.graph.loader import load_model

REPO = Path(__file__).resolve().parents[2]
MODELS = [*sorted((REPO / "benchmarks" / "zoo" / "onnx").glob("*.onnx")),
          *sorted((REPO / "specs" / "onnx").glob("*.onnx"))]


@pytest.fixture(scope="module")
def reshaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x (1, 64) -> MatMul by a (64, 2048) weight -> Reshape to an int64 initializer's shape
    (1, 32, 64): inference needs that initializer's values, and the weight's shape only."""
    weight = numpy_helper.from_array(np.ones((64, 2048), np.float32), "W")
    target = numpy_helper.from_array(np.array([1, 32, 64], np.int64), "shape")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul"),
             helper.make_node("Reshape", ["h", "shape"], ["y"], name="reshape")]
    graph = helper.make_graph(nodes, "reshaped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, target])
    path = tmp_path_factory.mktemp("reshaped") / "reshaped.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("path", [*MODELS, "reshaped"], ids=lambda p: getattr(p, "name", p))
def test_weights_as_inputs_infer_the_same_shapes(path: Path | str, monkeypatch: pytest.MonkeyPatch,
                                                 request: pytest.FixtureRequest) -> None:
    if path == "reshaped":
        path = request.getfixturevalue("reshaped")
        assert isinstance(path, Path)
    model = onnx.load(str(path))
    inputs = load_model(path).inputs
    light = shape_check.inferred_shapes(model, inputs)
    monkeypatch.setattr(shape_check, "WEIGHTS_AS_INPUTS", 10**18)  # every initializer stays one
    whole = shape_check.inferred_shapes(model, inputs)
    assert light == whole
    assert whole, "inference derived no shape at all: the comparison would be empty"
    if path.name == "reshaped.onnx":
        assert whole["y"] == (1, 32, 64)


def test_the_copy_given_to_inference_leaves_the_model_alone() -> None:
    path = REPO / "benchmarks" / "zoo" / "onnx" / "eran__mnist_relu_9_200.onnx"
    model = onnx.load(str(path))
    before = model.SerializeToString()
    shape_check.inferred_shapes(model, load_model(path).inputs)
    assert model.SerializeToString() == before


def test_a_shape_that_differs_from_inference_names_the_value_and_its_node() -> None:
    path = REPO / "specs" / "onnx" / "conv_net.onnx"
    model = onnx.load(str(path))
    inputs = load_model(path).inputs
    inferred = shape_check.inferred_shapes(model, inputs)
    name, shape = next((n, s) for n, s in inferred.items() if s)
    wrong = {name: (*shape[:-1], shape[-1] + 1)}
    node = next(n.name or n.op_type for n in model.graph.node if name in n.output)
    with pytest.raises(ModelError, match=rf"value '{name}' \(output of node {node}\)"):
        shape_check.check_against_onnx_inference(model, inputs, wrong, "conv_net.onnx")
    shape_check.check_against_onnx_inference(model, inputs, {name: shape}, "conv_net.onnx")
