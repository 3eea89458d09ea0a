"""alpha-CROWN: CROWN with the lower slopes of unstable ReLU-like neurons optimised, and
both slopes of the neurons of ops with free slopes (Sigmoid, Tanh, ...).

For an unstable ReLU (``l < 0 < u``) every line ``a·x`` with ``0 <= a <= 1`` is a lower bound
of ``relu(x)`` on ``[l, u]`` (and for LeakyRelu with ``alpha <= 1`` every ``alpha <= a <= 1``),
so any slope in that range, chosen separately for every objective row and neuron, yields a
certified bound. The slopes are chosen separately for the final objective rows and, jointly,
for the rows that bound each intermediate value (the inputs of relaxed nodes): tighter
intermediate bounds tighten the relaxations of every later node. Projected Adam ascent on the
sum of the final row bounds, differentiated through the intermediate bounds, searches all of
them. For an op with free slopes (:attr:`verifier.ops.relax.Relaxation.free_slopes`) both
lines of every neuron with a finite box are chosen, each with the bias its op certifies for
that slope (:mod:`verifier.bounds.free_lines`), searched within the op's span. For a multi-input
rule with plane weights (:class:`~verifier.ops.multi_relax.PlaneWeights`: Mul's McCormick
weights, a plane's bias taken over the box's corners whatever its slopes) both weights of every
element are searched in ``[0, 1]``. Every iterate
is a valid bound: the best value per row is kept (never worse than
CROWN's), and each intermediate bound is intersected with the best one found before.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from verifier.bounds.ascent import Adam
from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import FINAL, Crown
from verifier.config import AlphaConfig
from verifier.deadline import Deadline
from verifier.ir import Node
from verifier.ops.base import Op
from verifier.ops.relax import free_boxes

Bound = float | Tensor
"""A slope range end: one number for a ReLU-like op, a tensor per entry for free slopes."""


def _spread(base: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``base`` ``(N, *rest)`` broadcast to ``shape`` ``(N, ..., *rest)`` (a copy)."""
    return base.reshape(base.shape[0], *([1] * (len(shape) - base.dim())), *base.shape[1:]).expand(shape).clone()


def _seed(crown: Crown, node: Node, op: Op) -> tuple[Tensor, Bound, Bound] | None:
    """The starting slopes of ``node`` ``(N, *node shape)`` and their search range: CROWN's
    lower slope clamped to the op's range for ReLU-like ops; both of CROWN's slopes (a last
    dimension of 2: lower, upper) and the op's span per neuron ``(N, *node shape, 2)`` for ops
    with free slopes; a multi-input rule's plane weights ``(N, *out, count)`` and the range
    ``[0, 1]`` per weight (None where the rule has nothing to optimise). :func:`_rows_of`
    copies them for each set of rows."""
    if op.multi_relaxation is not None:
        weights = _plane_weights(crown, node, op)
        return None if weights is None else (weights, torch.zeros_like(weights), torch.ones_like(weights))
    relaxation = crown.relaxations[node.name]
    assert relaxation is not None
    span = op.lower_slope_range(node)
    if span is not None:
        return relaxation.lower_slope.detach().clamp(*span), span[0], span[1]
    rule = op.relaxation
    assert rule is not None and rule.span is not None
    _, safe_lo, safe_hi = free_boxes(node, *crown.bounds[node.inputs[0]], rule.domain)
    least, most = rule.span(node, safe_lo, safe_hi)
    both = torch.stack([relaxation.lower_slope.detach(), relaxation.upper_slope.detach()], dim=-1)
    low, high = least.to(both.dtype).unsqueeze(-1).expand_as(both), most.to(both.dtype).unsqueeze(-1).expand_as(both)
    return torch.minimum(torch.maximum(both, low), high), low, high


def _rows_of(seed: tuple[Tensor, Bound, Bound], shape: tuple[int, ...]) -> tuple[Tensor, Bound, Bound]:
    """The seed's slopes, and its per-entry range for free slopes and plane weights, copied for
    rows of ``shape`` ``(N, rows..., *node shape)`` (and the seed's last dimension: 2 for free
    slopes, the rule's count for plane weights)."""
    start, low, high = seed
    if not isinstance(low, Tensor) or not isinstance(high, Tensor):
        return _spread(start, shape), low, high
    full = (*shape, start.shape[-1])
    return _spread(start, full), _spread(low, full), _spread(high, full)


def _plane_weights(crown: Crown, node: Node, op: Op) -> Tensor | None:
    """The starting plane weights ``(N, *out, count)`` of a node whose multi-input rule has
    optimisable weights (:class:`~verifier.ops.multi_relax.PlaneWeights`, each in ``[0, 1]``;
    the rule is sound for all of them), or None."""
    rule = op.multi_relaxation
    if rule is None or rule.weights is None:
        return None
    los, his, batched = crown.table.args(node)
    return rule.weights.seed(node, los, his, batched)


def _optimisable(crown: Crown, node: Node, op: Op) -> bool:
    """Whether ``node`` has slopes to optimise: unstable neurons of a ReLU-like op, finite
    boxes of an op with free slopes, or a multi-input rule's plane weights."""
    if op.multi_relaxation is not None:  # its seed (_seed) is None where nothing is to be optimised
        return op.multi_relaxation.weights is not None
    if crown.relaxations.get(node.name) is None:
        return False
    lo, hi = crown.bounds[node.inputs[0]]
    if op.lower_slope_range(node) is not None:
        return bool(((lo < 0) & (hi > 0)).any())
    rule = op.relaxation
    return rule is not None and rule.free_slopes and bool(free_boxes(node, lo, hi, rule.domain)[0].any())


def _ancestors(crown: Crown, value: str) -> set[str]:
    """Names of the nodes that ``value`` depends on."""
    producers = crown.graph.producers()
    seen: set[str] = set()
    todo = [value]
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(n for n in node.inputs if n)
    return seen


def _init(crown: Crown, slopes: dict[tuple[str, str], Tensor], rows: int,
          config: AlphaConfig) -> list[tuple[tuple[str, str], Bound, Bound]]:
    """Creates the slope tensors in ``slopes`` (final rows, and intermediate rows within the
    cap) of every node with slopes to optimise; returns their keys and ranges."""
    ranges: list[tuple[tuple[str, str], Bound, Bound]] = []
    order = {node.name: i for i, node in enumerate(crown.graph.nodes)}
    budget = config.max_intermediate
    ancestors = {value: _ancestors(crown, value) for value in crown.refined} if config.intermediate else {}
    for node, op in zip(crown.graph.nodes, crown.tgraph.ops, strict=True):
        if not _optimisable(crown, node, op) or (op.multi_relaxation is not None and not config.plane_weights):
            continue
        seed = _seed(crown, node, op)  # the span of free slopes is computed once per node
        if seed is None:  # plane weights with nothing to optimise (every window decided...)
            continue
        n = seed[0].shape[0]  # the node's shape: without the last dimension of both-line slopes
        shape = tuple(seed[0].shape[1:-1] if isinstance(seed[1], Tensor) else seed[0].shape[1:])
        start, low, high = _rows_of(seed, (n, rows, *shape))
        slopes[(node.name, FINAL)] = start.requires_grad_(True)
        ranges.append(((node.name, FINAL), low, high))
        per_row = start[0, 0].numel()  # slopes per row: the node's size (twice that for free slopes)
        if not config.intermediate:
            continue
        for value, (stop, wanted) in crown.refined.items():
            size = per_row * n * 2 * wanted.numel()
            if stop <= order[node.name] or size > budget or node.name not in ancestors[value]:
                continue
            budget -= size
            inner, low, high = _rows_of(seed, (n, 2, wanted.numel(), *shape))
            slopes[(node.name, value)] = inner.requires_grad_(True)
            ranges.append(((node.name, value), low, high))
    return ranges


def _scale(low: Bound, high: Bound) -> float:
    """The step size factor of a slope tensor: 1 for a ReLU-like op's fixed range (width 1 or
    less), the mean width of the per-entry ranges of free slopes (a Sigmoid's slopes lie in
    ``[0, 1/4]``: a step of the ReLU size would jump across the range)."""
    if not isinstance(low, Tensor) or not isinstance(high, Tensor):
        return 1.0
    width = float((high - low).mean())
    return width if width > 0 else 1.0


FIRST_STEP_FACTOR = 4.0
"""An ascent step's seconds before one has been timed, as a multiple of the plain CROWN pass's
(the final rows' bound, and with intermediate slopes the whole pass: the slopes' autograd graph
and the backward pass come on top)."""


def _time_for_another(deadline: Deadline | None, step: float) -> bool:
    """Whether an ascent step of ``step`` seconds, and the closing passes after it (which cost
    less than a step with gradients), end before ``deadline``: a step begun with less time
    left would overrun it (one step on a wide CNN takes over a second)."""
    return deadline is None or deadline.remaining() > 2 * step


def open_rows(best: Tensor, offset: Tensor | float, stop_above: float | None, groups: Tensor | None) -> Tensor:
    """``(N, R)`` mask of the rows still worth raising: all without ``stop_above``; else the
    rows of the groups (one group per batch element without ``groups``) none of whose rows
    exceeds ``stop_above`` yet."""
    if stop_above is None:
        return torch.ones_like(best, dtype=torch.bool)
    above = ((best + offset) > stop_above).to(torch.int64)
    if groups is None:
        return ~above.amax(dim=1, keepdim=True).bool().expand_as(above)
    ids = groups.to(best.device).expand_as(above)
    refuted = torch.zeros(above.shape[0], int(groups.max()) + 1, dtype=torch.int64, device=best.device)
    refuted = refuted.scatter_reduce(1, ids, above, reduce="amax")
    return ~refuted.gather(1, ids).bool()


def _ascent_step(crown: Crown, mult: Multipliers, coefficients: Tensor, wanted: Tensor, joint: bool,
                 optimiser: Adam, ranges: list[tuple[tuple[str, str], Bound, Bound]]) -> Tensor:
    """One projected Adam step on the slopes in ``mult`` towards higher ``wanted`` rows; returns
    the (certified) bound of the slopes before the step, still attached to their gradients."""
    if joint:
        crown.compute(mult)
    bound = crown.lower_bound(coefficients, mult)
    if not bound.requires_grad:  # the rows do not reach any optimisable slope
        return bound
    optimiser.zero_grad()
    (-(bound * wanted).sum()).backward()
    optimiser.step()
    with torch.no_grad():
        for key, low, high in ranges:
            mult.slopes[key].clamp_(low, high)  # type: ignore[arg-type]  # a number or a tensor
    return bound


def _start_record(record: dict[str, Tensor] | None, mult: Multipliers, joint: bool) -> None:
    """Puts the starting slopes (CROWN's) into ``record`` (final rows only)."""
    if record is None:
        return
    if joint:
        raise ValueError("slopes are recorded for final rows only (AlphaConfig.intermediate off)")
    record.update(_snapshot(mult, record) or {})


def _snapshot(mult: Multipliers, record: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    """Copies of the final-row slopes (None when nothing is recorded)."""
    if record is None:
        return None
    return {key[0]: value.detach().clone() for key, value in mult.slopes.items() if key[1] == FINAL}


def _keep_better(record: dict[str, Tensor] | None, slopes: dict[str, Tensor] | None, better: Tensor) -> None:
    """Puts ``slopes`` into ``record`` for the rows ``(N, R)`` where ``better``."""
    if record is None or slopes is None:
        return
    for name, value in slopes.items():
        mask = better.reshape(*better.shape, *([1] * (value.dim() - 2)))
        record[name] = torch.where(mask, value, record[name])


def alpha_lower_bound(crown: Crown, coefficients: Tensor, config: AlphaConfig | None = None,
                      deadline: Deadline | None = None, offset: Tensor | float = 0.0,
                      groups: Tensor | None = None, record: dict[str, Tensor] | None = None) -> Tensor:
    """Certified lower bounds ``(N, R)`` of ``coefficients @ y + offset`` with optimised slopes.

    ``offset`` (e.g. ``-d`` of spec rows, broadcastable to ``(N, R)``) only shifts the rows for
    the early-stop test. ``groups`` ``(R,)`` (e.g. the spec clause of each row, numbered from
    0): with ``config.stop_above``, a group stops pulling on the slopes once one of its rows is
    above it, and the call stops when every group has such a row (default: all rows one
    group). Returns the elementwise best over CROWN's bound and every iterate (each one
    certified). No step is begun that would end, with the closing passes, past ``deadline``.

    ``record`` (final-row slopes only, ``config.intermediate`` off): filled with, per node
    name, the lower slopes ``(N, R, *shape)`` that gave each row its returned bound (CROWN's
    where no iterate beat it), for proof certificates (:mod:`verifier.certificate`).
    """
    config = config or AlphaConfig()
    began = time.monotonic()
    best = crown.lower_bound(coefficients).detach()
    plain = time.monotonic() - began
    mult = Multipliers()  # the slopes live here, for this call only
    ranges = _init(crown, mult.slopes, best.shape[1], config)
    if not ranges:
        return best
    joint = any(key[1] != FINAL for key, _, _ in ranges)
    _start_record(record, mult, joint)
    step = FIRST_STEP_FACTOR * (plain + (crown.compute_seconds if joint else 0.0))
    patience = config.free_patience if any(isinstance(low, Tensor) for _, low, _ in ranges) else config.patience
    optimiser = Adam([([mult.slopes[key]], config.learning_rate * _scale(low, high)) for key, low, high in ranges])
    stale, last, steps = 0, float(best.sum()), 0
    try:
        with torch.enable_grad():
            while steps < config.iterations and stale < patience:
                wanted = open_rows(best, offset, config.stop_above, groups)
                if not bool(wanted.any()) or not _time_for_another(deadline, step):
                    break
                began, steps = time.monotonic(), steps + 1
                before = _snapshot(mult, record)
                bound = _ascent_step(crown, mult, coefficients, wanted, joint, optimiser, ranges)
                _keep_better(record, before, bound.detach() > best)
                best = torch.maximum(best, bound.detach())
                if not bound.requires_grad:
                    break
                optimiser.decay(config.lr_decay)
                total = float(best.sum())
                stale = 0 if total > last + 1e-6 * (1 + abs(last)) else stale + 1
                last, step = max(last, total), time.monotonic() - began
            if steps:  # the slopes after the last step
                with torch.no_grad():
                    if joint:
                        crown.compute(mult)
                    last_bound = crown.lower_bound(coefficients, mult)
                    _keep_better(record, _snapshot(mult, record), last_bound > best)
                    best = torch.maximum(best, last_bound)
    finally:
        if joint and steps:  # CROWN slopes again, on the best intermediate bounds found
            with torch.no_grad():
                crown.compute()
    return best
