"""Which nodes are affine in their dynamic inputs (so CROWN passes through them exactly).

A node is affine when its outputs are ``f(x_1, ..., x_k) = L(x_1, ..., x_k) + c`` for its
dynamic inputs ``x_i`` with the constants fixed. Backward propagation then needs no
hand-written rule: the vector-Jacobian product of the op's own forward gives ``L^T A``, and
``f(0, ..., 0) = c`` gives the offset.
"""

from __future__ import annotations

from collections.abc import Sequence

from verifier.graph.ir import Node

# Linear in every dynamic input jointly, whatever the constants are.
_ALWAYS = frozenset({
    "Linear", "Conv", "ConvTranspose", "BatchNormalization", "Add", "Sub", "Neg", "Sum", "Mean",
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "Identity", "Dropout", "Expand", "Tile", "AveragePool",
    "GlobalAveragePool", "ReduceSum", "ReduceMean", "Resize", "Upsample", "Pad",
    "DepthToSpace", "SpaceToDepth",
})
# Multilinear: affine when exactly one operand is dynamic.
_ONE_DYNAMIC = frozenset({"Mul", "MatMul", "Gemm", "Einsum"})


def is_affine(node: Node, batched: Sequence[bool]) -> bool:
    """True when ``node`` is affine in its dynamic inputs (see the module docstring).

    Cast between float types counts as affine; Div only with a constant denominator.
    """
    if node.op in _ALWAYS:
        return True
    if node.op in _ONE_DYNAMIC:
        return sum(batched) == 1
    if node.op == "Div":
        return not batched[1]
    if node.op in ("Cast", "CastLike"):
        return node.attr("to") in (1, 10, 11, 16) or node.op == "CastLike"
    return False
