"""Bad models give a clear ModelError naming the problem, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from verifier.errors import ModelError, UnsupportedOpsError
from verifier.graph.loader import load_model
from verifier.ops import REGISTRY


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def _mlp(weight: np.ndarray, ops: list[tuple[str, str]] | None = None) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul0")]
    last = "h"
    for i, (op, name) in enumerate(ops or []):
        nodes.append(helper.make_node(op, [last], [f"v{i}"], name=name))
        last = f"v{i}"
    nodes.append(helper.make_node("Relu", [last], ["y"], name="relu_out"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such ONNX file"):
        load_model(tmp_path / "nothing.onnx")


def test_truncated_file(tmp_path: Path, root: Path) -> None:
    data = (root / "specs/onnx/conv_net.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut\.onnx"):
        load_model(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"this is not a protobuf at all \x00\xff\xfe" * 10)
    with pytest.raises(ModelError):
        load_model(path)


def test_nan_weights_name_the_initializer(tmp_path: Path) -> None:
    weight = np.eye(2)
    weight[0, 1] = np.nan
    with pytest.raises(ModelError, match=r"'W'.*matmul0.*NaN"):
        load_model(_save(_mlp(weight), tmp_path / "nan.onnx"))


def test_unsupported_ops_are_listed_together(tmp_path: Path) -> None:
    model = _mlp(np.eye(2), [("FancyOpA", "fa1"), ("FancyOpB", "fb1"), ("FancyOpA", "fa2")])
    with pytest.raises(UnsupportedOpsError) as info:
        load_model(_save(model, tmp_path / "unsupported.onnx"))
    assert info.value.missing == {"FancyOpA": ["fa1", "fa2"], "FancyOpB": ["fb1"]}
    assert "FancyOpA (nodes: fa1, fa2)" in str(info.value)


def test_dynamic_shape_input_must_be_constant(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "x_shape"], ["y"], name="reshape_dyn")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("x_shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ModelError, match="reshape_dyn"):
        load_model(_save(model, tmp_path / "dyn.onnx"))


@pytest.mark.parametrize("op", sorted(name for name, op in REGISTRY.items() if op.internal))
def test_internal_op_names_are_not_accepted_from_files(tmp_path: Path, op: str) -> None:
    model = _mlp(np.eye(2), [(op, "fake_op")])
    with pytest.raises(UnsupportedOpsError, match=op):
        load_model(_save(model, tmp_path / "internal.onnx"))


def test_the_internal_ops_include_ours() -> None:
    assert {"Linear", "Power"} <= {name for name, op in REGISTRY.items() if op.internal}


def test_control_flow_is_reported_by_node(tmp_path: Path) -> None:
    model = _mlp(np.eye(2), [("Loop", "loop1")])
    with pytest.raises(ModelError, match="loop1"):
        load_model(_save(model, tmp_path / "loop.onnx"))
