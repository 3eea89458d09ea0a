"""Exact piecewise-linear forms: how an op is a maximum of affine pieces.

The exact engines (:mod:`verifier.exact`) encode only affine ops and ops that declare a
:class:`MaxForm` through :meth:`verifier.ops.base.Op.max_form`. Three shapes cover them:

- :attr:`MaxShape.ELEMENTWISE`: a chain of :class:`Stage` s on the one dynamic input ``x``; a
  stage maps its input ``x`` to ``sign * max_i (slopes[i] * x + offsets[i])`` elementwise (Relu
  is one stage ``max(x, 0)``, Clip two: a maximum, then a minimum written as a negated maximum).
- :attr:`MaxShape.BROADCAST`: ``sign * max_i (sign * x_i)`` over the inputs broadcast together
  (Max with ``sign = 1``, Min with ``sign = -1``); constant inputs are constant pieces.
- :attr:`MaxShape.WINDOW`: ``sign * max_{j in W(e)} (sign * x_j)`` for output element ``e``
  over a window ``W(e)`` of the one dynamic input's elements; the encoder reads the windows
  off the op's forward on one-hot inputs and rejects an op whose forward does not act so.

Contract (the exact engines' soundness rests on it): in exact real arithmetic, for every input
the op's output equals its form. Rounding of the float op is :meth:`Op.fp_error`'s business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np


class MaxShape(Enum):
    """Which of the three forms of the module docstring an op has."""

    ELEMENTWISE = "elementwise"
    BROADCAST = "broadcast"
    WINDOW = "window"


@dataclass(frozen=True)
class Stage:
    """``y = sign * max_i (slopes[i] * x + offsets[i])`` elementwise.

    Attributes:
        sign: +1 or -1 per element (an array broadcastable to ``x``'s static shape).
        slopes, offsets: one array per piece, broadcastable to ``x``'s static shape.
    """

    sign: np.ndarray
    slopes: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class MaxForm:
    """An op's exact piecewise-linear form (see the module docstring).

    Attributes:
        shape: which form.
        sign: +1 (maximum) or -1 (minimum), for the broadcast and window shapes.
        stages: the chain of stages, for the elementwise shape.
    """

    shape: MaxShape
    sign: float = 1.0
    stages: tuple[Stage, ...] = ()


def stage(sign: float | np.ndarray, slopes: Sequence[float | np.ndarray],
          offsets: Sequence[float | np.ndarray]) -> Stage:
    """A :class:`Stage` from scalars or arrays (converted to float64 arrays)."""
    if len(slopes) != len(offsets) or not slopes:
        raise ValueError("a stage needs one offset per slope and at least one piece")
    return Stage(np.asarray(sign, dtype=np.float64),
                 tuple(np.asarray(s, dtype=np.float64) for s in slopes),
                 tuple(np.asarray(k, dtype=np.float64) for k in offsets))


def elementwise(*stages: Stage) -> MaxForm:
    """The elementwise form made of ``stages``, applied in order."""
    return MaxForm(MaxShape.ELEMENTWISE, stages=tuple(stages))


def leaky(slope: float | np.ndarray) -> MaxForm:
    """``x`` above 0, ``slope * x`` below: ``max(x, a x)`` where ``a <= 1``, else ``min(x, a x)``."""
    a = np.asarray(slope, dtype=np.float64)
    sign = np.where(a <= 1.0, 1.0, -1.0)
    return elementwise(stage(sign, (sign, sign * a), (0.0, 0.0)))


RELU = elementwise(stage(1.0, (1.0, 0.0), (0.0, 0.0)))
"""``max(x, 0)``."""
ABS = elementwise(stage(1.0, (1.0, -1.0), (0.0, 0.0)))
"""``max(x, -x)``."""
MAXIMUM = MaxForm(MaxShape.BROADCAST, 1.0)
MINIMUM = MaxForm(MaxShape.BROADCAST, -1.0)
WINDOW_MAXIMUM = MaxForm(MaxShape.WINDOW, 1.0)
WINDOW_MINIMUM = MaxForm(MaxShape.WINDOW, -1.0)


def clip(low: float | None, high: float | None) -> MaxForm:
    """``min(max(x, low), high)`` (a missing bound is no stage); with ``low > high`` every
    output is ``high``, as ONNX specifies, which the chain gives by itself."""
    stages = []
    if low is not None:
        stages.append(stage(1.0, (1.0, 0.0), (0.0, float(low))))
    if high is not None:
        stages.append(stage(-1.0, (-1.0, 0.0), (0.0, -float(high))))
    return elementwise(*stages) if stages else elementwise(stage(1.0, (1.0,), (0.0,)))
