"""The domains of ReLU-split branch and bound (:mod:`verifier.bab.relu_split`): the splittable
nodes, a batch of domains with their bounds, splits, slopes and multipliers, and the root
domain built from a CROWN object over the region's box."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from verifier.bounds.crown import Crown
from verifier.config import ReluBranching, ReluSplitConfig
from verifier.graph.torch_graph import TorchGraph
from verifier.ops.relax import relax_leaky

Bounds = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class _Layer:
    """A splittable node: its name, input value, flat size, valid slope range and the offset of
    its neurons in the concatenation of all splittable nodes."""

    node: str
    value: str
    size: int
    span: tuple[float, float]
    offset: int


@dataclass(frozen=True)
class _Domains:
    """A batch of ``M`` domains (see the module docstring).

    ``bounds``: value -> flat ``(M, size)`` lower and upper bounds; ``split``: node -> ``(M,
    size)`` int8 (+1 active, -1 inactive, 0 not split); ``alpha`` and ``beta``: node -> ``(M,
    R, size)`` float32; ``open``: ``(M, K)`` clauses not refuted; ``hardness``: ``(M,)`` the
    hardest open clause's best row bound (lower: further from refuted); ``objective``: ``(M,)``
    int64, which of the bounder's objectives each domain bounds (None: the first, for all; a
    search for many single-row bounds at once keeps each row's domains in one batch,
    :mod:`verifier.bab.row_search`); ``node``: ``(M,)`` int64, each domain's node in the proof
    log (:mod:`verifier.certificate.log`; None: not recorded)."""

    bounds: dict[str, Bounds]
    split: dict[str, Tensor]
    alpha: dict[str, Tensor]
    beta: dict[str, Tensor]
    open: Tensor
    hardness: Tensor
    objective: Tensor | None = None
    node: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.open.shape[0])

    @property
    def bytes_per_domain(self) -> int:
        """Bytes one stored domain takes (all of its tensors' rows), at least 1."""
        tensors = [t for pair in self.bounds.values() for t in pair]
        tensors += [*self.split.values(), *self.alpha.values(), *self.beta.values(), self.open, self.hardness]
        tensors += [] if self.objective is None else [self.objective]
        return max(1, sum(t.numel() * t.element_size() for t in tensors) // max(1, self.size))

    def take(self, index: Tensor) -> _Domains:
        """The domains at ``index`` (a bool mask or indices)."""
        return _Domains({k: (lo[index], hi[index]) for k, (lo, hi) in self.bounds.items()},
                        {k: v[index] for k, v in self.split.items()}, {k: v[index] for k, v in self.alpha.items()},
                        {k: v[index] for k, v in self.beta.items()}, self.open[index], self.hardness[index],
                        None if self.objective is None else self.objective[index],
                        None if self.node is None else self.node[index.to(self.node.device)])

    def repeat(self, times: int) -> _Domains:
        """``times`` copies of the batch, one after the other."""
        def rep(t: Tensor) -> Tensor:
            return t.repeat(times, *([1] * (t.dim() - 1)))

        return _Domains({k: (rep(lo), rep(hi)) for k, (lo, hi) in self.bounds.items()},
                        {k: rep(v) for k, v in self.split.items()}, {k: rep(v) for k, v in self.alpha.items()},
                        {k: rep(v) for k, v in self.beta.items()}, rep(self.open), rep(self.hardness),
                        None if self.objective is None else rep(self.objective),
                        None if self.node is None else rep(self.node))

    def with_state(self, **changes: Any) -> _Domains:
        """A copy with the named fields replaced (e.g. new bounds and multipliers after a
        bounding round); the fields not named, the objectives among them, stay."""
        return dataclasses.replace(self, **changes)


def _cat(parts: Sequence[_Domains]) -> _Domains:
    first = parts[0]
    if len(parts) == 1:
        return first
    return _Domains({k: (torch.cat([p.bounds[k][0] for p in parts]), torch.cat([p.bounds[k][1] for p in parts]))
                     for k in first.bounds},
                    {k: torch.cat([p.split[k] for p in parts]) for k in first.split},
                    {k: torch.cat([p.alpha[k] for p in parts]) for k in first.alpha},
                    {k: torch.cat([p.beta[k] for p in parts]) for k in first.beta},
                    torch.cat([p.open for p in parts]), torch.cat([p.hardness for p in parts]),
                    None if first.objective is None else torch.cat([p.objective for p in parts]),  # type: ignore[misc]
                    None if first.node is None else torch.cat([p.node for p in parts]))  # type: ignore[misc]


def splittable_layers(tgraph: TorchGraph) -> list[_Layer]:
    """The ReLU-like nodes (a :meth:`~verifier.ops.base.Op.lower_slope_range`) on one dynamic input."""
    layers: list[_Layer] = []
    offset = 0
    for node, op in zip(tgraph.graph.nodes, tgraph.ops, strict=True):
        span = op.lower_slope_range(node)
        if span is None or not node.inputs or node.inputs[0] in tgraph.constants:
            continue
        size = int(torch.Size(tgraph.graph.shapes[node.inputs[0]]).numel())
        layers.append(_Layer(node.name, node.inputs[0], size, span, offset))
        offset += size
    return layers


def count_unstable(bounds: Mapping[str, Bounds], tgraph: TorchGraph) -> int:
    """Unstable neurons (``l < 0 < u``) of the splittable nodes under ``bounds`` (value ->
    bounds of any shape, batch 1)."""
    total = 0
    for layer in splittable_layers(tgraph):
        if layer.value in bounds:
            lo, hi = bounds[layer.value]
            total += int(((lo < 0) & (hi > 0)).sum())
    return total


def _root(tgraph: TorchGraph, layers: Sequence[_Layer], crown: Crown, k: int, r: int) -> _Domains:
    """The root domain from a CROWN object over the region's box (batch 1): its bounds of the
    pre-activations and of every value it refined, CROWN's slopes, zero multipliers."""
    names = {layer.value for layer in layers} | set(crown.refined)
    bounds = {name: (crown.bounds[name][0].reshape(1, -1).detach(), crown.bounds[name][1].reshape(1, -1).detach())
              for name in names if name in crown.bounds}
    split, alpha, beta = {}, {}, {}
    for layer in layers:
        lo, hi = bounds[layer.value]
        leak = layer.span[0] if layer.span[0] > 0 else 0.0
        slope = relax_leaky(lo, hi, leak).lower_slope.clamp(*layer.span)
        split[layer.node] = torch.zeros(1, layer.size, dtype=torch.int8, device=lo.device)
        alpha[layer.node] = slope.unsqueeze(1).expand(1, k * r, layer.size).float().clone()
        beta[layer.node] = torch.zeros(1, k * r, layer.size, dtype=torch.float32, device=lo.device)
    device = tgraph.place.device
    return _Domains(bounds, split, alpha, beta, torch.ones(1, k, dtype=torch.bool, device=device),
                    torch.full((1,), -torch.inf, dtype=torch.float64, device=device))


def _batch_size(layers: Sequence[_Layer], tgraph: TorchGraph, rows: int, config: ReluSplitConfig) -> int:
    """Domains per round so that one round's tensors fit ``config.batch_memory`` bytes: each of
    the ``2`` children (``2 * candidates`` in the branching pass) holds slopes, multipliers,
    their gradients and optimiser state, and backward coefficients for every value, per row."""
    neurons = sum(layer.size for layer in layers)
    values = sum(int(torch.Size(s).numel()) for s in tgraph.graph.shapes.values())
    itemsize = torch.finfo(tgraph.place.dtype).bits // 8
    per_child = rows * (12 * neurons + 3 * values) * itemsize
    children = 2 * max(1, config.candidates if config.branching is ReluBranching.FSB else 1)
    return int(max(1, min(config.batch, config.batch_memory // max(1, per_child * children))))
