"""The result of a bound pass: a table keyed by value and node name.

A bound pass (:class:`verifier.bounds.crown.Crown`) fills one :class:`BoundTable` per batch of
input boxes; the backward traversal (:mod:`verifier.bounds.backward`), the exact engines
(:mod:`verifier.exact`) and the SDP bound (:mod:`verifier.sdp`) read it. Every entry holds for
every input of its box (batch element) and for the float model: ``bounds`` contain each
value's float evaluation, ``errors`` bound each node's float rounding, ``relaxations`` are
valid on the bounds of the node's input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Graph, Node
from verifier.ops.relax import LinearBounds, relax

Bounds = tuple[Tensor, Tensor]
Args = tuple[list[Tensor | None], list[Tensor | None], list[bool]]


@dataclass
class BoundTable:
    """Bounds, float errors and relaxations of one graph over a batch of ``batch`` boxes.

    Attributes:
        tgraph: the graph bound to the pass's device, dtype and op table.
        unit: the unit roundoff the float errors were computed with (0: real arithmetic, NOT
            sound for the float model).
        batch: the number of boxes ``N``.
        input_bounds: the boxes, ``(N, *shape)`` per graph input (rounded outward).
        bounds: ``(N, *shape)`` lower and upper bounds of every value computed so far.
        errors: per node, one float-error bound per output (None: exact).
        relaxations: per relaxed single-input node, its lines on its input's bounds (None: the
            node has no relaxation and is cut at its bounds).
        exact: values whose interval bounds are exact (the inputs, and one affine op of an
            input), which refinement skips.
        estimate: passes over this table only estimate (``unit`` 0, and relaxation lines cast
            to a narrower dtype without padding): never a proof (``Crown.tiled``).
    """

    tgraph: TorchGraph
    unit: float
    batch: int
    input_bounds: dict[str, Bounds]
    bounds: dict[str, Bounds] = field(default_factory=dict)
    errors: dict[str, tuple[Tensor | None, ...]] = field(default_factory=dict)
    relaxations: dict[str, LinearBounds | None] = field(default_factory=dict)
    exact: set[str] = field(default_factory=set)
    estimate: bool = False

    @property
    def graph(self) -> Graph:
        """The graph the table describes."""
        return self.tgraph.graph

    def args(self, node: Node) -> tuple[list[Tensor | None], list[Tensor | None], list[bool]]:
        """Lower and upper bounds of the node's arguments (a constant twice), and which of
        them are dynamic."""
        los: list[Tensor | None] = []
        his: list[Tensor | None] = []
        batched: list[bool] = []
        for name in node.inputs:
            lo: Tensor | None = None
            hi: Tensor | None = None
            if name in self.tgraph.constants:
                lo = hi = self.tgraph.constants[name]
            elif name:
                lo, hi = self.bounds[name]
            los.append(lo)
            his.append(hi)
            batched.append(bool(name) and name not in self.tgraph.constants)
        return los, his, batched

    def relax(self, node: Node, lo: Tensor, hi: Tensor, mode: str) -> LinearBounds | None:
        """The node's declared elementwise relaxation (``Op.relaxation``) on ``[lo, hi]``."""
        op = self.tgraph.op_of[node.name]
        return relax(op, node, lo, hi, mode, self.tgraph.constant_args(node), padded=not self.estimate)

    def relaxation(self, node: Node, mode: str, args: Args | None = None) -> LinearBounds | None:
        """The node's relaxation on its input's current bounds, cached in :attr:`relaxations`;
        None for nodes that are not single-input elementwise or have no relaxation. ``args``:
        :meth:`args` of the node when the caller has them."""
        los, his, batched = args if args is not None else self.args(node)
        if not (sum(batched) == 1 and batched[0] and len(node.outputs) == 1):
            return None
        if node.name not in self.relaxations:
            lo, hi = los[0], his[0]
            assert lo is not None and hi is not None
            self.relaxations[node.name] = self.relax(node, lo, hi, mode)
        return self.relaxations[node.name]
