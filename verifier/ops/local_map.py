"""The linear part of a spatially local affine op on 2-D feature maps, as an op describes it to
bound methods that keep coefficients as windows (:mod:`verifier.bounds.windows`).

An op returns a :class:`LocalMap` from :meth:`verifier.ops.base.Op.local_map` when its output
``y`` (shape ``(1, C_out, H_out, W_out)``) is ``L x + f(0)`` in its dynamic input ``x`` (shape
``(1, C_in, H_in, W_in)``) with ``L`` one of:

- ``CONV``: ``y[o] = sum_{c,k} W[o_c, c, k] x[c, o * stride - begin + k * dilation]`` (positions
  outside ``x`` are the padding zeros);
- ``CONV_TRANSPOSE``: ``y[o] = sum x[c, i] W[c, o_c, k]`` over ``i * stride + k = o + begin``
  (dilation 1; output positions past the full transposed output have no term);
- ``CHANNEL_SCALE``: ``y[c, p] = W[c] x[c, p]`` (same shape).

The contract (soundness of windowed backward passes rests on it): for every ``x``,
``forward(x) - forward(0)`` equals ``L x`` as stated, with ``W`` as returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from torch import Tensor


class LocalKind(Enum):
    """Which local linear map (see the module docstring)."""

    CONV = "conv"
    CONV_TRANSPOSE = "conv transpose"
    CHANNEL_SCALE = "channel scale"


@dataclass(frozen=True)
class LocalMap:
    """A local linear map of 2-D feature maps.

    Attributes:
        kind: which map.
        weight: ``(C_out, C_in, KH, KW)`` for ``CONV``, ``(C_in, C_out, KH, KW)`` for
            ``CONV_TRANSPOSE`` (the ONNX layouts), ``(C,)`` for ``CHANNEL_SCALE``.
        stride: per spatial axis.
        begin: per spatial axis: the padding before the input (``CONV``; negative crops) or
            the cropping at the start of the full output (``CONV_TRANSPOSE``).
        dilation: per spatial axis (``CONV`` only; 1 otherwise).
    """

    kind: LocalKind
    weight: Tensor
    stride: tuple[int, int] = (1, 1)
    begin: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
