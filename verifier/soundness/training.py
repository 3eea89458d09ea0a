"""Training a network with counterexamples planted on box corners and hidden from attacks.

The boxes are ℓ∞ balls ``[x0 - eps, x0 + eps]`` around anchor points with true label ``y``. For
a *planted* box one corner ``c = x0 + eps * s`` (random signs ``s``) gets a wrong target label
``t`` through a hinge loss ``relu(kappa - (f_t(c) - max_{j != t} f_j(c)))``; every box (planted
or not) is adversarially trained: each epoch PGD runs from random points and random corners of
each box, its end points join a sliding window of the last ``window`` epochs' perturbations, and
cross-entropy towards ``y`` on the whole window (all but the planted corner itself) teaches the
network to be robust everywhere an attack goes. The planted corner thus becomes a narrow spike
that gradients do not lead to. Every ``check_every`` epochs a strong attack
(:func:`verifier.soundness.attacks.strong_attack`) decides which planted counterexamples are
still violations (margin at least ``min_violation``) and still hidden; the weights of the
check with the most such boxes (then the most robust unplanted boxes, then the latest) are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional

from verifier.soundness.attacks import (
    StrongAttack,
    box_starts,
    pgd,
    robustness_margin,
    strong_attack,
)


@dataclass(frozen=True)
class TrainConfig:
    """Budgets and weights of one network's training.

    Attributes:
        epochs: full-batch Adam steps.
        learning_rate: Adam's step size.
        clean_points: synthetic training points (in clusters, one per class).
        cluster_spread: standard deviation of the points around their class centre.
        pgd_restarts, pgd_steps, pgd_step_fraction: the training attack, per box and epoch.
        window: epochs of past PGD end points kept per box (the sliding window).
        hinge_margin: the logit lead the target label should have at a planted corner.
        hinge_weight: weight of the hinge term against the cross-entropy terms.
        check_every: epochs between strong checks (the last epoch is always checked).
        check: the strong attack's budget.
        min_violation: the smallest margin at a planted corner that still counts as a
            counterexample (kept well above float32 rounding of the exported model).
    """

    epochs: int = 400
    learning_rate: float = 3e-3
    clean_points: int = 300
    cluster_spread: float = 0.12
    pgd_restarts: int = 32
    pgd_steps: int = 10
    pgd_step_fraction: float = 0.3
    window: int = 8
    hinge_margin: float = 0.3
    hinge_weight: float = 20.0
    clean_margin: float = 1.0
    robust_margin: float = 0.05
    spike_radius: float = 0.05
    ramp_fraction: float = 0.5
    contrast_weight: float = 1.0
    robust_weight: float = 1.0
    check_every: int = 25
    check: StrongAttack = field(default_factory=StrongAttack)
    min_violation: float = 1e-2


@dataclass(frozen=True)
class Boxes:
    """The ℓ∞ boxes of one network, ``A`` of them.

    Attributes:
        lower, upper: float32 box ends ``(A, *input_shape)``.
        labels: the true label of each box ``(A,)``.
        planted: which boxes get a planted counterexample ``(A,)``.
        corners: the planted corner of each box (meaningful where ``planted``).
        targets: the wrong label planted at the corner (meaningful where ``planted``).
        seen: the input values a planted detector reads ``input_shape`` (bool), or ``None`` for
            all of them: moving any other value leaves the planted point a counterexample.
    """

    lower: Tensor
    upper: Tensor
    labels: Tensor
    planted: Tensor
    corners: Tensor
    targets: Tensor
    seen: Tensor | None = None


def make_boxes(centres: Tensor, labels: Tensor, eps: Tensor, planted: Tensor, classes: int,
               generator: torch.Generator, block: int = 1) -> Boxes:
    """Boxes ``[centre - eps, centre + eps]`` (one radius per box) rounded to float32, each
    planted box with a random corner and a random wrong target label.

    For images ``(A, C, H, W)`` and ``block > 1`` the corner's side is the same on every pixel
    of each aligned ``block x block`` square of a channel (what a detector behind average
    pooling needs, :mod:`verifier.soundness.planting`)."""
    radius = eps.double().reshape(-1, *([1] * (centres.dim() - 1)))
    lower = (centres.double() - radius).float()
    upper = (centres.double() + radius).float()
    if block > 1 and centres.dim() == 4:
        count, channels, height, width = centres.shape
        coarse = (count, channels, -(-height // block), -(-width // block))
        signs = (torch.rand(coarse, generator=generator) < 0.5).repeat_interleave(block, 2).repeat_interleave(block, 3)
        signs = signs[:, :, :height, :width]
    else:
        signs = torch.rand(centres.shape, generator=generator) < 0.5
    corners = torch.where(signs, upper, lower)
    shift = torch.randint(1, classes, labels.shape, generator=generator)
    targets = (labels + shift) % classes
    return Boxes(lower, upper, labels, planted, corners, targets)


def synthetic_data(input_shape: tuple[int, ...], classes: int, count: int, spread: float,
                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` points in ``[0, 1]^input_shape`` around one random centre per class, and their
    labels (balanced, in random order)."""
    centres = 0.2 + 0.6 * torch.rand((classes, *input_shape), generator=generator)
    labels = torch.arange(count) % classes
    labels = labels[torch.randperm(count, generator=generator)]
    noise = spread * torch.randn((count, *input_shape), generator=generator)
    return (centres[labels] + noise).clamp(0.0, 1.0), labels


@dataclass
class Checked:
    """The state of the network at one strong check.

    Attributes:
        epoch: the epoch after which it was taken.
        corner_margin: the robustness margin at each box's planted corner ``(A,)``.
        attack_margin: the best margin the strong attack reached in each box ``(A,)``.
        hidden: planted boxes whose corner is a counterexample the attack missed ``(A,)``.
        robust: unplanted boxes where the attack found nothing ``(A,)``.
    """

    epoch: int
    corner_margin: Tensor
    attack_margin: Tensor
    hidden: Tensor
    robust: Tensor

    def rank(self) -> tuple[int, int, int]:
        return int(self.hidden.sum()), int(self.robust.sum()), self.epoch


def check_network(network: nn.Module, boxes: Boxes, config: TrainConfig, epoch: int,
                  generator: torch.Generator) -> Checked:
    """Runs the strong check on every box (see the module docstring)."""
    with torch.no_grad():
        corner = robustness_margin(network(boxes.corners), boxes.labels)
    attacked = strong_attack(network, boxes.lower, boxes.upper, boxes.labels, config.check, generator)
    hidden = boxes.planted & (corner >= config.min_violation) & (attacked < 0)
    robust = ~boxes.planted & (attacked < 0)
    return Checked(epoch, corner, attacked, hidden, robust)


def contrast_points(boxes: Boxes) -> tuple[Tensor, Tensor]:
    """Points right next to each planted corner that must stay robust: for every input
    coordinate in ``boxes.seen``, the corner with that coordinate moved to the far side of the
    box and moved half-way across. Returns the points ``(P, *shape)`` and their true labels
    ``(P,)``."""
    corners = boxes.corners[boxes.planted]
    far = (boxes.lower + boxes.upper - boxes.corners)[boxes.planted]
    labels = boxes.labels[boxes.planted]
    count, size = corners.shape[0], corners[0].numel()
    flat_c, flat_f = corners.reshape(count, size), far.reshape(count, size)
    eye = torch.eye(size, dtype=torch.bool)
    if boxes.seen is not None:
        eye = eye[boxes.seen.flatten()]
        size = eye.shape[0]
    points = []
    for fraction in (1.0, 0.5):
        moved = flat_c[:, None] + fraction * (flat_f - flat_c)[:, None] * eye
        points.append(moved.reshape(count * size, *corners.shape[1:]))
    rows = labels[:, None].expand(count, size).reshape(-1)
    return torch.cat(points), torch.cat([rows, rows])


def _losses(network: nn.Module, data: tuple[Tensor, Tensor], boxes: Boxes, window: Tensor,
            config: TrainConfig, ramp: float) -> Tensor:
    x, y = data
    loss = functional.relu(robustness_margin(network(x), y) + config.clean_margin).mean()
    count = window.shape[1]
    span = (boxes.upper - boxes.lower).flatten(1).amax(dim=1)
    gap = (window - boxes.corners[:, None]).flatten(2).abs().amax(dim=2)
    keep = ~(boxes.planted[:, None] & (gap <= config.spike_radius * span[:, None]))
    rows = boxes.labels[:, None].expand(-1, count)
    if bool(keep.any()):
        logits = network(window[keep])
        violation = functional.relu(robustness_margin(logits, rows[keep]) + config.robust_margin)
        loss = loss + ramp * config.robust_weight * violation.sum() / boxes.labels.shape[0]
    if bool(boxes.planted.any()):
        near, near_labels = contrast_points(boxes)
        violation = functional.relu(robustness_margin(network(near), near_labels) + config.robust_margin)
        loss = loss + config.contrast_weight * violation.sum() / boxes.labels.shape[0]
        logits = network(boxes.corners[boxes.planted])
        lead = -robustness_margin(logits, boxes.targets[boxes.planted])
        loss = loss + config.hinge_weight * functional.relu(config.hinge_margin - lead).mean()
    return loss


def train_network(network: nn.Module, data: tuple[Tensor, Tensor], boxes: Boxes, config: TrainConfig,
                  generator: torch.Generator, on_check: Callable[[Checked], None] | None = None) -> Checked:
    """Trains ``network`` in place (see the module docstring) and leaves it holding the weights
    of the best check, which is returned."""
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    window = boxes.lower[:, None][:, :0]
    best: tuple[Checked, dict[str, Tensor]] | None = None
    for epoch in range(1, config.epochs + 1):
        starts = box_starts(boxes.lower, boxes.upper, config.pgd_restarts, generator)
        attacked = pgd(network, boxes.lower, boxes.upper, boxes.labels, starts, config.pgd_steps,
                       config.pgd_step_fraction, generator)
        window = torch.cat([window, attacked.final, attacked.path], dim=1)[:, -2 * config.window * config.pgd_restarts:]
        optimiser.zero_grad()
        ramp = min(1.0, epoch / max(1.0, config.ramp_fraction * config.epochs))
        _losses(network, data, boxes, window, config, ramp).backward()
        optimiser.step()
        if epoch % config.check_every == 0 or epoch == config.epochs:
            checked = check_network(network, boxes, config, epoch, generator)
            if on_check is not None:
                on_check(checked)
            if best is None or checked.rank() >= best[0].rank():
                best = (checked, copy.deepcopy(network.state_dict()))
    assert best is not None
    network.load_state_dict(best[1])
    return best[0]
