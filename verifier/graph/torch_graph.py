"""Concrete batched evaluation of a :class:`Graph` in torch on a chosen device and dtype."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Graph, Node
from verifier.ops import REGISTRY
from verifier.ops.base import Op


class EvaluationError(RuntimeError):
    """An op failed while executing; the message names the node."""


@dataclass(frozen=True)
class Placement:
    """Where and in which floating-point type tensors live."""

    device: torch.device
    dtype: torch.dtype


def constant_tensors(graph: Graph, place: Placement) -> dict[str, Tensor]:
    """The graph's constants as tensors on ``place``; floats in ``place.dtype``, ints kept."""
    out: dict[str, Tensor] = {}
    for name, value in graph.constants.items():
        tensor = torch.from_numpy(np.array(value))
        if tensor.is_floating_point():
            tensor = tensor.to(place.dtype)
        out[name] = tensor.to(place.device)
    return out


class TorchGraph:
    """A graph bound to a device and dtype: ``forward`` evaluates batches of inputs.

    The interpreter loop is shared by every analysis through :meth:`run`, which takes a
    per-node callback; results live in a side table keyed by value name.
    """

    def __init__(self, graph: Graph, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 overrides: Mapping[str, Op] | None = None, straight_through: bool = False):
        """Binds ``graph`` to a device and dtype. ``overrides`` replaces the registry's op for
        some op types (experiments, and the soundness checker's deliberately buggy builds);
        every analysis of this graph then uses the replacement. ``straight_through``: the
        forward passes use :meth:`Op.forward_for_gradients` (same values, gradients through
        piecewise-constant ops; for attacks, never for bounds)."""
        self.graph = graph
        self.straight_through = straight_through
        self.place = Placement(torch.device(device), dtype)
        self.constants = constant_tensors(graph, self.place)
        table = {**REGISTRY, **(overrides or {})}
        self.ops: list[Op] = [table[node.op] for node in graph.nodes]
        self.op_of: dict[str, Op] = {node.name: op for node, op in zip(graph.nodes, self.ops, strict=True)}

    def in_dtype(self, dtype: torch.dtype) -> TorchGraph:
        """The same graph and ops (overrides included) on this device in ``dtype``: constants
        cast (e.g. float32 passes that only estimate)."""
        if dtype == self.place.dtype:
            return self
        constants = {name: t.to(dtype) if t.is_floating_point() else t for name, t in self.constants.items()}
        return self._twin(self.graph, Placement(self.place.device, dtype), constants)

    def cut_at(self, value: str) -> TorchGraph:
        """The graph up to ``value``'s producer with ``value`` its output (:meth:`Graph.cut_at`),
        on this device and dtype with the same ops (overrides included)."""
        return self._twin(self.graph.cut_at(value), self.place, self.constants)

    def _twin(self, graph: Graph, place: Placement, constants: dict[str, Tensor]) -> TorchGraph:
        """A graph bound like this one, without looking its ops up again: ``graph``'s nodes are
        this graph's first ones (the same ops, overrides included)."""
        twin = TorchGraph.__new__(TorchGraph)
        twin.graph, twin.place, twin.constants = graph, place, constants
        twin.ops = self.ops[: len(graph.nodes)]
        twin.op_of = {node.name: op for node, op in zip(graph.nodes, twin.ops, strict=True)}
        twin.straight_through = self.straight_through
        return twin

    def constant_args(self, node: Node) -> list[Tensor | None]:
        """The node's constant inputs by position; None at dynamic or omitted inputs."""
        return [self.constants.get(name) if name else None for name in node.inputs]

    def run(
        self,
        seeds: dict[str, object],
        step: Callable[[Op, Node, list[object | None], list[bool]], Sequence[object]],
        constant: Callable[[Tensor], object],
    ) -> dict[str, object]:
        """Interprets the graph: ``step`` maps an op's arguments to its outputs.

        Args:
            seeds: values of the graph inputs (in whatever representation ``step`` uses).
            step: called per node with (op, node, args, batched) where constant arguments
                were converted by ``constant``; returns one value per node output.
            constant: converts a constant tensor into the representation of ``step``.

        Returns:
            the table of every dynamic value.
        """
        table: dict[str, object] = dict(seeds)
        for op, node in zip(self.ops, self.graph.nodes, strict=True):
            args: list[object | None] = []
            batched: list[bool] = []
            for name in node.inputs:
                if not name:
                    args.append(None)
                    batched.append(False)
                elif name in self.constants:
                    args.append(constant(self.constants[name]))
                    batched.append(False)
                else:
                    args.append(table[name])
                    batched.append(True)
            try:
                outs = step(op, node, args, batched)
            except Exception as exc:
                if isinstance(exc, (EvaluationError, ModelError)):
                    raise  # a ModelError names the node and is the user's model's limit
                raise EvaluationError(f"while executing node {node.name} ({node.op}): {exc}") from exc
            for name, value in zip(node.outputs, outs, strict=False):
                if name:
                    table[name] = value
        return table

    def leaf_args(self, node: Node, batched: Sequence[bool], count: int,
                  dtype: torch.dtype, device: torch.device | str) -> tuple[list[Tensor | None], list[Tensor]]:
        """Arguments for ``node``'s op with every dynamic input a zero batch ``(count, *shape)``
        that requires grad (for vector-Jacobian products of affine ops), constants as they
        are and absent inputs as None; returns the arguments and the dynamic leaves."""
        args: list[Tensor | None] = []
        leaves: list[Tensor] = []
        for name, is_dyn in zip(node.inputs, batched, strict=True):
            if not name:
                args.append(None)
            elif not is_dyn:
                args.append(self.constants[name])
            else:
                leaf = torch.zeros((count, *self.graph.shapes[name]), dtype=dtype, device=device, requires_grad=True)
                leaves.append(leaf)
                args.append(leaf)
        return args, leaves

    def forward_all(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Evaluates the graph on batched inputs ``(B, *input_shape)``; returns every dynamic
        value (inputs, intermediate values and outputs) by name."""
        if len(inputs) != len(self.graph.inputs):
            raise ValueError(f"expected {len(self.graph.inputs)} inputs, got {len(inputs)}")
        seeds: dict[str, object] = {}
        for info, x in zip(self.graph.inputs, inputs, strict=True):
            if tuple(x.shape[1:]) != info.shape:
                raise ValueError(f"input {info.name}: shape {tuple(x.shape[1:])} != {info.shape}")
            seeds[info.name] = x.to(self.place.device, self.place.dtype)

        def step(op: Op, node: Node, args: list[object | None], batched: list[bool]) -> Sequence[object]:
            if self.straight_through:
                return op.forward_for_gradients(node, args, batched)  # type: ignore[arg-type]
            return op.forward(node, args, batched)  # type: ignore[arg-type]

        return self.run(seeds, step, lambda t: t)  # type: ignore[return-value]

    def forward(self, *inputs: Tensor) -> list[Tensor]:
        """Evaluates the graph on batched inputs ``(B, *input_shape)``; returns the outputs."""
        table = self.forward_all(*inputs)
        return [table[v.name] for v in self.graph.outputs]

    def split_flat(self, flat: Tensor) -> list[Tensor]:
        """Splits ``(B, input_size)`` flattened inputs (C order) into the graph's inputs."""
        parts, start = [], 0
        for info in self.graph.inputs:
            parts.append(flat[:, start : start + info.size].reshape(flat.shape[0], *info.shape))
            start += info.size
        return parts

    def forward_flat(self, flat: Tensor) -> Tensor:
        """Flattened inputs ``(B, n)`` to flattened, concatenated outputs ``(B, m)``."""
        outs = self.forward(*self.split_flat(flat))
        return torch.cat([o.reshape(o.shape[0], -1) for o in outs], dim=1)


def numerical_hygiene(seed: int) -> None:
    """Set once per run: seeds, and no TF32 (its 10-bit mantissa would void the float-error
    bounds of float32 bound computation on GPUs)."""
    torch.manual_seed(seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
