"""The CROWN backward traversal: a function of the bound table, the seed rows and the
optional alpha slopes and beta multipliers.

For objective rows ``A·v`` on values ``v``, :func:`backward` walks the graph backwards and
keeps a linear lower bound ``sum_i <A_i, x_i> + bias`` of the rows in terms of the values
reached:

- an affine node (:meth:`verifier.ops.base.Op.is_affine`) passes coefficients through the
  vector-Jacobian product of its own forward (or the op's :meth:`~verifier.ops.base.Op.transpose`
  or pass-through fast path), and adds ``A·f(0)`` to the bias;
- a node with a multi-input rule (:attr:`~verifier.ops.base.Op.multi_relaxation`) moves the
  coefficients to its inputs by that rule; given alpha slopes for the node, they are the
  rule's plane weights per row (:class:`~verifier.ops.multi_relax.PlaneWeights`, Mul's
  McCormick weights; the rule is sound for every weight in ``[0, 1]``);
- an elementwise node with a linear relaxation ``l_s x + l_b <= f(x) <= u_s x + u_b`` passes
  ``A+ l_s + A- u_s`` and adds ``A+ l_b + A- u_b``; an alpha slope replaces ``l_s`` at the
  unstable positions (any slope in the op's :meth:`~verifier.ops.base.Op.lower_slope_range` is
  sound); a beta multiplier adds ``-beta * s * x`` on the node's input (``<= 0`` wherever the
  split constraints hold, so the bound stays valid on the split domain); an op with free
  slopes (Sigmoid, Tanh, ...) given alpha slopes takes both lines from them
  (:mod:`verifier.bounds.free_lines`);
- any other node is cut: its output bounds concretise its rows (``A+ lo + A- hi``).

Rows seeded at neurons of a 2-D feature map may travel as windows
(:mod:`verifier.bounds.windows`) through the ops with a local map and through elementwise
relaxations; any other step first turns them into dense coefficients (the same values).

Every node passed subtracts ``|A|·err`` (its float error from the table) and an allowance for
the rounding of the traversal's own sums over its outputs (:mod:`verifier.bounds.traversal_rounding`;
not yet for the multi-input rules of MaxPool, Max/Min, ReduceMax/Min and Mul), as one
``sum |A| * w`` per node with weights built once per table (:mod:`verifier.bounds.step_weights`);
the sum of the steps' biases subtracts its rounding (any order of addition), and the final
concretisation over the input boxes subtracts its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifier.bounds.forward import Form, rows_through_form
from verifier.bounds.free_lines import free_line_step, free_relaxation
from verifier.bounds.rounding import unit_roundoff
from verifier.bounds.step_weights import (
    WeightCache,
    affine_weights,
    cut_weights,
    error_weights,
    relaxed_weights,
    weighted_abs,
)
from verifier.bounds.table import Args, BoundTable
from verifier.bounds.window_tables import WindowTables
from verifier.bounds.windows import Windows, abs_weighted, through_local_map, through_relaxation
from verifier.deadline import Deadline
from verifier.ir import Node
from verifier.ops.base import all_finite, gamma
from verifier.ops.relax import LinearBounds


@dataclass(frozen=True)
class Traversal:
    """What one backward pass is given besides the table and the rows.

    Attributes:
        stop: only nodes before this index are traversed (the seeds' producers come before).
        relu_mode: the relaxation mode of unstable ReLU-family neurons (see
            :func:`verifier.ops.relax.relax`).
        slopes: alpha slopes ``(N, R, *shape)`` per node for these rows (optional).
        betas: ``beta * s`` ``(N, R, *shape)`` per split node (optional; final rows only).
        fast_paths: use the ops' transpose and pass-through rules (same result).
        create_graph: keep the autograd graph of vector-Jacobian products (alpha-CROWN
            differentiates through them).
        deadline: checked before every node; the pass raises
            :class:`~verifier.deadline.DeadlineExceeded` once it has passed (None: no limit).
        ends: exact forward forms (:mod:`verifier.bounds.forward`) of values that are affine
            functions of the graph input, and of the input itself: the pass ends its rows at
            each (their coefficients there become coefficients on the forms' ``t``,
            :func:`~verifier.bounds.forward.rows_through_form`, concretised together with the
            inputs' at the end) instead of walking on to the inputs; the same bound, cheaper
            when the forms have few columns. Not for passes that record the input coefficients.
    """

    stop: int
    relu_mode: str = "adaptive"
    slopes: Mapping[str, Tensor] = field(default_factory=dict)
    betas: Mapping[str, Tensor] = field(default_factory=dict)
    fast_paths: bool = True
    create_graph: bool = False
    deadline: Deadline | None = None
    ends: Mapping[str, Form] = field(default_factory=dict)


@dataclass
class Multipliers:
    """The optimisable parts of a bound pass, owned by the optimiser that creates them and
    passed to :meth:`verifier.bounds.crown.Crown.compute` and ``lower_bound``.

    Attributes:
        slopes: alpha-CROWN's lower slopes of unstable ReLU-like neurons, keyed by (node,
            start): start ``FINAL`` (``""``) for the objective rows, shape ``(N, R, *shape)``;
            start = a refined value for its intermediate rows, shape ``(N, 2, W, *shape)``
            over its ``W`` refined positions (+I rows, then -I rows). Any slope in the op's
            :meth:`~verifier.ops.base.Op.lower_slope_range` is sound.
        betas: beta-CROWN's ``beta * s`` ``(N, R, *shape)`` per split node, for the objective
            rows (``s = +1`` for a neuron split active, ``-1`` inactive, 0 elsewhere;
            ``beta >= 0``).
    """

    slopes: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    betas: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Record:
    """What a traversal may report besides the bound (for branching heuristics).

    Attributes:
        relu: also record the coefficients on each relaxed node's output.
        inputs: the coefficients ``(N, R, *shape)`` of the graph inputs in the final form.
        relaxed: the coefficients ``(N, R, *shape)`` on the output of each relaxed node.
    """

    relu: bool = False
    inputs: dict[str, Tensor] = field(default_factory=dict)
    relaxed: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class RelaxationFacts:
    """What the traversal needs to know once about a relaxation: whether its slopes are all
    finite (then ``A+ l_s + A- u_s`` by products) and whether its bias is only the upper one
    and finite (then ``A- u_b`` is one product)."""

    relaxation: LinearBounds
    finite_slopes: bool
    upper_bias_only: bool


@dataclass
class Cache:
    """Values a traversal may keep between passes over the same graph and dtype: ``f(0)`` of
    the nodes on the pass-through fast path, the facts about each node's relaxation (kept for
    that very relaxation object), the nodes' float-error weights
    (:mod:`verifier.bounds.step_weights`) and tables of windows read by windowed rows
    (:mod:`verifier.bounds.window_tables`)."""

    offsets: dict[str, Tensor] = field(default_factory=dict)
    facts: dict[str, RelaxationFacts] = field(default_factory=dict)
    weights: WeightCache = field(default_factory=WeightCache)
    windows: WindowTables = field(default_factory=WindowTables)

    def relaxation_facts(self, node: Node, relaxation: LinearBounds) -> RelaxationFacts:
        """The facts about ``relaxation`` (the node's current one), computed once."""
        kept = self.facts.get(node.name)
        if kept is None or kept.relaxation is not relaxation:
            kept = RelaxationFacts(
                relaxation, all_finite(relaxation.lower_slope) and all_finite(relaxation.upper_slope),
                not bool(relaxation.lower_bias.any()) and all_finite(relaxation.upper_bias))
            self.facts[node.name] = kept
        return kept


def backward(table: BoundTable, seeds: Mapping[str, Tensor | Windows], plan: Traversal,
             record: Record | None = None, cache: Cache | None = None) -> Tensor:
    """Certified lower bounds ``(N, R)`` of the rows ``sum_v <seeds[v], v>`` over the table's
    boxes, for the float model (see the module docstring).

    Raises:
        DeadlineExceeded: ``plan.deadline`` passed before the traversal ended (no bound).
    """
    cache = cache if cache is not None else Cache()
    pending: dict = dict(seeds)
    rows = next(iter(seeds.values())).shape[1]
    place = table.tgraph.place
    biases: list[Tensor] = []
    ends = plan.ends if record is None else {}  # a recorded pass needs the input coefficients
    columns: Tensor | None = None  # the coefficients on the forms' t of the rows ended at forms
    for index in range(plan.stop - 1, -1, -1):
        node = table.graph.nodes[index]
        coeffs = [pending.pop(name, None) if name else None for name in node.outputs]
        if all(c is None for c in coeffs):
            continue
        if plan.deadline is not None:
            plan.deadline.check()
        form = ends.get(node.outputs[0]) if len(node.outputs) == 1 else None
        if form is not None and coeffs[0] is not None:  # every consumer has been passed: the rows end here
            part, bias = rows_through_form(coeffs[0], form, len(ends))
            columns = part if columns is None else columns + part
            biases.append(bias)
            continue
        biases.append(_step(table, index, coeffs, pending, plan, record, cache))
        beta = plan.betas.get(node.name)
        if beta is not None:
            accumulate(pending, node.inputs[0], -beta.to(place.dtype))
    pending = {name: c.dense() if isinstance(c, Windows) else c for name, c in pending.items()}
    if columns is not None:  # inputs reached by walking join the ended rows: all concretised in t
        for name in [name for name in pending if name in ends]:
            part, bias = rows_through_form(pending.pop(name), ends[name], len(ends))
            columns, biases = columns + part, [*biases, bias]
        biases.append(-columns.abs().sum(dim=2))
    if record is not None:  # every input's coefficients: zeros where no path of the rows reaches it
        record.inputs = {name: pending[name] if name in pending else
                         torch.zeros(table.batch, rows, *lo.shape[1:], dtype=place.dtype, device=place.device)
                         for name, (lo, _) in table.input_bounds.items()}
    if not biases:
        return _concretise(table, pending, torch.zeros(table.batch, rows, dtype=place.dtype, device=place.device))
    steps = torch.stack(biases)
    bias = steps.sum(dim=0)
    if table.unit != 0.0:  # the rounding of adding up the steps' biases, in any order
        spread = torch.nan_to_num(steps.detach().abs().sum(dim=0), nan=torch.inf)
        bias = bias - 2 * gamma(len(biases) + 2, unit_roundoff(place.dtype)) * spread
    return _concretise(table, pending, bias)


def _step(table: BoundTable, index: int, coeffs: list[Tensor | None], pending: dict[str, Tensor],
          plan: Traversal, record: Record | None, cache: Cache) -> Tensor:
    """Moves the coefficients on node ``index``'s outputs to its inputs; returns the bias added
    (less ``sum |A| * w`` for floating point, :mod:`verifier.bounds.step_weights`)."""
    node, op = table.graph.nodes[index], table.tgraph.ops[index]
    los, his, batched = table.args(node)
    if any(isinstance(c, Windows) for c in coeffs):
        windowed = _window_step(table, index, coeffs, pending, plan, record, cache, (los, his, batched))
        if windowed is not None:
            return windowed
        coeffs = [c.dense() if isinstance(c, Windows) else c for c in coeffs]
    if op.is_affine(node, batched):
        weights = affine_weights(table, index, cache.weights)
        return weighted_abs(coeffs, weights) + _affine(table, index, coeffs, pending, plan, cache, batched)
    multi = op.multi_relaxation
    if multi is not None and coeffs[0] is not None and all(c is None for c in coeffs[1:]):
        chosen = plan.slopes.get(node.name)  # alpha-CROWN's plane weights, per row
        if chosen is not None and multi.weights is not None:
            moved = multi.weights.backward(node, coeffs[0], los, his, batched, chosen)
        else:
            moved = multi.backward(node, coeffs[0], los, his, batched)
        if moved is not None:
            for position, moved_coeff in moved.coefficients.items():
                accumulate(pending, node.inputs[position], moved_coeff)
            return weighted_abs(coeffs, error_weights(table, node, cache.weights)) + moved.bias
    relaxation = table.relaxation(node, plan.relu_mode, (los, his, batched))
    if relaxation is not None and coeffs[0] is not None:
        lo, hi = los[0], his[0]
        assert lo is not None and hi is not None
        bias = _relaxed(table, node, coeffs[0], relaxation, (lo, hi), pending, plan, cache)
        if record is not None and record.relu:
            record.relaxed[node.name] = coeffs[0]
        return bias
    first = next(c for c in coeffs if c is not None)
    total = torch.zeros(first.shape[:2], dtype=first.dtype, device=first.device)
    for name, coeff in zip(node.outputs, coeffs, strict=False):
        if coeff is not None:
            out_lo, out_hi = table.bounds[name]
            total = total + dot(coeff, out_lo, out_hi)
    return total + weighted_abs(coeffs, cut_weights(table, node))


def _window_step(table: BoundTable, index: int, coeffs: list, pending: dict, plan: Traversal,
                 record: Record | None, cache: Cache, args: Args) -> Tensor | None:
    """The step for rows kept as windows (:mod:`verifier.bounds.windows`): through an affine
    node with a local map (:meth:`~verifier.ops.base.Op.local_map`) or an elementwise relaxed
    node without alpha slopes; the same coefficients and bias as the dense step. None: not
    such a node (the caller goes on with dense coefficients). ``args``: the node's
    :meth:`~verifier.bounds.table.BoundTable.args`."""
    node, op = table.graph.nodes[index], table.tgraph.ops[index]
    a = coeffs[0]
    if len(coeffs) != 1 or not isinstance(a, Windows) or a.covers_value():
        return None
    los, his, batched = args
    source = node.inputs[0]
    if op.is_affine(node, batched):
        if sum(batched) != 1 or not batched[0]:
            return None
        local = op.local_map(node, table.tgraph.constant_args(node), table.graph.shapes[source])
        if local is None:
            return None
        bias = a.dot(_offset(table, node, batched, a.patch, cache))
        weights = affine_weights(table, index, cache.weights)
        moved = through_local_map(a, local, tuple(table.graph.shapes[source]))
    else:
        relaxation = table.relaxation(node, plan.relu_mode, (los, his, batched))
        if relaxation is None or op.multi_relaxation is not None or node.name in plan.slopes \
                or (record is not None and record.relu):
            return None
        lo, hi = los[0], his[0]
        assert lo is not None and hi is not None
        weights = relaxed_weights(table, node, relaxation, (lo, hi), cache.weights)
        facts = cache.relaxation_facts(node, relaxation)
        moved, bias = through_relaxation(a, relaxation, facts.finite_slopes, facts.upper_bias_only)
    weight, finite = weights[0]
    allowance = torch.zeros_like(bias) if weight is None else \
        -torch.nan_to_num(abs_weighted(a, weight, finite), nan=torch.inf)
    accumulate(pending, source, moved)
    return bias + allowance


def _relaxed(table: BoundTable, node: Node, a: Tensor, relaxation: LinearBounds, box: tuple[Tensor, Tensor],
             pending: dict[str, Tensor], plan: Traversal, cache: Cache) -> Tensor:
    """Passes ``a`` through the node's lines (alpha slopes at unstable positions); returns the
    bias ``A+ l_b + A- u_b`` less ``|A|`` times the node's float error and the traversal's
    rounding allowance for this step."""
    alpha = plan.slopes.get(node.name)
    if alpha is not None and free_relaxation(table, node) is not None:
        moved, bias = free_line_step(table, node, a, alpha, relaxation, box)
        accumulate(pending, node.inputs[0], moved)
        return bias
    lower_slope = relaxation.lower_slope.unsqueeze(1)
    if alpha is not None:
        unstable = ((box[0] < 0) & (box[1] > 0)).unsqueeze(1)
        lower_slope = torch.where(unstable, alpha, lower_slope)
    upper_slope = relaxation.upper_slope.unsqueeze(1)
    negative = a.clamp(max=0)
    facts = cache.relaxation_facts(node, relaxation)
    if facts.finite_slopes:
        # A+ l_s + A- u_s by products alone (the same values as selecting the slope by the
        # sign of A: 0 times a finite slope adds 0), far cheaper than a selection on CPU
        accumulate(pending, node.inputs[0], a.clamp(min=0) * lower_slope + negative * upper_slope)
    else:
        accumulate(pending, node.inputs[0], a * torch.where(a > 0, lower_slope, upper_slope))
    weights = relaxed_weights(table, node, relaxation, box, cache.weights, alpha is not None)
    return _relaxed_bias(a, negative, relaxation, facts.upper_bias_only) + weighted_abs([a], weights)


def _relaxed_bias(a: Tensor, negative: Tensor, relaxation: LinearBounds, upper_bias_only: bool) -> Tensor:
    """``A+ l_b + A- u_b``; ``negative`` is ``A-``; ``upper_bias_only``: ``l_b`` is 0 and ``u_b``
    finite."""
    if upper_bias_only:  # A+ · 0 adds nothing: one product (e.g. ReLU)
        n = a.shape[0]
        upper_bias = relaxation.upper_bias.expand(n, *relaxation.upper_bias.shape[1:]).reshape(n, -1, 1)
        return torch.bmm(rowwise(negative), upper_bias.to(a.dtype)).squeeze(2)
    return dot(a, relaxation.lower_bias, relaxation.upper_bias)


def _affine(table: BoundTable, index: int, coeffs: list[Tensor | None], pending: dict[str, Tensor],
            plan: Traversal, cache: Cache, batched: list[bool]) -> Tensor:
    """Vector-Jacobian product through an affine node; returns ``A·f(0)``."""
    node, op = table.graph.nodes[index], table.tgraph.ops[index]
    a0 = next(c for c in coeffs if c is not None)
    if plan.fast_paths and coeffs[0] is not None and sum(batched) == 1 and len(node.outputs) == 1:
        fast = _fast_affine(table, index, coeffs[0], pending, batched, cache)
        if fast is not None:
            return fast
    n, r = a0.shape[:2]
    args, leaves = table.tgraph.leaf_args(node, batched, n * r, a0.dtype, a0.device)
    with torch.enable_grad():
        outs = op.forward(node, args, batched)
        # outputs that do not depend on the inputs (e.g. Dropout's mask) only add A·f(0)
        pairs = [(o, a.reshape(n * r, *o.shape[1:])) for o, a in zip(outs, coeffs, strict=False)
                 if a is not None and o.requires_grad]
        grads: tuple[Tensor | None, ...] = (None,) * len(leaves)
        if pairs:
            # the gradient of one scalar, sum <o, g>: the same vector-Jacobian products as g given as
            # grad_outputs, without the first such call's import of torch's symbolic shapes (~1 s)
            total = torch.stack([(o * g).sum() for o, g in pairs]).sum()
            grads = torch.autograd.grad(total, leaves, allow_unused=True, create_graph=plan.create_graph)
    dyn_names = [name for name, is_dyn in zip(node.inputs, batched, strict=True) if name and is_dyn]
    for name, grad in zip(dyn_names, grads, strict=True):
        if grad is not None:
            accumulate(pending, name, grad.reshape(n, r, *grad.shape[1:]))
    offset = torch.zeros((n, r), dtype=a0.dtype, device=a0.device)
    for out, a in zip(outs, coeffs, strict=False):
        if a is not None:
            offset = offset + rowwise(a * out.detach()[:1].unsqueeze(1)).sum(dim=2)
    return offset


def _fast_affine(table: BoundTable, index: int, a: Tensor, pending: dict[str, Tensor], batched: list[bool],
                 cache: Cache) -> Tensor | None:
    """The op's own transpose rule, or a pass-through (:meth:`Op.pass_through_sign`) when the
    shapes agree; returns ``A·f(0)``, or None when neither applies."""
    node, op = table.graph.nodes[index], table.tgraph.ops[index]
    if batched[0]:
        moved = op.transpose(node, a, table.tgraph.constant_args(node))
        if moved is not None:
            accumulate(pending, node.inputs[0], moved[0])
            return moved[1]
    position = batched.index(True)
    sign = op.pass_through_sign(node, position)
    source = node.inputs[position]
    out_shape, in_shape = table.graph.shapes[node.outputs[0]], table.graph.shapes[source]
    # a copy in the same flat order (Flatten, Reshape, ...) passes A on reshaped, like one of the same shape
    same = out_shape == in_shape or (op.copies_input and math.prod(out_shape) == math.prod(in_shape))
    if sign is None or not same:
        return None
    accumulate(pending, source, (sign * a).reshape(*a.shape[:2], *table.graph.shapes[source]))
    if op.copies_input:
        return torch.zeros(a.shape[:2], dtype=a.dtype, device=a.device)
    offset = _offset(table, node, batched, a, cache).reshape(1, 1, -1).expand(a.shape[0], 1, -1)
    return torch.bmm(rowwise(a), offset.transpose(1, 2)).squeeze(2)


def _offset(table: BoundTable, node: Node, batched: list[bool], a: Tensor, cache: Cache) -> Tensor:
    """``f(0)`` of a pass-through node (its dynamic input at zero), cached per node."""
    if node.name not in cache.offsets:
        args: list[Tensor | None] = [
            None if not n else (torch.zeros((1, *table.graph.shapes[n]), dtype=a.dtype, device=a.device)
                                if b else table.tgraph.constants[n])
            for n, b in zip(node.inputs, batched, strict=True)
        ]
        with torch.no_grad():
            cache.offsets[node.name] = table.tgraph.op_of[node.name].forward(node, args, batched)[0].to(a.dtype)
    return cache.offsets[node.name]


def _concretise(table: BoundTable, pending: dict[str, Tensor], bias: Tensor) -> Tensor:
    """Minimises the linear form over the input boxes, minus a float64 rounding margin."""
    total = bias
    scale = bias.detach().abs()  # the margin is not differentiated (see weighted_abs)
    terms = 0
    for info in table.graph.inputs:
        a = pending.get(info.name)
        if a is None:
            continue
        lo, hi = table.bounds[info.name]
        total = total + dot(a, lo, hi)
        mag = torch.maximum(lo.abs(), hi.abs())
        scale = scale + rowwise(a.detach().abs() * mag.unsqueeze(1)).sum(dim=2)
        terms += info.size
    margin = gamma(terms + 2, unit_roundoff(torch.float64)) * scale
    return torch.nan_to_num(total - margin, nan=-torch.inf)


def rowwise(t: Tensor) -> Tensor:
    """``(N, R, *shape)`` as ``(N, R, size)`` (also for 0-d values: size 1)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def dot(a: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``sum(A+ lower + A- upper)`` over all but the first two dims; 0 * inf counts as 0."""
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    if bool(torch.isfinite(lower).all()) and bool(torch.isfinite(upper).all()):
        n = a.shape[0]
        lo = lower.expand(n, *lower.shape[1:]).reshape(n, -1, 1).to(a.dtype)
        hi = upper.expand(n, *upper.shape[1:]).reshape(n, -1, 1).to(a.dtype)
        return (torch.bmm(rowwise(pos), lo) + torch.bmm(rowwise(neg), hi)).squeeze(2)
    lo, hi = lower.unsqueeze(1), upper.unsqueeze(1)
    terms = torch.where(pos > 0, pos * lo, 0.0) + torch.where(neg < 0, neg * hi, 0.0)
    return rowwise(terms).sum(dim=2)


def accumulate(pending: dict, name: str, value: Tensor | Windows) -> None:
    """Adds ``value`` to the coefficients pending on ``name`` (windows stay windows when
    both are windows of the same rows; otherwise the sum is dense)."""
    if name not in pending:
        pending[name] = value
        return
    kept = pending[name]
    if isinstance(kept, Windows) and isinstance(value, Windows):
        both = kept.plus(value)
        if both is not None:
            pending[name] = both
            return
    dense = [c.dense() if isinstance(c, Windows) else c for c in (kept, value)]
    pending[name] = dense[0] + dense[1]
