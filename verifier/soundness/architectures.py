"""The network shapes the soundness generator trains: small MLPs and CNNs, as data.

An :class:`Architecture` is a name, an input shape and a list of layers; :func:`build_network`
turns it into a ``torch.nn.Sequential`` with the chosen activation after every dense and conv
layer except the last one, and :mod:`verifier.soundness.onnx_export` writes that module out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from verifier.errors import InputError

ACTIVATIONS = ("relu", "sigmoid", "tanh")


@dataclass(frozen=True)
class Dense:
    """A fully connected layer with ``width`` outputs (its input is flattened first)."""

    width: int


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution: ``channels`` outputs, a square ``kernel``, ``stride``, no padding."""

    channels: int
    kernel: int = 3
    stride: int = 1


@dataclass(frozen=True)
class AvgPool:
    """2-D average pooling with a square window ``size`` and the same stride."""

    size: int = 2


Layer = Dense | Conv | AvgPool


@dataclass(frozen=True)
class Architecture:
    """A network shape: hidden layers, then a dense output layer with ``classes`` logits.

    Attributes:
        name: the preset's name (used in file names).
        input_shape: ``(d,)`` for an MLP, ``(channels, height, width)`` for a CNN.
        layers: the hidden layers in order; convolutions and pooling come before any dense layer.
        classes: the number of output logits.
    """

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    classes: int = 3

    @property
    def family(self) -> str:
        """``cnn`` when the network has a convolution, else ``mlp``."""
        return "cnn" if any(isinstance(layer, Conv) for layer in self.layers) else "mlp"

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def pooling_factor(self) -> int:
        """The product of the pooling window sizes (1 without pooling): one value after the
        convolutions averages input pixels from aligned squares of this side."""
        return math.prod(layer.size for layer in self.layers if isinstance(layer, AvgPool))


PRESETS: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("mlp-2x32", (12,), (Dense(32), Dense(32))),
        Architecture("mlp-3x48", (30,), (Dense(48), Dense(48), Dense(48))),
        Architecture("mlp-5x32", (64,), (Dense(32),) * 5),
        Architecture("mlp-4x64", (100,), (Dense(64),) * 4),
        Architecture("mlp-2x96", (256,), (Dense(96), Dense(48))),
        Architecture("cnn-1c", (1, 8, 8), (Conv(4), Dense(32), Dense(16))),
        Architecture("cnn-2c-pool", (1, 12, 12), (Conv(4), AvgPool(2), Conv(8), Dense(32), Dense(16))),
        Architecture("cnn-3c-pool", (3, 10, 10),
                     (Conv(8), Conv(8), AvgPool(2), Conv(8, kernel=2), Dense(24), Dense(16))),
    )
}
"""The named architectures: MLPs with 2 to 5 hidden layers on inputs of 12 to 256 values, and
CNNs with 1, 2 and 3 convolutions (two of them with average pooling) on 64 to 300 values. Every
preset has at least two dense hidden layers: the planted detectors
(:mod:`verifier.soundness.planting`) need them."""

FAMILIES = {"mlp": [n for n, a in PRESETS.items() if a.family == "mlp"],
            "cnn": [n for n, a in PRESETS.items() if a.family == "cnn"]}


def resolve_architectures(names: list[str]) -> list[Architecture]:
    """The presets named by ``names`` (a preset name, or ``mlp``/``cnn`` for every preset of that
    family, or ``all``), without repeats, in the order given.

    Raises:
        InputError: an unknown name (the message lists the known ones).
    """
    chosen: list[str] = []
    for name in names:
        if name == "all":
            chosen.extend(PRESETS)
        elif name in FAMILIES:
            chosen.extend(FAMILIES[name])
        elif name in PRESETS:
            chosen.append(name)
        else:
            known = ", ".join(["all", *FAMILIES, *PRESETS])
            raise InputError(f"--arch {name!r}: unknown architecture; use one of {known}")
    return [PRESETS[n] for n in dict.fromkeys(chosen)]


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InputError(f"--activation {name!r}: use one of {', '.join(ACTIVATIONS)}")
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name]()


def build_network(arch: Architecture, activation: str, generator: torch.Generator) -> nn.Sequential:
    """A freshly initialised float32 network of shape ``arch`` with ``activation`` after every
    hidden dense and conv layer; the weights are drawn from ``generator`` (reproducible).

    The module maps ``(B, *arch.input_shape)`` to ``(B, arch.classes)``.
    """
    modules: list[nn.Module] = []
    shape = arch.input_shape
    flat = len(shape) == 1
    for layer in (*arch.layers, Dense(arch.classes)):
        if isinstance(layer, Conv):
            if flat:
                raise ValueError(f"{arch.name}: a convolution after a dense layer")
            modules.append(nn.Conv2d(shape[0], layer.channels, layer.kernel, layer.stride))
            side_h = (shape[1] - layer.kernel) // layer.stride + 1
            side_w = (shape[2] - layer.kernel) // layer.stride + 1
            shape = (layer.channels, side_h, side_w)
            modules.append(_activation(activation))
        elif isinstance(layer, AvgPool):
            modules.append(nn.AvgPool2d(layer.size))
            shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
        else:
            if not flat:
                modules.append(nn.Flatten())
                flat = True
            modules.append(nn.Linear(math.prod(shape), layer.width))
            shape = (layer.width,)
            modules.append(_activation(activation))
    modules.pop()  # no activation after the output layer
    network = nn.Sequential(*modules)
    with torch.no_grad():
        for module in network:
            if isinstance(module, nn.Linear | nn.Conv2d):
                fan_in = module.weight[0].numel()
                scale = math.sqrt((2.0 if activation == "relu" else 1.0) / fan_in)
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * scale)
                if module.bias is not None:
                    module.bias.zero_()
    return network
