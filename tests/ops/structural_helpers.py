"""Test helpers for single-node ONNX cases: onnxruntime as the oracle, sampling for bounds.

A :class:`Case` describes one node: op type, ONNX attributes, opset and inputs (dynamic with a
shape, constant with a value, or omitted). :func:`our_node` mimics the loader: schema defaults
filled in, static inputs moved to attributes, so tests do not depend on the loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from verifier.ir import Node, freeze_attrs
from verifier.ops import REGISTRY


@dataclass
class In:
    """One node input: ``shape`` for a dynamic float input, ``value`` for a constant."""

    shape: tuple[int, ...] | None = None
    value: np.ndarray | None = None

    @property
    def omitted(self) -> bool:
        return self.shape is None and self.value is None

    @property
    def dynamic(self) -> bool:
        return self.shape is not None


def dyn(*shape: int) -> In:
    """A dynamic float32 input of the given ONNX shape."""
    return In(shape=tuple(shape))


def const(value: Any, dtype: Any = None) -> In:
    """A constant input (float arrays become float32 unless ``dtype`` says otherwise)."""
    arr = np.asarray(value, dtype=dtype)
    if dtype is None and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return In(value=arr)


NONE = In()


@dataclass
class Case:
    """A single-node test case."""

    op: str
    inputs: list[In]
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 17
    outputs: int = 1
    name: str = ""

    def __str__(self) -> str:
        return self.name or f"{self.op}-{self.opset}"


def onnx_model(case: Case) -> onnx.ModelProto:
    """The single-node ONNX model of ``case`` (constants as initializers)."""
    names, inits, graph_inputs = [], [], []
    for i, inp in enumerate(case.inputs):
        if inp.omitted:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if inp.dynamic:
            graph_inputs.append(
                helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(inp.shape))
            )
        else:
            inits.append(numpy_helper.from_array(inp.value, name))
    outs = [f"out{j}" for j in range(case.outputs)]
    if case.op == "Linear":  # our own op: the oracle is MatMul followed by Add
        nodes = [
            helper.make_node("MatMul", names[:2], ["mm" if names[2:] and names[2] else outs[0]])
        ]
        if names[2:] and names[2]:
            nodes.append(helper.make_node("Add", ["mm", names[2]], outs))
    else:
        attrs = {
            k: numpy_helper.from_array(v) if k == "value" and isinstance(v, np.ndarray) else v
            for k, v in case.attrs.items()
        }
        nodes = [helper.make_node(case.op, names, outs, name="n0", **attrs)]
    graph = helper.make_graph(
        nodes,
        "g",
        graph_inputs,
        [onnx.ValueInfoProto(name=o) for o in outs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8 if case.opset < 19 else 9
    return model


def run_ort(
    case: Case, samples: list[list[np.ndarray]], optimize: bool = True
) -> list[list[np.ndarray]]:
    """Runs the case in onnxruntime once per sample (each a list of dynamic input values)."""
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        onnx_model(case).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    feeds = [f"in{i}" for i, inp in enumerate(case.inputs) if inp.dynamic]
    return [sess.run(None, dict(zip(feeds, values, strict=True))) for values in samples]


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _static_value(arr: np.ndarray) -> Any:
    """How the loader hands a static input over: tuple for 1-D, python scalar for 0-D."""
    if arr.ndim == 0:
        return arr.item()
    if arr.ndim == 1:
        return tuple(v.item() for v in arr)
    return arr


def our_node(case: Case) -> tuple[Node, list[int]]:
    """Our Node for ``case`` plus the indices of the inputs that stay arguments."""
    schema = onnx.defs.get_schema(case.op, case.opset) if case.op != "Linear" else None
    attrs: dict[str, Any] = {}
    if schema is not None:
        for name, attr in schema.attributes.items():
            if attr.default_value.type != onnx.AttributeProto.UNDEFINED:
                attrs[name] = _decode(helper.get_attribute_value(attr.default_value))
    for key, value in case.attrs.items():
        attrs[key] = _decode(
            value.tolist() if isinstance(value, np.ndarray) and key != "value" else value
        )
        if key == "value" and isinstance(value, np.ndarray):
            attrs[key] = value
    static = REGISTRY[case.op].static_inputs
    kept: list[int] = []
    names: list[str] = []
    for i, inp in enumerate(case.inputs):
        if i in static:
            if not inp.omitted:
                assert inp.value is not None, f"static input {i} must be constant"
                attrs[static[i]] = _static_value(inp.value)
            continue
        kept.append(i)
        names.append("" if inp.omitted else f"in{i}")
    while names and names[-1] == "":
        names.pop()
        kept.pop()
    outs = tuple(f"out{j}" for j in range(case.outputs))
    return Node("n0", case.op, tuple(names), outs, freeze_attrs(attrs)), kept


def to_torch(value: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A constant as a torch tensor; float data takes the working dtype, ints keep theirs."""
    t = torch.from_numpy(np.array(value, copy=True, order="C"))
    return t.to(dtype) if t.is_floating_point() else t


def our_args(
    case: Case, kept: list[int], dyn_values: list[torch.Tensor], dtype: torch.dtype
) -> tuple[list[torch.Tensor | None], list[bool]]:
    """Arguments for our op: the batched dynamic values in order, constants unbatched."""
    args: list[torch.Tensor | None] = []
    flags: list[bool] = []
    it = iter(dyn_values)
    dyn_pos = {i for i, inp in enumerate(case.inputs) if inp.dynamic}
    values = {i: next(it) for i in sorted(dyn_pos)}
    for i in kept:
        inp = case.inputs[i]
        if inp.omitted:
            args.append(None)
            flags.append(False)
        elif inp.dynamic:
            args.append(values[i].to(dtype))
            flags.append(True)
        else:
            assert inp.value is not None
            args.append(to_torch(inp.value, dtype))
            flags.append(False)
    return args, flags


def random_inputs(
    case: Case, batch: int, rng: np.random.Generator, scale: float = 2.0
) -> list[np.ndarray]:
    """Random float32 values for each dynamic input, shape ``(batch, *shape)``."""
    return [
        (rng.standard_normal((batch, *inp.shape)) * scale).astype(np.float32)
        for inp in case.inputs
        if inp.dynamic
    ]


def forward(
    case: Case, dyn_values: list[np.ndarray], dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, ...]:
    """Our op's forward on batched dynamic values."""
    node, kept = our_node(case)
    args, flags = our_args(case, kept, [torch.from_numpy(v) for v in dyn_values], dtype)
    return REGISTRY[case.op].forward(node, args, flags)


def folded(case: Case) -> tuple[torch.Tensor, ...]:
    """Our op's forward as constant folding calls it: every input a batch of 1."""
    node, kept = our_node(case)
    args: list[torch.Tensor | None] = []
    for i in kept:
        inp = case.inputs[i]
        assert inp.value is not None or inp.omitted
        args.append(
            None
            if inp.value is None
            else torch.from_numpy(np.array(inp.value, copy=True, order="C")).unsqueeze(0)
        )
    return REGISTRY[case.op].forward(node, args, [a is not None for a in args])
