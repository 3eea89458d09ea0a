"""Corner detectors written into an MLP's weights before training.

Gradient training alone turns the hinge at a planted corner into a broad ramp that attacks
follow to the corner. A *detector* avoids that: one unit of the first hidden layer computes

    z = k * (U(x) - (d - rho)),   U(x) = sum_i (x_i - far_i) / (c_i - far_i)

where ``c`` is the planted corner, ``far`` the opposite corner and ``d`` the input size: ``U``
is ``d`` at ``c``, at most ``d - 1`` at every other corner and ``< d - rho`` outside a thin slab
at ``c``, so the unit is off (ReLU: exactly 0 with zero gradient; Sigmoid/Tanh: saturated) on
all of the box but a sliver of volume about ``rho^d / d!`` of it. One reserved unit per later
hidden layer carries the detector forward (identity for ReLU, a steep monotone step for
Sigmoid/Tanh) and the last one adds to the target logit. Training
(:mod:`verifier.soundness.training`) then fits the rest of the network around it, and the
strong check decides what was hidden. Nothing here is trusted: every planted point is
re-checked on the exported ONNX model (:mod:`verifier.soundness.validate`).
"""

from __future__ import annotations

import torch
from torch import nn

from verifier.soundness.training import Boxes

_STEEP = {"relu": 2.0, "sigmoid": 20.0, "tanh": 10.0}
"""Slope ``k`` of the detector unit: for ReLU its value at the corner is ``k * rho``; for the
S-shaped activations ``k * rho = 10`` or 5 keeps the unit saturated on and off."""
_RHO = 0.5
_OFF = {"relu": 0.0, "sigmoid": 0.0, "tanh": -1.0}
_PASS = {"relu": (1.0, 0.0), "sigmoid": (20.0, -10.0), "tanh": (10.0, 0.0)}
"""``(a, b)`` of a carrying unit ``act(a h + b)``: identity for ReLU; for Sigmoid (values in
[0, 1]) and Tanh (values in [-1, 1]) a steep step at the middle of the range."""


def plant_detectors(network: nn.Sequential, boxes: Boxes, activation: str, gain: float = 10.0) -> None:
    """Writes one detector per planted box into ``network`` (an MLP with at least two hidden
    layers, built by :func:`verifier.soundness.architectures.build_network`), in place.

    Planted box ``i`` uses units ``2i`` (threshold ``d - rho``) and ``2i + 1`` (threshold
    ``d + rho``) of the first hidden layer; unit ``i`` of the second layer combines them into a
    bump that is off on both sides of the slab (a half-space alone would also fire far outside
    the box, on other boxes and the training data); unit ``i`` of every later hidden layer
    carries it, and the last one adds ``gain`` times its value above its off level to the
    target logit. Weights between reserved and other units are zeroed.

    Raises:
        ValueError: not an MLP with two hidden layers, or too many planted boxes for its widths.
    """
    linears = [m for m in network if isinstance(m, nn.Linear)]
    if any(isinstance(m, nn.Conv2d) for m in network) or len(linears) < 3:
        raise ValueError("detectors are planted in MLPs with at least two hidden layers only")
    planted = torch.nonzero(boxes.planted).flatten().tolist()
    if 2 * len(planted) > min(m.out_features for m in linears[:-1]):
        raise ValueError(f"{len(planted)} planted boxes do not fit the narrowest hidden layer")
    steep, (a, b), off = _STEEP[activation], _PASS[activation], _OFF[activation]
    with torch.no_grad():
        first = linears[0]
        for i, box in enumerate(planted):
            corner = boxes.corners[box].flatten().double()
            far = (boxes.lower[box] + boxes.upper[box] - boxes.corners[box]).flatten().double()
            span = corner - far
            offset = (far / span).sum() + corner.numel()
            for unit, shift in ((2 * i, -_RHO), (2 * i + 1, _RHO)):
                first.weight[unit] = (steep / span).float()
                first.bias[unit] = float(-steep * (offset + shift))
        second = linears[1]
        reserved = 2 * len(planted)
        second.weight[:, :reserved] = 0.0
        for i in range(len(planted)):
            second.weight[i, :] = 0.0
            low, high = 2 * i, 2 * i + 1
            if activation == "relu":
                second.weight[i, low], second.weight[i, high], second.bias[i] = 1.0, -2.0, 0.0
            elif activation == "sigmoid":
                second.weight[i, low], second.weight[i, high], second.bias[i] = 20.0, -20.0, -10.0
            else:
                second.weight[i, low], second.weight[i, high], second.bias[i] = 10.0, -10.0, -10.0
        for layer in linears[2:-1]:
            for unit in range(len(planted)):
                layer.weight[unit, :] = 0.0
                layer.weight[:, unit] = 0.0
                layer.weight[unit, unit] = a
                layer.bias[unit] = b
        last = linears[-1]
        for i, box in enumerate(planted):
            last.weight[:, i] = 0.0
            target = int(boxes.targets[box])
            last.weight[target, i] = gain
            last.bias[target] -= gain * off
