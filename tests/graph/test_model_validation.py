"""Models are checked before any tensor is converted: data against shapes, external data,
opsets, input shapes. Each failure is a ModelError (exit 3) naming the file and the tensor."""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.cli import EXIT_BAD_INPUT, main
from verifier.errors import ModelError
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.graph.validate import MAX_OPSET, MIN_OPSET, SUPPORTED_OPSETS
from verifier.standard.cli import capabilities
from verifier.witness import OnnxOracle

ACAS = Path(__file__).resolve().parents[2] / "benchmarks" / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"


def _relu_net(opset: int = 13, input_dims: list[int | str] | None = None) -> onnx.ModelProto:
    """y = W2 relu(W1 x + b1) + b2 with 2 inputs and 2 outputs (the weights of specs' relu_net)."""
    weights = {
        "W1": np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.5]], np.float32),
        "b1": np.zeros(3, np.float32),
        "W2": np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32),
        "b2": np.array([0.0, -0.1], np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Relu", ["hb"], ["a"], name="relu1"),
        helper.make_node("MatMul", ["a", "W2"], ["o"], name="mm2"),
        helper.make_node("Add", ["o", "b2"], ["y"], name="add2"),
    ]
    graph = helper.make_graph(
        nodes, "relu_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims or [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _tensor(name: str, dims: list[int], data_type: int = TensorProto.FLOAT, **fields: object) -> TensorProto:
    """A TensorProto set field by field (onnx.helper would refuse the inconsistent ones)."""
    tensor = TensorProto(name=name, data_type=data_type)
    tensor.dims.extend(dims)
    for key, value in fields.items():
        if isinstance(value, bytes):
            setattr(tensor, key, value)
        else:
            getattr(tensor, key).extend(value)
    return tensor


def _replace_initializer(model: onnx.ModelProto, tensor: TensorProto) -> onnx.ModelProto:
    for init in model.graph.initializer:
        if init.name == tensor.name:
            init.CopyFrom(tensor)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# --- embedded data against the shape -------------------------------------------------------

@pytest.mark.parametrize(("raw", "held"), [(b"\0" * 20, 20), (b"\0" * 28, 28), (b"\0" * 23, 23), (b"", 0)])
def test_raw_data_length_must_match_the_shape(tmp_path: Path, raw: bytes, held: int) -> None:
    path = _save(_replace_initializer(_relu_net(), _tensor("W1", [2, 3], raw_data=raw)), tmp_path / "raw.onnx")
    with pytest.raises(ModelError,
                       match=rf"raw\.onnx.*initializer 'W1' has shape \[2, 3\].*24 bytes.*holds {held} bytes"):
        load_model(path)


@pytest.mark.parametrize(("data_type", "field", "values"), [
    (TensorProto.FLOAT, "float_data", [1.0] * 5),
    (TensorProto.FLOAT, "float_data", [1.0] * 7),
    (TensorProto.DOUBLE, "double_data", [1.0] * 4),
    (TensorProto.INT64, "int64_data", [1] * 8),
    (TensorProto.INT32, "int32_data", [1] * 2),
    (TensorProto.FLOAT, "double_data", [1.0] * 6),  # the values in the wrong field
])
def test_typed_field_count_must_match_the_shape(tmp_path: Path, data_type: int, field: str, values: list) -> None:
    path = _save(_replace_initializer(_relu_net(), _tensor("W1", [2, 3], data_type, **{field: values})),
                 tmp_path / "typed.onnx")
    with pytest.raises(ModelError, match=r"typed\.onnx.*initializer 'W1' has shape \[2, 3\] \(6 .* values\)"):
        load_model(path)


def test_typed_fields_of_the_right_length_load(tmp_path: Path) -> None:
    weight = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.5]], np.float32)
    tensor = _tensor("W1", [2, 3], float_data=weight.reshape(-1).tolist())
    graph = load_model(_save(_replace_initializer(_relu_net(), tensor), tmp_path / "typed_ok.onnx"), simplify=False)
    np.testing.assert_array_equal(graph.constants["W1"], weight)


def test_constant_node_value_is_checked(tmp_path: Path) -> None:
    model = _relu_net()
    value = _tensor("v", [2, 3], raw_data=b"\0" * 8)
    model.graph.node.insert(0, helper.make_node("Constant", [], ["W1c"], name="const_w", value=value))
    model.graph.node[1].input[1] = "W1c"
    with pytest.raises(ModelError, match=r"const\.onnx.*node const_w \(Constant\), attribute 'value'.*\[2, 3\]"
                                         r".*holds 8 bytes"):
        load_model(_save(model, tmp_path / "const.onnx"))


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_huge_dims_without_data_are_refused_before_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         where: str) -> None:
    def no_conversion(*_: object) -> None:
        raise AssertionError("a tensor was converted before its size was checked")

    monkeypatch.setattr(numpy_helper, "to_array", no_conversion)
    huge = _tensor("W1", [100000, 100000, 100000], raw_data=b"")
    model = _relu_net()
    if where == "initializer":
        _replace_initializer(model, huge)
    else:
        model.graph.node.insert(0, helper.make_node("Constant", [], ["big"], name="big_const", value=huge))
    with pytest.raises(ModelError, match=r"huge\.onnx.*\[100000, 100000, 100000\].*holds 0 bytes"):
        load_model(_save(model, tmp_path / "huge.onnx"))


def test_negative_dims_are_refused(tmp_path: Path) -> None:
    path = _save(_replace_initializer(_relu_net(), _tensor("W1", [-2, -3], raw_data=b"\0" * 24)), tmp_path / "neg.onnx")
    with pytest.raises(ModelError, match=r"neg\.onnx.*initializer 'W1' has a negative dimension"):
        load_model(path)


def test_unknown_element_type_is_refused(tmp_path: Path) -> None:
    tensor = _tensor("W1", [2, 3], raw_data=b"\0" * 24)
    tensor.data_type = 0
    with pytest.raises(ModelError, match=r"initializer 'W1' has an undefined or unknown element type"):
        load_model(_save(_replace_initializer(_relu_net(), tensor), tmp_path / "undef.onnx"))


@pytest.mark.parametrize(("op", "inputs", "shape"), [
    ("ConstantOfShape", ["shp"], "[100000, 100000, 100000]"),
    ("Expand", ["b2", "shp"], "[100000, 100000, 100000]"),
    ("Tile", ["W1", "reps"], "[200000, 300000]"),
    ("Tile", ["x", "reps"], "[100000, 200000]"),
    ("Range", ["zero", "big", "one"], "[1000000000000]"),
])
def test_ops_that_would_build_enormous_tensors_are_refused(tmp_path: Path, op: str, inputs: list[str],
                                                           shape: str) -> None:
    model = _relu_net()
    numbers = {"shp": [100000, 100000, 100000], "reps": [100000, 100000], "zero": 0, "big": 10**12, "one": 1}
    model.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in numbers.items())
    model.graph.node.insert(0, helper.make_node(op, inputs, ["big_out"], name="builder"))
    with pytest.raises(ModelError, match=rf"big\.onnx: node builder \({op}\): its output would have shape "
                                         rf"{re.escape(shape)}"):
        load_model(_save(model, tmp_path / "big.onnx"))


def test_bad_tensor_through_the_command_line_is_exit_3(tmp_path: Path, root: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = _save(_replace_initializer(_relu_net(), _tensor("W1", [2, 3], raw_data=b"\0" * 20)), tmp_path / "cli.onnx")
    code = main([str(path), str(root / "specs/vnnlib/relu_unsat.vnnlib"), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "cli.onnx" in err and "'W1'" in err and "internal error" not in err


# --- external data ---------------------------------------------------------------------------

def _external(folder: Path) -> Path:
    """The relu network saved as ``folder/ext.onnx`` with every weight in ``folder/w.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ext.onnx"
    onnx.save_model(_relu_net(), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.bin", size_threshold=0)
    return path


def _set_external(path: Path, tensor_name: str, drop: tuple[str, ...] = (), **entries: str) -> None:
    """Rewrites (or drops) external-data entries of one tensor of the model at ``path``."""
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.name == tensor_name:
            current = {e.key: e.value for e in tensor.external_data if e.key not in drop}
            current.update(entries)
            del tensor.external_data[:]
            for key, value in current.items():
                tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())


def test_external_data_model_loads_like_the_embedded_one(tmp_path: Path) -> None:
    path = _external(tmp_path)
    assert not onnx.load(path, load_external_data=False).graph.initializer[0].raw_data
    ours = load_model(path, simplify=False)
    embedded = load_model(_relu_net(), simplify=False)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(ours.constants[name], embedded.constants[name])
    x = np.array([0.5, -0.25])
    np.testing.assert_array_equal(OnnxOracle(path).run(x), OnnxOracle(_relu_net()).run(x))


@pytest.mark.parametrize(("spec", "code"), [("relu_unsat.vnnlib", 0), ("relu_sat_or.vnnlib", 10)])
def test_external_data_model_gets_the_embedded_models_verdict(tmp_path: Path, root: Path, spec: str, code: int,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = str(root / "specs" / "vnnlib" / spec)
    embedded = _save(_relu_net(), tmp_path / "embedded.onnx")
    assert main([str(embedded), spec_path, "--timeout", "20"]) == code
    first = capsys.readouterr().out.splitlines()[0]
    assert main([str(_external(tmp_path)), spec_path, "--timeout", "20"]) == code
    assert capsys.readouterr().out.splitlines()[0] == first


@pytest.mark.parametrize(("entries", "message"), [
    ({"location": "missing.bin"}, r"'missing\.bin'.*does not exist"),
    ({"location": "/etc/passwd"}, r"'/etc/passwd' is an absolute path"),
    ({"location": "../../../../../etc/passwd"}, r"'\.\./\.\./\.\./\.\./\.\./etc/passwd' resolves to .*outside"),
    ({"location": "sub/../../w.bin"}, r"outside the model's folder"),
    ({"offset": "1000"}, r"'w\.bin' has \d+ bytes, too few for offset 1000"),
    ({"length": "1000"}, r"'w\.bin' has \d+ bytes, too few for offset \d+ and 1000 bytes"),
    ({"length": "4"}, r"shape \[2, 3\].*24 bytes.*in 'w\.bin' \(offset 0\) is 4 bytes long"),
    ({"offset": "-4"}, r"offset '-4' \(file 'w\.bin'\) is not a non-negative integer"),
    ({"location": ""}, r"names none \(no location\)"),
])
def test_bad_external_references_name_the_tensor_and_the_file(tmp_path: Path, entries: dict[str, str],
                                                             message: str) -> None:
    path = _external(tmp_path / "models")
    _set_external(path, "W1", **entries)
    with pytest.raises(ModelError, match=rf"ext\.onnx: initializer 'W1'.*{message}"):
        load_model(path)


def test_external_data_without_length_runs_to_the_end_of_the_file(tmp_path: Path) -> None:
    path = _external(tmp_path)
    size = (tmp_path / "w.bin").stat().st_size
    _set_external(path, "b2", drop=("length",), offset=str(size - 4))  # 4 bytes left, 8 needed
    with pytest.raises(ModelError, match=rf"initializer 'b2' has shape \[2\].*8 bytes.*'w\.bin' \(offset {size - 4}\) "
                                         r"is 4 bytes long"):
        load_model(path)
    _set_external(path, "b2", offset=str(size - 8))  # exactly the last 8 bytes: accepted
    load_model(path)


def test_symlink_out_of_the_model_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 1000)
    path = _external(tmp_path / "models")
    os.symlink(outside, path.parent / "link.bin")
    _set_external(path, "W1", location="link.bin", offset="0", length="24")
    with pytest.raises(ModelError, match=r"initializer 'W1'.*'link\.bin' resolves to .*secret\.bin, outside"):
        load_model(path)


def test_external_data_in_memory_is_refused(tmp_path: Path) -> None:
    model = onnx.load(_external(tmp_path), load_external_data=False)
    with pytest.raises(ModelError, match=r"initializer 'W1' keeps its data in external file 'w\.bin'.*in memory"):
        load_model(model)


def test_bad_external_data_through_the_command_line_is_exit_3(tmp_path: Path, root: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _external(tmp_path)
    _set_external(path, "W2", location="../escape.bin")
    code = main([str(path), str(root / "specs/vnnlib/relu_unsat.vnnlib"), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "ext.onnx" in err and "'W2'" in err and "escape.bin" in err


# --- opsets and input shapes -----------------------------------------------------------------

@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_opsets_outside_the_supported_range_are_refused(tmp_path: Path, opset: int) -> None:
    with pytest.raises(ModelError, match=rf"opset{opset}\.onnx: the model uses ONNX opset {opset}; supported "
                                         rf"opsets are {MIN_OPSET} to {MAX_OPSET}"):
        load_model(_save(_relu_net(opset), tmp_path / f"opset{opset}.onnx"))


@pytest.mark.parametrize("opset", [MIN_OPSET, MAX_OPSET])
def test_opsets_at_the_ends_of_the_range_load(tmp_path: Path, opset: int) -> None:
    assert load_model(_save(_relu_net(opset), tmp_path / "ok.onnx")).opset == opset


def test_the_standard_command_reports_the_same_range() -> None:
    assert capabilities()["--onnx-opset-versions"] == [str(SUPPORTED_OPSETS[0]), str(SUPPORTED_OPSETS[-1])]


def test_zero_size_input_dimension_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"zero\.onnx: graph input 'x' has size 0 at axis 1; an empty tensor"):
        load_model(_save(_relu_net(input_dims=[1, 0]), tmp_path / "zero.onnx"))


def test_symbolic_dimensions_stay_dynamic(tmp_path: Path) -> None:
    assert load_model(_save(_relu_net(input_dims=["N", 2]), tmp_path / "batch.onnx")).inputs[0].shape == (1, 2)
    with pytest.raises(ModelError, match=r"graph input 'x' has a dynamic dimension at axis 1 \(K\)"):
        load_model(_save(_relu_net(input_dims=[1, "K"]), tmp_path / "dyn.onnx"))


def _ranged_net(limit_from: str) -> onnx.ModelProto:
    """The relu net with ``x + Range(0, n, 1)`` in front, ``n`` computed from ``x``: its static
    shape (``Shape``) or its values (``ReduceMax``, then ``Cast``)."""
    model = _relu_net()
    if limit_from == "shape":
        head = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
                helper.make_node("Gather", ["s", "one"], ["n"], name="count", axis=0)]
    else:
        head = [helper.make_node("ReduceMax", ["x"], ["top"], name="top", keepdims=0),
                helper.make_node("Cast", ["top"], ["n"], name="count", to=TensorProto.INT64)]
    head += [helper.make_node("Range", ["zero", "n", "one"], ["r"], name="ramp"),
             helper.make_node("Cast", ["r"], ["rf"], name="ramp_float", to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["xr"], name="shift")]
    model.graph.node[0].input[0] = "xr"
    for node in reversed(head):
        model.graph.node.insert(0, node)
    numbers = {"zero": 0, "one": 1}
    model.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in numbers.items())
    return model


def test_range_with_a_limit_from_the_input_shape_folds_and_runs_like_onnxruntime(tmp_path: Path) -> None:
    path = _save(_ranged_net("shape"), tmp_path / "ramp.onnx")
    graph = load_model(path)
    assert not any(node.op in ("Range", "Shape") for node in graph.nodes)  # folded to a constant
    tgraph = TorchGraph(graph)
    for x in np.random.default_rng(0).uniform(-2, 2, (8, 2)):
        ours = tgraph.forward_flat(torch.as_tensor(x, dtype=torch.float32).reshape(1, -1)).numpy().ravel()
        np.testing.assert_allclose(ours, OnnxOracle(path).run(x).ravel(), rtol=1e-6, atol=1e-6)


def test_range_whose_length_depends_on_input_values_is_refused_naming_the_node(tmp_path: Path) -> None:
    """Its output's shape would change from one input to the next: no static graph holds it."""
    path = _save(_ranged_net("values"), tmp_path / "dynamic_ramp.onnx")
    with pytest.raises(ModelError, match=r"node ramp \(Range\): input 1 \('n'\) must be a constant known when the "
                                         r"model is loaded, but it depends on the network input"):
        load_model(path)


# --- mutations of a bundled model ------------------------------------------------------------

def _mutants() -> list[tuple[str, Callable[[bytes], bytes]]]:
    rng = random.Random(7)
    cases: list[tuple[str, Callable[[bytes], bytes]]] = [
        (f"cut{f}", lambda d, f=f: d[: int(len(d) * f)]) for f in (0.1, 0.5, 0.99)
    ]
    for i in range(24):
        spots = [(rng.random(), rng.randrange(256)) for _ in range(1 + i % 3)]

        def flip(d: bytes, spots: list[tuple[float, int]] = spots) -> bytes:
            out = bytearray(d)
            for where, value in spots:
                out[int(where * len(out))] = value
            return bytes(out)

        cases.append((f"flip{i}", flip))
    return cases


@pytest.mark.parametrize(("name", "mutate"), _mutants(), ids=[m[0] for m in _mutants()])
def test_mutated_bundled_model_loads_or_gives_a_model_error(tmp_path: Path, name: str,
                                                            mutate: Callable[[bytes], bytes]) -> None:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(mutate(ACAS.read_bytes()))
    with contextlib.suppress(ModelError):
        load_model(path)
