"""Linear relaxations of ops that are not unary elementwise (several dynamic inputs, or windows).

A rule moves CROWN's objective coefficients ``A`` (``(N, R, *out_shape)``) on the node's output
to coefficients on its dynamic inputs plus a bias, such that for every input inside the given
bounds ``sum <A, f(inputs)> >= sum_i <A_i, input_i> + bias`` (exact real arithmetic; the float
evaluation error of the node is added by the traversal from the op's ``fp_error``).

The table :data:`MULTI_RELAXATIONS` maps op types to rules; ops not in it are cut at their
interval bounds by the traversal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from verifier.graph.ir import Node

Args = Sequence[Tensor | None]


@dataclass(frozen=True)
class Moved:
    """Result of a backward step: coefficients per input position, and the bias ``(N, R)``."""

    coefficients: dict[int, Tensor]
    bias: Tensor


@dataclass(frozen=True)
class MultiRule:
    """The relaxation of one op type.

    Attributes:
        backward: ``(node, A, lowers, uppers, batched) -> Moved | None`` (None: cut the node).
            ``lowers``/``uppers`` hold each input's bounds ``(N, *shape)`` (constants without
            the batch dim, absent optional inputs as None); ``batched`` flags the dynamic ones.
        refine: ``(node, lowers, uppers, batched) -> {input position: flat positions}`` whose
            bounds CROWN should tighten before the node is relaxed.
    """

    backward: Callable[[Node, Tensor, Args, Args, Sequence[bool]], Moved | None]
    refine: Callable[[Node, Args, Args, Sequence[bool]], dict[int, Tensor]]


MULTI_RELAXATIONS: dict[str, MultiRule] = {}
