"""Loads an ONNX model into the :class:`~verifier.ir.Graph` IR.

Steps: read and decode the protobuf, check it before any tensor is converted (supported
opset, tensor data against shapes, external data references: :mod:`verifier.graph.validate`),
load external data, check weights for NaN/Inf, fix static input shapes,
sort nodes topologically, report every unsupported op at once, fill attribute
defaults from the ONNX schema, move load-time constant inputs into attributes, fold constant
subgraphs, infer static shapes by running each op once, cross-check them against ONNX shape
inference, and finally apply the normalisation rewrites of :mod:`verifier.graph.simplify`.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from verifier.errors import ModelError, UnsupportedOpsError
from verifier.graph.onnx_attrs import as_static, node_attributes
from verifier.graph.onnx_file import (
    elem_dtype,
    input_dtype,
    input_shape,
    read_model,
)
from verifier.graph.shape_check import check_against_onnx_inference
from verifier.graph.simplify import simplify_graph
from verifier.graph.validate import (
    check_size,
    default_opset,
)
from verifier.ir import Graph, Node, Shape, ValueInfo, freeze_attrs
from verifier.ops import REGISTRY, Op

_NO_OP_TYPES = {"Constant"}


def check_finite(name: str, value: np.ndarray, users: list[str]) -> None:
    """Raises ModelError when a floating-point constant holds NaN or infinity."""
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
        bad = "NaN" if np.isnan(value).any() else "infinite"
        raise ModelError(f"constant {name!r} (used by {', '.join(users) or 'no node'}) contains {bad} values")


def tensor_value(tensor: onnx.TensorProto, label: str) -> np.ndarray:
    """The value of a tensor that :func:`~verifier.graph.validate.check_tensors` accepted."""
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{label}: initializer {tensor.name!r} cannot be read ({exc})") from None


def topological_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes in a topological order, the smallest node index first among those
    ready (a graph already in order keeps it); cycles raise ModelError."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    consumers: list[set[int]] = [set() for _ in graph.node]
    waiting = [0] * len(graph.node)  # producers not yet placed, per node
    for i, node in enumerate(graph.node):
        for source in {producer[name] for name in node.input if name in producer}:
            consumers[source].add(i)
            waiting[i] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]  # ascending: already a heap
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < len(graph.node):
        raise ModelError("the ONNX graph has a cycle")
    return [graph.node[i] for i in order]


def node_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """Unique node names; unnamed nodes get ``OpType_index``."""
    seen: set[str] = set()
    names: list[str] = []
    for i, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


def check_supported(nodes: list[onnx.NodeProto], names: list[str]) -> None:
    """Raises one UnsupportedOpsError listing every unsupported op type and its nodes."""
    missing: dict[str, list[str]] = {}
    for node, name in zip(nodes, names, strict=True):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if node.op_type in _NO_OP_TYPES and node.domain in ("", "ai.onnx"):
            continue
        if key not in REGISTRY or REGISTRY[key].internal or node.domain not in ("", "ai.onnx"):
            missing.setdefault(key, []).append(name)
    if missing:
        raise UnsupportedOpsError(missing)


@dataclass
class _Builder:
    """Mutable state while converting nodes: constants, shapes and the dynamic nodes."""

    opset: int
    constants: dict[str, np.ndarray]
    shapes: dict[str, Shape]
    nodes: list[Node] = field(default_factory=list)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)  # of dynamic values, from the dry run

    def constant_node(self, node: onnx.NodeProto, attrs: dict[str, Any], name: str) -> None:
        """Evaluates an ONNX Constant node into the constant table."""
        for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
            if key in attrs:
                value = np.asarray(attrs[key])
                if key in ("value_float", "value_floats"):
                    value = value.astype(np.float32)
                if key in ("value_int", "value_ints"):
                    value = value.astype(np.int64)
                check_finite(node.output[0], value, [name])
                self.constants[node.output[0]] = value
                return
        raise ModelError(f"node {name} (Constant): unsupported value attribute {sorted(attrs)}")

    def static_attrs(self, op: Op, node: onnx.NodeProto, attrs: dict[str, Any], name: str) -> list[str]:
        """Moves the op's load-time constant inputs into ``attrs``; returns the other inputs."""
        kept: list[str] = []
        for index, value_name in enumerate(node.input):
            target = op.static_inputs.get(index)
            if target is None:
                kept.append(value_name)
                continue
            if not value_name:
                continue
            if value_name not in self.constants:
                raise ModelError(
                    f"node {name} ({node.op_type}): input {index} ({value_name!r}) must be a constant "
                    "known when the model is loaded, but it depends on the network input"
                )
            attrs[target] = as_static(self.constants[value_name])
        while kept and not kept[-1]:
            kept.pop()
        return kept

    def shape_of(self, name: str) -> Shape:
        """Shape of a value (without the batch dimension for a dynamic one)."""
        return tuple(self.constants[name].shape) if name in self.constants else self.shapes[name]

    def shape_node(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> None:
        """Folds Shape/Size of any value (static shapes make them constants)."""
        shape = self.shape_of(node.input[0])
        if node.op_type == "Size":
            self.constants[node.output[0]] = np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
            return
        rank = len(shape)
        start = attrs.get("start", 0) or 0
        end = attrs.get("end", rank)
        end = rank if end is None else end
        self.constants[node.output[0]] = np.array(shape[slice(start, end)], dtype=np.int64)

    def run_op(self, op: Op, node: Node, args: list[torch.Tensor | None],
               batched: list[bool]) -> tuple[torch.Tensor, ...]:
        """Runs ``op.forward``, rewriting failures as errors that name the node."""
        try:
            with torch.no_grad():
                return op.forward(node, args, batched)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"node {node.name} ({node.op}): cannot evaluate ({exc})") from None

    def fold(self, op: Op, node: Node) -> None:
        """Evaluates a node whose inputs are all constants and records its outputs."""
        args = [None if not n else torch.from_numpy(np.array(self.constants[n])).unsqueeze(0) for n in node.inputs]
        outs = self.run_op(op, node, args, [True] * len(args))
        for name, value in zip(node.outputs, outs, strict=False):
            if name:
                self.constants[name] = value.squeeze(0).numpy()

    def add_dynamic(self, op: Op, node: Node) -> None:
        """Records a node with a dynamic input and infers its output shapes by running it."""
        args: list[torch.Tensor | None] = []
        batched: list[bool] = []
        for name in node.inputs:
            if not name:
                args.append(None)
                batched.append(False)
            elif name in self.constants:
                args.append(torch.from_numpy(np.array(self.constants[name])))
                batched.append(False)
            else:
                args.append(torch.zeros((1, *self.shapes[name]), dtype=torch.float32))
                batched.append(True)
        outs = self.run_op(op, node, args, batched)
        for name, value in zip(node.outputs, outs, strict=False):
            if name:
                self.shapes[name] = tuple(int(d) for d in value.shape[1:])
                self.dtypes[name] = np.dtype(str(value.dtype).removeprefix("torch."))
        self.nodes.append(node)


def _numbers(attrs: dict[str, Any], key: str) -> list[Any]:
    """A load-time constant moved into ``attrs`` (scalar, tuple or array) as a flat list."""
    return list(np.asarray(attrs.get(key, ())).reshape(-1))


def built_shape(op_type: str, attrs: dict[str, Any], first: Shape | None) -> tuple[int, ...] | None:
    """The output shape of an op that builds a tensor from load-time numbers (ConstantOfShape,
    Expand, Tile, Range), worked out before the op runs; None for other ops or odd arguments
    (which the op itself refuses). ``first`` is the shape of the op's first input."""
    try:
        if op_type == "ConstantOfShape":
            return tuple(int(v) for v in _numbers(attrs, "shape"))
        if op_type == "Expand" and first is not None:
            shape = [int(v) for v in _numbers(attrs, "shape")]
            rank = max(len(shape), len(first))
            padded = [1] * (rank - len(first)) + list(first), [1] * (rank - len(shape)) + shape
            return tuple(max(a, b) for a, b in zip(*padded, strict=True))
        repeats = [int(v) for v in _numbers(attrs, "repeats")]
        if op_type == "Tile" and first is not None and len(repeats) == len(first):
            return tuple(a * b for a, b in zip(first, repeats, strict=True))
        if op_type == "Range":
            start, limit, delta = (float(_numbers(attrs, k)[0]) for k in ("start", "limit", "delta"))
            return (max(math.ceil((limit - start) / delta), 0),) if delta else None
    except (IndexError, TypeError, ValueError, OverflowError):
        return None
    return None


def convert_nodes(model: onnx.ModelProto, builder: _Builder, label: str) -> None:
    """Converts, folds and shape-infers every ONNX node in topological order."""
    nodes = topological_nodes(model.graph)
    names = node_names(nodes)
    check_supported(nodes, names)
    for onnx_node, name in zip(nodes, names, strict=True):
        where = f"{label}: node {name} ({onnx_node.op_type})"
        attrs = node_attributes(onnx_node, builder.opset, where)
        for value_name in onnx_node.input:
            if value_name and value_name not in builder.constants and value_name not in builder.shapes:
                raise ModelError(f"{where}: input {value_name!r} is produced by no node and is no graph input")
        if onnx_node.op_type == "Constant":
            builder.constant_node(onnx_node, attrs, name)
            continue
        if onnx_node.op_type in ("Shape", "Size"):
            builder.shape_node(onnx_node, attrs)
            continue
        op = REGISTRY[onnx_node.op_type]
        inputs = builder.static_attrs(op, onnx_node, attrs, name)
        first = builder.shape_of(inputs[0]) if inputs and inputs[0] else None
        planned = built_shape(onnx_node.op_type, attrs, first)
        if planned is not None:
            check_size(planned, f"{where}: its output")
        node = Node(name, onnx_node.op_type, tuple(inputs), tuple(onnx_node.output), freeze_attrs(attrs))
        if all((not n) or n in builder.constants for n in inputs):
            builder.fold(op, node)
        else:
            builder.add_dynamic(op, node)


def load_model(source: str | Path | onnx.ModelProto, simplify: bool = True) -> Graph:
    """Loads an ONNX model (file path or ModelProto) into a static-shape :class:`Graph`:
    :func:`~verifier.graph.onnx_file.read_model`, then :func:`build_graph`.

    Raises:
        ModelError: missing or undecodable file, bad tensor data or external data, NaN/Inf
            weights, dynamic shapes, an input that must be constant but is not, shape
            disagreement with ONNX shape inference.
        UnsupportedOpsError: listing every unsupported op type with its node names.
    """
    return build_graph(*read_model(source), simplify=simplify)


def build_graph(model: onnx.ModelProto, label: str, simplify: bool = True) -> Graph:
    """The :class:`Graph` of a model that :func:`~verifier.graph.onnx_file.read_model`
    returned (decoded and checked); ``label`` names it in messages.

    Raises:
        ModelError, UnsupportedOpsError: as :func:`load_model`.
    """
    opset = default_opset(model, label)
    graph = model.graph
    constants = {init.name: tensor_value(init, label) for init in graph.initializer}
    users: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node.name or node.op_type)
    for name, value in constants.items():
        check_finite(name, value, users.get(name, []))
    inputs = tuple(
        ValueInfo(info.name, input_shape(info, label), input_dtype(info, label))
        for info in graph.input
        if info.name not in constants
    )
    if not inputs:
        raise ModelError(f"{label}: the model has no dynamic input")
    builder = _Builder(opset, constants, {v.name: v.shape for v in inputs})
    convert_nodes(model, builder, label)
    outputs = []
    for info in graph.output:
        if info.name in builder.constants:
            raise ModelError(f"{label}: output {info.name!r} does not depend on the network input")
        if info.name not in builder.shapes:
            raise ModelError(f"{label}: output {info.name!r} is produced by no node")
        # an output declared without an element type takes the type the dry run produced
        dtype = (elem_dtype(info) if info.type.tensor_type.elem_type
                 else builder.dtypes.get(info.name, np.dtype(np.float32)))
        outputs.append(ValueInfo(info.name, builder.shapes[info.name], dtype))
    check_against_onnx_inference(model, inputs, builder.shapes, label)
    result = Graph(
        inputs=inputs,
        outputs=tuple(outputs),
        nodes=tuple(builder.nodes),
        constants=builder.constants,
        shapes=builder.shapes,
        opset=opset,
        name=label,
    )
    if simplify:
        result = simplify_graph(result)
    return result
