"""A small graph IR with static shapes, built from ONNX protobufs.

Conventions:
- Every value has a static shape *without* a batch dimension: the shape the ONNX model gives it
  for a single input sample (the model's own leading batch dimension of size 1, if any, is part
  of that shape).
- At evaluation time a dynamic value is a tensor of shape ``(B, *shape)``: a leading batch
  dimension is added in front of the ONNX shape. Constants are tensors of their own shape with
  no batch dimension.
- Nodes are frozen and stateless; analyses keep their results in side tables keyed by value
  name, never on the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Node:
    """One operation.

    Attributes:
        name: the ONNX node name (or a generated unique one if the model left it empty).
        op: op type, e.g. ``"Conv"``; normalisation may introduce our own ops (``"Linear"``).
        inputs: value names; ``""`` marks an omitted optional input.
        outputs: value names produced.
        attrs: typed attribute values with the ONNX schema defaults filled in (ints, floats,
            strings, tuples, numpy arrays). Constant inputs that an op needs statically
            (Reshape's shape, Slice's starts, ...) are moved into attrs by the loader.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def attr(self, key: str, default: Any = None) -> Any:
        """Returns attribute ``key`` or ``default`` when absent."""
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: its name, static shape and numpy dtype."""

    name: str
    shape: Shape
    dtype: np.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Graph:
    """A topologically ordered, constant-folded graph with static shapes.

    Attributes:
        inputs: the dynamic graph inputs (initializers are not inputs).
        outputs: the graph outputs, in ONNX order.
        nodes: nodes in a topological order; every node has at least one dynamic input.
        constants: value name -> numpy array, for initializers and folded values.
        shapes: value name -> static shape (no batch dimension), for every dynamic value.
        opset: the model's default-domain opset version.
        name: a label for messages (usually the file name).
    """

    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    nodes: tuple[Node, ...]
    constants: Mapping[str, np.ndarray]
    shapes: Mapping[str, Shape]
    opset: int
    name: str = "model"

    def is_constant(self, value: str) -> bool:
        """True when ``value`` is a constant (initializer or folded), not a dynamic tensor."""
        return value in self.constants

    def producers(self) -> dict[str, Node]:
        """Maps each dynamic value name to the node that produces it."""
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """Maps each value name to the nodes that read it, in node order."""
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    users.setdefault(name, []).append(node)
        return users

    def cut_at(self, value: str) -> Graph:
        """The graph up to the node producing ``value`` (a node's output, not a graph input),
        with ``value`` as its only output (the same nodes, so the same float computation of
        ``value``)."""
        stop = next(i for i, node in enumerate(self.nodes) if value in node.outputs)
        output = ValueInfo(value, self.shapes[value], np.dtype(np.float32))
        return replace(self, nodes=self.nodes[: stop + 1], outputs=(output,))

    def op_types(self) -> list[str]:
        """The sorted set of op types in the graph."""
        return sorted({n.op for n in self.nodes})

    @property
    def largest_value_size(self) -> int:
        """Elements of the largest dynamic value (1 for a graph without values): what sizes the
        bound passes' chunks and batches."""
        return max((math.prod(shape) for shape in self.shapes.values()), default=1)

    @property
    def input_size(self) -> int:
        """Total number of scalar inputs over all graph inputs."""
        return sum(v.size for v in self.inputs)

    @property
    def output_size(self) -> int:
        """Total number of scalar outputs over all graph outputs (flattened, concatenated)."""
        return sum(v.size for v in self.outputs)


def freeze_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Returns a read-only view of ``attrs`` suitable for a frozen :class:`Node`."""
    return MappingProxyType(dict(attrs))
