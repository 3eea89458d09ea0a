"""Type casts: ``Cast`` and ``CastLike``.

Between float types a cast is the identity on our tensors (the working dtype is the
configuration's) and its rounding to a coarser float type goes into ``fp_error``, with the
:class:`~verifier.ops.base.MonotoneOp` corner rule for the interval bounds. Casts of constants to
or from integer types are real casts; bounds for a cast of a dynamic value to a non-float type
raise :class:`~verifier.errors.ModelError`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Affinity, Args, Flags, MonotoneOp, Pair, magnitude, register
from verifier.ops.shape import data_input

_FLOAT_TYPES = {
    1: (torch.float32, 2.0**-24, 2.0**-150),
    10: (torch.float16, 2.0**-11, 2.0**-25),
    11: (torch.float64, 2.0**-53, 0.0),
    16: (torch.bfloat16, 2.0**-8, 2.0**-134),
}
_OTHER_TYPES = {
    2: torch.uint8,
    3: torch.int8,
    4: torch.uint16,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    12: torch.uint32,
    13: torch.uint64,
}


def _cast(node: Node, x: Tensor, to: int) -> Tensor:
    if to in _FLOAT_TYPES:
        return x if x.is_floating_point() else x.to(_FLOAT_TYPES[to][0])
    if to in _OTHER_TYPES:
        return x.to(_OTHER_TYPES[to])
    raise ModelError(f"{node.op} node {node.name!r}: cast to ONNX type {to} is unsupported")


def _cast_error(to: int, mag: Tensor, unit: float) -> Tensor | None:
    """Rounding of a cast to a float type coarser than the working precision."""
    if to not in _FLOAT_TYPES:
        return None
    _, target_unit, tiny = _FLOAT_TYPES[to]
    if target_unit <= unit:
        return None
    return target_unit * mag + tiny


@register("Cast")
class Cast(MonotoneOp):
    """ONNX ``Cast``. Between float types it is the identity on our tensors (the working dtype
    is the configuration's); the rounding of a cast to a coarser float type (float16,
    bfloat16, or float32 under a float64 evaluation) goes into :meth:`fp_error`. Casts of
    constants to or from integer types are real casts (truncation toward zero, like numpy);
    bounds for a cast of a dynamic value to an integer/bool type raise :class:`ModelError`.
    """

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """Affine (the identity up to rounding, which :meth:`fp_error` covers) between float types."""
        return self._to(node, []) in _FLOAT_TYPES

    def _to(self, node: Node, args: Args) -> int:
        return int(node.attrs["to"])

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (_cast(node, data_input(node, args, batched), self._to(node, args)),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        if self._to(node, lower) not in _FLOAT_TYPES:
            raise ModelError(
                f"{node.op} node {node.name!r}: cast of a dynamic value to a non-float type is unsupported"
            )
        return super().interval(node, lower, upper, batched)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (_cast_error(self._to(node, lower), magnitude(out[0][0], out[1][0]), unit),)


_CODES = {t[0]: code for code, t in _FLOAT_TYPES.items()} | {t: c for c, t in _OTHER_TYPES.items()}


@register("CastLike")
class CastLike(Cast):
    """ONNX ``CastLike``: ``Cast`` to the dtype of the (constant) second input."""

    affinity = Affinity.JOINT

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """True: the target type is known only from the arguments, and a dynamic value cast to
        a non-float type is refused by :meth:`interval` (a :class:`ModelError`) before any
        bound pass could use this; between float types the cast is the identity up to the
        rounding :meth:`fp_error` covers."""
        return True

    def _to(self, node: Node, args: Args) -> int:
        target = args[1]
        assert target is not None
        return _CODES.get(target.dtype, 1)
