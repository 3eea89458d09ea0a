"""ONNX models for fuzzing: a tiny ReLU MLP built with ``onnx.helper``, and mutators of model
files (the bundled ACAS Xu network and the tiny one).

Every mutator takes the serialised model and a :class:`random.Random` and returns the mutated
bytes with the :class:`~tests.fuzz.runner.Expect`\\ ation its construction implies. Where a
random change may or may not leave a valid model (truncation, byte flips) the expectation
comes from independent checks: the protobuf must parse, ``onnx.checker`` (full check, with
strict shape inference) must accept it and every float initializer must be finite, else the
model is bad input and the CLI must answer exit 3.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .runner import ROOT, Expect

ACAS_MODEL = ROOT / "benchmarks" / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
TINY_INPUTS, TINY_OUTPUTS = 3, 2
BAD_OPSETS = (5, 7, 22, 99)
"""Opsets outside the documented 8..21."""

Mutator = Callable[[bytes, random.Random], tuple[bytes, Expect]]


def tiny_model(seed: int = 0, hidden: tuple[int, ...] = (8, 8)) -> onnx.ModelProto:
    """A ReLU MLP with 3 inputs and 2 outputs, opset 13, float32 (MatMul+Add, Gemm, Relu)."""
    rng = np.random.default_rng(seed)
    sizes = [TINY_INPUTS, *hidden, TINY_OUTPUTS]
    nodes, inits, current = [], [], "x"
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32)
        b = rng.normal(0.0, 0.1, fan_out).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
        if k % 2 == 0:
            nodes += [helper.make_node("MatMul", [current, f"W{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"B{k}"], [f"a{k}"])]
        else:
            nodes.append(helper.make_node("Gemm", [current, f"W{k}", f"B{k}"], [f"a{k}"]))
        current = f"a{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"r{k}"]))
            current = f"r{k}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes, "tiny_relu_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TINY_INPUTS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TINY_OUTPUTS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tests.fuzz")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Writes :func:`tiny_model` to ``folder/tiny.onnx``."""
    path = folder / "tiny.onnx"
    onnx.save(tiny_model(seed), str(path))
    return path


# --------------------------------------------------------------------------- validity oracle


def classify(data: bytes) -> Expect:
    """BAD when the bytes are no valid model (see the module docstring), else ANY."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
        onnx.checker.check_model(model, full_check=True)
    except Exception:
        return Expect.BAD
    if not model.graph.output or not model.graph.node:
        return Expect.BAD
    for init in model.graph.initializer:
        if init.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            try:
                values = numpy_helper.to_array(init)
            except Exception:
                return Expect.BAD
            if not np.all(np.isfinite(values)):
                return Expect.BAD
    return Expect.ANY


# --------------------------------------------------------------------------- mutators


def _load(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


def _weights(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Float initializers with at least two elements (weights and biases)."""
    return [t for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT and int(np.prod(t.dims)) >= 2]


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """The file cut at a random point (strictly shorter)."""
    cut = data[: rng.randrange(len(data))]
    return cut, classify(cut)


def flip_bytes(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """One to eight random bytes replaced by random values."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out), classify(bytes(out))


def wrong_dims(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """A weight's dims changed so that it no longer fits (element count or factorisation)."""
    model = _load(data)
    init = rng.choice(_weights(model))
    dims = list(init.dims)
    k = rng.randrange(len(dims))
    if rng.random() < 0.5 or len(dims) < 2:
        dims[k] += rng.choice([1, 2, -1]) if dims[k] > 1 else 1
    else:
        total = int(np.prod(dims))
        dims = [1, total] if dims[0] != 1 else [total, 1]
    del init.dims[:]
    init.dims.extend(dims)
    return model.SerializeToString(), Expect.BAD


def nonfinite_weight(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """One weight set to NaN, +inf or -inf."""
    model = _load(data)
    init = rng.choice(_weights(model))
    values = numpy_helper.to_array(init).copy()
    values.flat[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
    init.CopyFrom(numpy_helper.from_array(values.astype(np.float32), init.name))
    return model.SerializeToString(), Expect.BAD


def _graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The graph input that is not an initializer."""
    names = {t.name for t in model.graph.initializer}
    return next(v for v in model.graph.input if v.name not in names)


def _reroute_input(model: onnx.ModelProto, new_name: str) -> str:
    """Makes every consumer of the graph input read ``new_name``; returns the input's name."""
    source = _graph_input(model).name
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == source:
                node.input[i] = new_name
    return source


def custom_op(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """A node of an unknown custom domain inserted between the input and the first layer."""
    model = _load(data)
    source = _reroute_input(model, "fuzz_custom_out")
    op = rng.choice(["Mystery", "Relu", "Identity"])  # known names in an unknown domain too
    node = helper.make_node(op, [source], ["fuzz_custom_out"], domain="com.fuzz.custom")
    model.graph.node.insert(0, node)
    model.opset_import.append(helper.make_opsetid("com.fuzz.custom", 1))
    return model.SerializeToString(), Expect.BAD


def if_op(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """An ``If`` on a constant condition inserted after the input (both branches pass it on).

    Valid ONNX that onnxruntime runs; the verifier may support it or refuse it (exit 3).
    """
    model = _load(data)
    source = _reroute_input(model, "fuzz_if_out")
    shape = [d.dim_value for d in _graph_input(model).type.tensor_type.shape.dim]
    branches = []
    for name, op in (("then", "Identity"), ("else", "Neg")):
        out = helper.make_tensor_value_info(f"fuzz_{name}_y", TensorProto.FLOAT, shape)
        branches.append(helper.make_graph([helper.make_node(op, [source], [f"fuzz_{name}_y"])],
                                          f"fuzz_{name}", [], [out]))
    cond = numpy_helper.from_array(np.array(rng.random() < 0.5), "fuzz_cond")
    model.graph.initializer.append(cond)
    model.graph.node.insert(0, helper.make_node("If", ["fuzz_cond"], ["fuzz_if_out"],
                                                then_branch=branches[0], else_branch=branches[1]))
    _raise_opset(model, 11)
    return model.SerializeToString(), classify(model.SerializeToString())


def _raise_opset(model: onnx.ModelProto, at_least: int) -> None:
    """Sets the default-domain opset to at least ``at_least`` (and a matching IR version)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, at_least)
    model.ir_version = max(model.ir_version, 6)


def bad_opset(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """The default-domain opset set to one outside 8..21 (5, 7, 22 or 99)."""
    model = _load(data)
    version = rng.choice(BAD_OPSETS)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = version
    if version >= 22:
        model.ir_version = max(model.ir_version, 10)
    return model.SerializeToString(), Expect.BAD


def good_opset(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """The default-domain opset moved to another version in 8..21 where the model stays valid."""
    model = _load(data)
    _raise_opset(model, rng.choice([13, 14, 17, 18, 21]))
    model.ir_version = max(model.ir_version, 8)
    return model.SerializeToString(), classify(model.SerializeToString())


def zero_input_dim(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """A dimension of the graph input set to 0 (a zero-size input)."""
    model = _load(data)
    dims = _graph_input(model).type.tensor_type.shape.dim
    dims[rng.randrange(len(dims))].dim_value = 0
    return model.SerializeToString(), Expect.BAD


def short_raw_data(data: bytes, rng: random.Random) -> tuple[bytes, Expect]:
    """An initializer whose raw data is shorter than its shape says."""
    model = _load(data)
    init = rng.choice([t for t in _weights(model) if t.raw_data])
    cut = rng.randrange(0, len(init.raw_data) - 1)
    init.raw_data = init.raw_data[:cut]
    return model.SerializeToString(), Expect.BAD


MUTATORS: dict[str, Mutator] = {
    "truncate": truncate,
    "flip-bytes": flip_bytes,
    "wrong-dims": wrong_dims,
    "nonfinite-weight": nonfinite_weight,
    "custom-op": custom_op,
    "if-op": if_op,
    "bad-opset": bad_opset,
    "good-opset": good_opset,
    "zero-input-dim": zero_input_dim,
    "short-raw-data": short_raw_data,
}
