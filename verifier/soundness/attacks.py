"""The attacks the generator trains against and checks with: signed-gradient PGD on the
robustness margin, batched over boxes and restarts.

For a point ``x`` of a box with true label ``y`` the margin is ``max_{j != y} f_j(x) - f_y(x)``:
it is ``>= 0`` exactly where the robustness property is violated. These attacks work on the
torch module the generator trains; the exported ONNX model is checked separately
(:mod:`verifier.soundness.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def robustness_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``max_{j != y} logits_j - logits_y`` per row: ``(N, K), (N,) -> (N,)``."""
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - true


def box_starts(lower: Tensor, upper: Tensor, count: int, generator: torch.Generator,
               corner_fraction: float = 0.5) -> Tensor:
    """``count`` starting points per box: ``(A, *shape) -> (A, count, *shape)``; a
    ``corner_fraction`` of them are random corners of the box, the rest uniform inside it.
    Signed-gradient attacks tend to end on corners, so corners are where a hidden
    counterexample is most exposed."""
    shape = (lower.shape[0], count, *lower.shape[1:])
    uniform = torch.rand(shape, generator=generator, dtype=lower.dtype)
    corners = (torch.rand(shape, generator=generator, dtype=lower.dtype) < 0.5).to(lower.dtype)
    pick_corner = torch.arange(count) < round(count * corner_fraction)
    noise = torch.where(pick_corner.reshape(1, count, *([1] * (lower.dim() - 1))), corners, uniform)
    return lower[:, None] + noise * (upper - lower)[:, None]


@dataclass(frozen=True)
class PgdResult:
    """The points PGD ended at ``(A, R, *shape)``, one iterate drawn at random from each run's
    path ``(A, R, *shape)`` and, per box, the largest margin any of its iterates reached
    ``(A,)`` with the point that reached it ``(A, *shape)``."""

    final: Tensor
    path: Tensor
    best_margin: Tensor
    best_point: Tensor


def pgd(network: nn.Module, lower: Tensor, upper: Tensor, labels: Tensor, starts: Tensor,
        steps: int, step_fraction: float, generator: torch.Generator | None = None) -> PgdResult:
    """Signed-gradient ascent of the margin from ``starts`` ``(A, R, *shape)``, projected on the
    boxes ``lower``/``upper`` ``(A, *shape)`` with true labels ``labels`` ``(A,)``. The step is
    ``step_fraction`` of the box width, decaying geometrically to a hundredth of it."""
    boxes, restarts = starts.shape[:2]
    low = lower[:, None].expand_as(starts).reshape(boxes * restarts, *lower.shape[1:])
    high = upper[:, None].expand_as(starts).reshape(boxes * restarts, *lower.shape[1:])
    rows = labels[:, None].expand(boxes, restarts).reshape(-1)
    x = starts.reshape(boxes * restarts, *lower.shape[1:]).clone()
    step = step_fraction * (high - low)
    decay = 0.01 ** (1.0 / max(1, steps))
    best = torch.full((boxes * restarts,), float("-inf"), dtype=x.dtype)
    best_x = x.clone()
    pick = torch.randint(0, steps + 1, (boxes * restarts,), generator=generator)
    path = x.clone()
    for index in range(steps + 1):
        x.requires_grad_(True)
        margin = robustness_margin(network(x), rows)
        (grad,) = torch.autograd.grad(margin.sum(), x)
        with torch.no_grad():
            better = margin > best
            best = torch.where(better, margin, best)
            best_x[better] = x[better]
            path[pick == index] = x[pick == index]
            x = torch.minimum(torch.maximum(x + step * grad.sign(), low), high)
            step = step * decay
    per_box = best.reshape(boxes, restarts)
    winner = per_box.argmax(dim=1)
    points = best_x.reshape(boxes, restarts, *lower.shape[1:])
    chosen = points[torch.arange(boxes), winner]
    return PgdResult(x.detach().reshape(starts.shape), path.detach().reshape(starts.shape), per_box.amax(dim=1), chosen)


@dataclass(frozen=True)
class StrongAttack:
    """The budget of the check that decides whether a planted counterexample is still hidden:
    ``restarts`` starts per box (half of them random corners), ``steps`` PGD steps each, with
    an initial step of ``step_fraction`` of the box width; plus ``samples`` uniform points."""

    restarts: int = 256
    steps: int = 60
    step_fraction: float = 0.25
    samples: int = 4096


def strong_attack(network: nn.Module, lower: Tensor, upper: Tensor, labels: Tensor, budget: StrongAttack,
                  generator: torch.Generator) -> Tensor:
    """The largest margin that sampling and PGD reach in each box ``(A,)``; a value ``>= 0``
    means the attack found a violation."""
    with torch.no_grad():
        samples = box_starts(lower, upper, budget.samples, generator, corner_fraction=0.0)
        flat = samples.reshape(-1, *lower.shape[1:])
        rows = labels[:, None].expand(samples.shape[:2]).reshape(-1)
        sampled = robustness_margin(network(flat), rows).reshape(samples.shape[:2]).amax(dim=1)
    starts = box_starts(lower, upper, budget.restarts, generator)
    result = pgd(network, lower, upper, labels, starts, budget.steps, budget.step_fraction)
    return torch.maximum(sampled, result.best_margin)
