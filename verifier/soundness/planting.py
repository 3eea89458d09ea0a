"""Corner detectors written into a network's weights before training.

Gradient training alone turns the hinge at a planted corner into a broad ramp that attacks
follow to the corner. A *detector* avoids that. Let ``phi(x)`` be the features the first dense
layer reads from (the input itself for an MLP; for a CNN, reserved *carry* channels of the
convolutions, below), ``c`` the planted corner and ``f`` the opposite corner. One unit of the
first dense layer computes

    z = (k / m) * (U(x) - (n - rho * m)),   U(x) = sum_j (phi_j(x) - phi_j(f)) / (phi_j(c) - phi_j(f))

over the ``n`` carried features. Every carried feature is a strictly monotone function of the
input pixels it sees, rising towards ``c`` (the planted corner's side is constant on all
pixels of one feature), so each term of ``U`` is at most 1 on the box and equals 1 at ``c``:
``U(c) = n``. Moving any seen pixel to the far side lowers ``U`` by at least ``m``, the
smallest such drop (1 for an MLP, about 1/4 behind a 2x2 average pooling), so every other
corner that differs on a seen pixel has ``U <= n - m`` and the unit is off (ReLU: exactly 0
with zero gradient; Sigmoid/Tanh: saturated) on all of the box but a thin slab at ``c``.

Carry channels: convolution ``l`` reserves its first ``C`` output channels (``C`` the input's
channels); channel ``r`` reads only channel ``r`` of the layer before (or of the input) at the
kernel's top-left tap, ``act(a * v + b)``, with ``(a, b)`` chosen from the range of ``v`` so the
map is strictly increasing and well away from saturation. Average pooling keeps it monotone.
The other channels may read the carried values.

A second unit at threshold ``n + rho * m`` and one unit of the second dense layer turn the
half-space into a bump that is also off beyond the corner (where other boxes and the training
data may lie); one unit per later hidden layer carries it forward and the last one adds to the
target logit. Training (:mod:`verifier.soundness.training`) fits the rest of the network around
it while every weight of the carry channels and the detectors stays fixed (gradient hooks,
returned so the caller removes them after training), and the strong check decides what was
hidden. Nothing here is trusted: every planted point
is re-checked on the exported ONNX model (:mod:`verifier.soundness.validate`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from verifier.soundness.training import Boxes

_STEEP = {"relu": 2.0, "sigmoid": 20.0, "tanh": 10.0}
"""Slope ``k`` of the detector unit: for ReLU its value at the corner is ``k * rho``; for the
S-shaped activations ``k * rho = 10`` or 5 keeps the unit saturated on and off."""
_RHO = 0.5
_OFF = {"relu": 0.0, "sigmoid": 0.0, "tanh": -1.0}
_PASS = {"relu": (1.0, 0.0), "sigmoid": (20.0, -10.0), "tanh": (10.0, 0.0)}
"""``(a, b)`` of a unit carrying the detector, ``act(a h + b)``: identity for ReLU; for Sigmoid
(values in [0, 1]) and Tanh (values in [-1, 1]) a steep step at the middle of the range."""
_ACT = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@dataclass
class Planting:
    """What :func:`plant_detectors` did.

    Attributes:
        boxes: the boxes, with ``seen`` set to the input values the detectors read.
        frozen: gradient hooks that keep the carry channels and the detectors fixed during
            training; remove them afterwards.
    """

    boxes: Boxes
    frozen: list[RemovableHandle]

    def release(self) -> None:
        """Removes the gradient hooks."""
        for handle in self.frozen:
            handle.remove()


def plant_detectors(network: nn.Sequential, boxes: Boxes, activation: str, gain: float = 10.0) -> Planting:
    """Writes one detector per planted box into ``network`` (built by
    :func:`verifier.soundness.architectures.build_network`, with at least two dense hidden
    layers), in place; see the module docstring.

    Planted box ``i`` uses units ``2i`` and ``2i + 1`` of the first dense layer, unit ``i`` of
    every later hidden dense layer and adds ``gain`` times its value above its off level to the
    target logit. Weights between reserved and other dense units are zeroed. The boxes' planted
    corners must have one side per feature (:func:`verifier.soundness.training.make_boxes`
    with ``block`` the architecture's pooling factor).

    Returns:
        the boxes with the values the detectors read, and the gradient hooks to remove after
        training.

    Raises:
        ValueError: fewer than two dense hidden layers, too few channels or units for the
            reserved ones, or a planted corner whose carried features do not separate it.
    """
    linears = [m for m in network if isinstance(m, nn.Linear)]
    if len(linears) < 3:
        raise ValueError("detectors need at least two dense hidden layers")
    planted = torch.nonzero(boxes.planted).flatten().tolist()
    if 2 * len(planted) > min(m.out_features for m in linears[:-1]):
        raise ValueError(f"{len(planted)} planted boxes do not fit the narrowest hidden layer")
    if not planted:
        return Planting(boxes, [])
    handles = _carry_channels(network, boxes, activation)
    modules = list(network)
    prefix = nn.Sequential(*modules[: modules.index(linears[0])])
    with torch.no_grad():
        seen = _write_detectors(linears, prefix, boxes, planted, activation, gain)
    return Planting(dataclasses.replace(boxes, seen=seen), handles + _freeze_detectors(linears, len(planted)))


def _freeze_detectors(linears: list[nn.Linear], count: int) -> list[RemovableHandle]:
    """Keeps the ``count`` detectors' weights fixed during training: their own rows, the zero
    weights between them and the other units, and their columns of the output layer."""
    handles = []
    for depth, layer in enumerate(linears):
        trainable = torch.ones_like(layer.weight)
        bias = torch.ones_like(layer.bias)
        own = 2 * count if depth == 0 else count
        readers = 2 * count if depth == 1 else count
        if depth < len(linears) - 1:
            trainable[:own] = 0.0
            bias[:own] = 0.0
        if depth > 0:
            trainable[:, :readers] = 0.0
        handles += [_freeze(layer.weight, trainable), _freeze(layer.bias, bias)]
    return handles


def _carry_channels(network: nn.Sequential, boxes: Boxes, activation: str) -> list[RemovableHandle]:
    """Reserves and freezes the carry channels of every convolution (see the module docstring)."""
    convs = [m for m in network if isinstance(m, nn.Conv2d)]
    if not convs:
        return []
    carried = boxes.lower.shape[1]
    low, high = min(0.0, float(boxes.lower.min())), max(1.0, float(boxes.upper.max()))
    handles = []
    for conv in convs:
        if conv.out_channels < carried or conv.bias is None:
            raise ValueError(f"a convolution with {conv.out_channels} channels cannot carry {carried} input channels")
        if activation == "relu":
            a, b = 1.0, 1.0 - low
        else:
            a = (4.0 if activation == "sigmoid" else 2.0) / (high - low)
            b = -a * (low + high) / 2
        with torch.no_grad():
            conv.weight[:carried] = 0.0
            for channel in range(carried):
                conv.weight[channel, channel, 0, 0] = a
            conv.bias[:carried] = b
        low, high = (float(_ACT[activation](torch.tensor(a * v + b, dtype=torch.float64))) for v in (low, high))
        trainable = torch.ones_like(conv.weight)
        trainable[:carried] = 0.0
        handles.append(_freeze(conv.weight, trainable))
        handles.append(_freeze(conv.bias, trainable[:, 0, 0, 0]))
    return handles


def _freeze(parameter: Tensor, trainable: Tensor) -> RemovableHandle:
    """Zeroes the gradient of ``parameter`` wherever ``trainable`` is 0 (Adam then leaves those
    entries exactly as they are)."""
    return parameter.register_hook(lambda grad: grad * trainable)


def _carried_count(prefix: nn.Sequential, boxes: Boxes) -> int:
    """How many leading values of the flattened features are carried (all of them for an MLP)."""
    if not any(isinstance(m, nn.Conv2d) for m in prefix):
        return boxes.lower[0].numel()
    maps = prefix[:-1](boxes.lower[:1]) if isinstance(prefix[-1], nn.Flatten) else prefix(boxes.lower[:1])
    return boxes.lower.shape[1] * math.prod(maps.shape[2:])


def _write_detectors(linears: list[nn.Linear], prefix: nn.Sequential, boxes: Boxes, planted: list[int],
                     activation: str, gain: float) -> Tensor:
    """Writes the dense part of the detectors; returns the input values they read."""
    carried = _carried_count(prefix, boxes)
    seen_any = torch.zeros(boxes.lower[0].numel(), dtype=torch.bool)

    def features(x: Tensor) -> Tensor:
        return prefix(x).flatten(1)[:, :carried].double()

    steep, (a, b), off = _STEEP[activation], _PASS[activation], _OFF[activation]
    first = linears[0]
    for i, box in enumerate(planted):
        corner = boxes.corners[box]
        far = boxes.lower[box] + boxes.upper[box] - corner
        at_corner, at_far = features(corner[None])[0], features(far[None])[0]
        span = at_corner - at_far
        if bool((span.abs() <= 1e-6 * at_corner.abs().clamp_min(1.0)).any()):
            raise ValueError(f"box {box}: a carried feature does not separate the planted corner from the far one")
        size = corner.numel()
        flipped = corner.flatten().repeat(size, 1)
        flipped[torch.arange(size), torch.arange(size)] = far.flatten()
        drops = ((at_corner - features(flipped.reshape(size, *corner.shape))) / span).sum(dim=1)
        seen = drops > 1e-3 * drops.max()  # pixels no carried feature reads drop by rounding noise only
        least = float(drops[seen].min())
        seen_any |= seen
        scale = steep / least
        base = float((at_far / span).sum()) + carried
        for unit, shift in ((2 * i, -_RHO * least), (2 * i + 1, _RHO * least)):
            first.weight[unit] = 0.0
            first.weight[unit, :carried] = (scale / span).float()
            first.bias[unit] = float(-scale * (base + shift))
    second = linears[1]
    second.weight[:, : 2 * len(planted)] = 0.0
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
    return seen_any.reshape(boxes.lower.shape[1:])
