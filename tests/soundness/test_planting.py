"""Planted detectors, checked by sampling: on at the planted corner, off at the other corners and
inside the box, blind to the input values it does not read, and left unchanged by training."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from verifier.soundness.architectures import PRESETS, build_network
from verifier.soundness.planting import plant_detectors
from verifier.soundness.training import (
    Boxes,
    TrainConfig,
    make_boxes,
    synthetic_data,
    train_network,
)

ON = 1.0
OFF = {"relu": 0.0, "sigmoid": 0.0, "tanh": -1.0}


def _planted(arch_name: str, activation: str, seed: int = 11) -> tuple[nn.Sequential, Boxes]:
    arch = PRESETS[arch_name]
    generator = torch.Generator().manual_seed(seed)
    network = build_network(arch, activation, generator)
    points, labels = synthetic_data(arch.input_shape, arch.classes, 8, 0.1, generator)
    planted = torch.tensor([True, True, False])
    boxes = make_boxes(points[:3], labels[:3], torch.full((3,), 0.05, dtype=torch.float64), planted, arch.classes,
                       generator, block=arch.pooling_factor)
    planting = plant_detectors(network, boxes, activation)
    planting.release()
    return network, planting.boxes


def _bumps(network: nn.Sequential, x: Tensor) -> Tensor:
    """The values of the second dense layer's units after its activation."""
    second = [m for m in network if isinstance(m, nn.Linear)][1]
    seen: dict[str, Tensor] = {}
    handle = network[list(network).index(second) + 1].register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    with torch.no_grad():
        network(x)
    handle.remove()
    return seen["o"]


def _other_corners(boxes: Boxes, box: int, count: int, generator: torch.Generator) -> Tensor:
    """Random corners of ``box`` that differ from the planted one on at least one value the
    detector reads."""
    assert boxes.seen is not None
    corner, far = boxes.corners[box], boxes.lower[box] + boxes.upper[box] - boxes.corners[box]
    flip = torch.rand((count, *corner.shape), generator=generator) < 0.5
    forced = torch.nonzero(boxes.seen.flatten()).flatten()
    pick = forced[torch.randint(len(forced), (count,), generator=generator)]
    flip.view(count, -1)[torch.arange(count), pick] = True
    return torch.where(flip, far, corner)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("arch_name", ["mlp-3x48", "cnn-1c", "cnn-2c-pool", "cnn-3c-pool"])
def test_detector_fires_at_the_planted_corner_only(arch_name: str, activation: str) -> None:
    network, boxes = _planted(arch_name, activation)
    generator = torch.Generator().manual_seed(5)
    assert boxes.seen is not None and int(boxes.seen.sum()) >= 16
    for unit, box in enumerate((0, 1)):
        at_corner = _bumps(network, boxes.corners[box][None])[0, unit]
        assert float(at_corner) == pytest.approx(ON, abs=1e-3)
        others = _bumps(network, _other_corners(boxes, box, 512, generator))[:, unit]
        inside = boxes.lower[box] + torch.rand((512, *boxes.lower.shape[1:]), generator=generator) * (
            boxes.upper[box] - boxes.lower[box])
        for values in (others, _bumps(network, inside)[:, unit]):
            assert torch.allclose(values, torch.full_like(values, OFF[activation]), atol=1e-3)
        # values the detector does not read may take any value: the corner stays detected
        unread = torch.where(boxes.seen, boxes.corners[box], inside[:16])
        assert torch.allclose(_bumps(network, unread)[:, unit], torch.full((16,), ON), atol=1e-3)


def test_an_mlp_detector_reads_every_input() -> None:
    _, boxes = _planted("mlp-2x32", "relu")
    assert boxes.seen is not None and bool(boxes.seen.all())


def test_training_leaves_carry_channels_and_detectors_unchanged() -> None:
    arch = PRESETS["cnn-2c-pool"]
    generator = torch.Generator().manual_seed(3)
    network = build_network(arch, "relu", generator)
    data = synthetic_data(arch.input_shape, arch.classes, 30, 0.1, generator)
    boxes = make_boxes(data[0][:3], data[1][:3], torch.full((3,), 0.05, dtype=torch.float64),
                       torch.tensor([True, True, False]), arch.classes, generator, block=arch.pooling_factor)
    planting = plant_detectors(network, boxes, "relu")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    config = TrainConfig(epochs=3, pgd_restarts=2, pgd_steps=2, check_every=3, clean_points=30)
    train_network(network, data, planting.boxes, config, generator)
    planting.release()
    after = network.state_dict()
    convs = [k for k in before if k.endswith("weight") and before[k].dim() == 4]
    for key in convs:  # one carried input channel: channel 0 of every convolution
        assert torch.equal(after[key][0], before[key][0])
        assert not torch.equal(after[key][1:], before[key][1:])
    dense = [k for k in before if k.endswith("weight") and before[k].dim() == 2]
    assert torch.equal(after[dense[0]][:4], before[dense[0]][:4])  # two boxes, two units each
    assert torch.equal(after[dense[1]][:2], before[dense[1]][:2])
    assert torch.equal(after[dense[1]][:, :4], before[dense[1]][:, :4])
    assert torch.equal(after[dense[2]][:, :2], before[dense[2]][:, :2])
    assert not torch.equal(after[dense[0]][4:], before[dense[0]][4:])


def test_shapes_it_cannot_plant_into_are_refused() -> None:
    arch = PRESETS["mlp-2x32"]
    generator = torch.Generator().manual_seed(0)
    points, labels = synthetic_data(arch.input_shape, arch.classes, 4, 0.1, generator)
    boxes = make_boxes(points, labels, torch.full((4,), 0.05, dtype=torch.float64), torch.ones(4, dtype=torch.bool),
                       arch.classes, generator)
    shallow = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="two dense hidden layers"):
        plant_detectors(shallow, boxes, "relu")
    narrow = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="do not fit"):
        plant_detectors(narrow, boxes, "relu")
    images = torch.rand((2, 3, 6, 6), generator=generator)
    boxes = make_boxes(images, torch.tensor([0, 1]), torch.full((2,), 0.05, dtype=torch.float64),
                       torch.tensor([True, False]), 3, generator)
    thin = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 8), nn.ReLU(),
                         nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="cannot carry 3 input channels"):
        plant_detectors(thin, boxes, "relu")
