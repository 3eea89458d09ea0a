"""Forward-mode linear bounds: every value enclosed by two linear functions of the graph input.

For a graph with one input ``x``, each input box is written ``x = c + r * t`` with ``t`` in
``[-1, 1]^n`` over its ``n`` free positions (``r`` rounded up, so the t-box covers the input box;
only the ``t`` whose ``x`` lies in the box matter); positions narrower than a millionth of the
widest in every box enter as constants, their box ends (dist_shift fixes 784 of 792 pixels).
A value ``v`` of ``m`` elements gets a :class:`Form`:
the coefficients ``(N, n, m)`` and biases ``(N, m)`` of a lower and an upper linear function
of ``t`` between which ``v``'s float evaluation lies. :class:`ForwardForms` passes forms from
node to node in graph order:

- an affine node with one dynamic input whose op gives its absolute linear part ``|L|``
  (:meth:`verifier.ops.base.Op.absolute_linear`): ``L+ lower + L- upper``, computed as
  ``(L (A_l + A_u) + |L| (A_l - A_u)) / 2``, and the upper form alike;
- a single-input node with a linear relaxation (the table's lines, valid on its input's
  bounds): each line applied to the lower or the upper form by the sign of its slope;
- any other node is cut: a constant form at its interval bounds.

Cost: each node applies its op to ``2 (n + 1)`` vectors per box, where CROWN's backward
refinement runs one pass over every earlier node per refined neuron; the right trade when
``n`` is small (ACAS Xu: 5 inputs). Tightness: a node's forms are fixed once computed, so the
looseness compounds with depth where back-substitution does not; on small boxes both converge.

Floating point (unit ``u`` of the bound dtype). Each node's biases absorb (i) the node's float
evaluation error from the table (the model's rounding) and (ii) the rounding of the form
arithmetic: every coefficient and bias entry is a sum of at most ``k + 6`` rounded operations
(``k`` the op's rounding count from ``absolute_linear``; 1 for the lines) on terms bounded by
``|L| (|A_l| + |A_u|)`` and ``|f(0)|``, so it errs by at most ``gamma_{k+6}`` times those, and
with ``|t_j| <= 1`` the whole function errs by at most ``gamma_{k+6} (|L| (M_l + M_u) +
(2n + 3) |f(0)|)``, ``M = sum_j |A_j| + |b|`` being a form's magnitude. Twice
``gamma_{k+8}`` of it is subtracted (covering the rounding of the margin and of the
subtraction). Concretisation subtracts ``2 gamma_{n+2} M``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from verifier.bounds.rounding import unit_roundoff
from verifier.bounds.table import Bounds, BoundTable
from verifier.bounds.windows import Windows
from verifier.deadline import Deadline
from verifier.ir import Node
from verifier.ops.base import all_finite, gamma
from verifier.ops.relax import LinearBounds

FORM_ROWS_PER_CALL = 512
"""Rows (a box's form columns, then biases) per call of an op when passing forms through it:
one call on thousands of columns (CIFAR inputs) took 0.76 s, past the watchdog's grace."""


@dataclass(frozen=True)
class Form:
    """``lower · t + lower_bias <= v <= upper · t + upper_bias`` for the flattened value ``v``:
    coefficients ``(N, n, m)``, biases ``(N, m)``; the spreads ``sum_j |A_j|`` ``(N, m)`` of
    both (build with :func:`make_form`). ``exact``: ``v`` is an affine function of the input
    and both functions carry its coefficients (``lower is upper``; the biases differ by the
    float errors and the fixed inputs' boxes); a cut form is not exact."""

    lower: Tensor
    lower_bias: Tensor
    upper: Tensor
    upper_bias: Tensor
    lower_spread: Tensor
    upper_spread: Tensor
    exact: bool = False

    def magnitudes(self) -> tuple[Tensor, Tensor]:
        """``sum_j |A_j| + |b|`` ``(N, m)`` of the lower and the upper function: bounds of
        their absolute values on the t-box (computed once per form)."""
        return self._magnitudes

    @cached_property
    def _magnitudes(self) -> tuple[Tensor, Tensor]:
        return self.lower_spread + self.lower_bias.abs(), self.upper_spread + self.upper_bias.abs()

    @cached_property
    def end_columns(self) -> Tensor:
        """``(N, n + 3, m)``: the lower coefficients' ``n`` columns, then the lower bias, the
        upper bias and the larger magnitude: everything rows ending at this form read, in one
        tensor (read at windows once per pass; computed once per form)."""
        magnitude = torch.maximum(*self.magnitudes())
        extra = torch.stack([self.lower_bias, self.upper_bias, magnitude], dim=1)
        return torch.cat([self.lower, extra], dim=1)


def make_form(lower: Tensor, lower_bias: Tensor, upper: Tensor, upper_bias: Tensor) -> Form:
    """The form with its spreads (computed once for an exact form, ``lower is upper``)."""
    lower_spread = lower.abs().sum(dim=1)
    upper_spread = lower_spread if upper is lower else upper.abs().sum(dim=1)
    return Form(lower, lower_bias, upper, upper_bias, lower_spread, upper_spread, upper is lower)


def cut_form(lower: Tensor, upper: Tensor, n: int) -> Form:
    """The constant form at interval bounds ``(N, *shape)`` (``n`` input elements)."""
    lo, hi = _flat(lower), _flat(upper)
    zero = torch.zeros(lo.shape[0], n, lo.shape[1], dtype=lo.dtype, device=lo.device)
    spread = torch.zeros_like(lo)
    return Form(zero, lo, zero, hi, spread, spread)


class ForwardForms:
    """Forms of the values of one bound table, filled node by node (see the module docstring).

    Use :meth:`applicable` first: one graph input with finite bounds."""

    def __init__(self, table: BoundTable, relu_mode: str, deadline: Deadline | None = None) -> None:
        """Forms of the input (``deadline``: checked between chunks of one node's columns, a pass
        raising :class:`~verifier.deadline.DeadlineExceeded` once it has passed)."""
        self.table, self.relu_mode, self.deadline = table, relu_mode, deadline
        self.unit = unit_roundoff(table.tgraph.place.dtype)
        info = table.graph.inputs[0]
        lo, hi = (_flat(b) for b in table.input_bounds[info.name])
        centre = (lo + hi) / 2
        radius = torch.maximum(centre - lo, hi - centre) * (1 + 2 * self.unit)
        free = _free_dimensions(radius)
        self.n = int(free.numel())
        coefficients = torch.zeros(lo.shape[0], self.n, lo.shape[1], dtype=lo.dtype, device=lo.device)
        columns = torch.arange(self.n, device=lo.device)
        coefficients[:, columns, free] = radius[:, free]  # x_i = c_i + r_i t_j for the j-th free i
        fixed = torch.ones_like(lo, dtype=torch.bool)
        fixed[:, free] = False  # the other inputs: the constants lo_i and hi_i bound them
        lower_bias, upper_bias = torch.where(fixed, lo, centre), torch.where(fixed, hi, centre)
        self.forms: dict[str, Form] = {info.name: make_form(coefficients, lower_bias, coefficients, upper_bias)}

    @staticmethod
    def applicable(table: BoundTable, max_entries: int | None = None) -> bool:
        """True when the graph has one input, its boxes are finite and (``max_entries`` given)
        one form's coefficients on the graph's largest value, ``N * n * m`` entries, stay
        within ``max_entries``."""
        if len(table.graph.inputs) != 1:
            return False
        lo, hi = table.input_bounds[table.graph.inputs[0].name]
        if max_entries is not None \
                and lo.shape[0] * ForwardForms.free_inputs(table) * table.graph.largest_value_size > max_entries:
            return False
        return bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())

    @staticmethod
    def free_inputs(table: BoundTable) -> int:
        """The number of input positions the forms would keep a column for (the graph's one
        input; see :func:`_free_dimensions`)."""
        lo, hi = table.input_bounds[table.graph.inputs[0].name]
        return int(_free_dimensions((_flat(hi) - _flat(lo)) / 2).numel())

    def bounds(self, name: str) -> Bounds | None:
        """Certified bounds ``(N, *shape)`` of value ``name`` from its form (None: no form)."""
        form = self.forms.get(name)
        if form is None:
            return None
        shape = (self.table.batch, *self.table.graph.shapes[name])
        scale = 2 * gamma(self.n + 2, self.unit)
        mag_lo, mag_hi = form.magnitudes()
        lower = form.lower_bias - form.lower_spread - scale * mag_lo
        upper = form.upper_bias + form.upper_spread + scale * mag_hi
        return lower.reshape(shape), upper.reshape(shape)

    def pass_node(self, index: int) -> None:
        """Computes the forms of node ``index``'s outputs; the table must hold the node's
        output bounds, float errors and (for a relaxed node) its input's final bounds."""
        node = self.table.graph.nodes[index]
        outputs = [name for name in node.outputs if name]
        form = self._affine(index) if len(outputs) == 1 else None
        if form is None and len(outputs) == 1:
            form = self._relaxed(node)
        if form is not None:
            self.forms[outputs[0]] = self._guard(outputs[0], self._widen(form, self.table.errors[node.name][0]))
            return
        for name in outputs:  # cut; values that are not real numbers (masks, shapes) get no form
            lower, upper = self.table.bounds[name]
            if lower.is_floating_point():
                self.forms[name] = cut_form(lower, upper, self.n)

    def _affine(self, index: int) -> Form | None:
        """The forms through an affine node with one dynamic input whose op gives ``|L|``."""
        table = self.table
        node, op = table.graph.nodes[index], table.tgraph.ops[index]
        batched = table.args(node)[2]
        if not (op.is_affine(node, batched) and sum(batched) == 1):
            return None
        position = batched.index(True)
        source = self.forms.get(node.inputs[position])
        if source is None:
            return None
        shape = table.graph.shapes[node.inputs[position]]
        batch, n = table.batch, self.n
        mag_lo, mag_hi = source.magnitudes()

        def stacked(coefficients: Tensor, bias: Tensor, last: Tensor) -> list[Tensor | None]:
            # the n columns of every box, then the biases, then one more row, as one batch
            rows = torch.cat([coefficients.reshape(batch * n, -1), bias, last])
            args = list(table.tgraph.constant_args(node))
            args[position] = rows.reshape(rows.shape[0], *shape)
            return args

        zero = torch.zeros(1, source.lower_bias.shape[1], dtype=mag_lo.dtype, device=mag_lo.device)
        found = self._in_chunks(lambda args: op.absolute_linear(node, args, batched), position, stacked(
            source.lower - source.upper, source.lower_bias - source.upper_bias, mag_lo + mag_hi))
        if found is None:
            return None
        summed = self._in_chunks(lambda args: (op.forward(node, args, batched)[0], 0), position, stacked(
            source.lower + source.upper, source.lower_bias + source.upper_bias, zero))
        assert summed is not None
        absolute, rounded, sums = _flat(found[0]), found[1], _flat(summed[0])
        at_zero = sums[-1:]
        s_coef = (sums[: batch * n] - at_zero).reshape(batch, n, -1)
        s_bias = sums[batch * n : -1] + at_zero
        d_coef = absolute[: batch * n].reshape(batch, n, -1)
        d_bias, spread = absolute[batch * n : batch * (n + 1)], absolute[batch * (n + 1) :]
        margin = 2 * gamma(rounded + 8, self.unit) * (spread + (2 * n + 3) * at_zero.abs())
        if source.lower is source.upper:  # an exact form stays exact (d_coef is 0)
            coef = s_coef / 2
            return make_form(coef, (s_bias + d_bias) / 2 - margin, coef, (s_bias - d_bias) / 2 + margin)
        return make_form((s_coef + d_coef) / 2, (s_bias + d_bias) / 2 - margin,
                         (s_coef - d_coef) / 2, (s_bias - d_bias) / 2 + margin)

    def _in_chunks(self, apply: Callable[[list[Tensor | None]], tuple[Tensor, int] | None], position: int,
                   args: list[Tensor | None]) -> tuple[Tensor, int] | None:
        """``apply(args)`` (an op's result for a batch of rows at ``args[position]`` and its
        rounding count) over chunks of those rows, checking :attr:`deadline` between chunks:
        the rows concatenated, the largest count (each row is computed on its own)."""
        rows = args[position]
        assert rows is not None
        parts, counts = [], []
        for chunk in rows.split(FORM_ROWS_PER_CALL):
            if self.deadline is not None:
                self.deadline.check()
            found = apply([chunk if i == position else a for i, a in enumerate(args)])
            if found is None:
                return None
            parts.append(found[0])
            counts.append(found[1])
        return torch.cat(parts), max(counts)

    def _relaxed(self, node: Node) -> Form | None:
        """The forms through a single-input node with a linear relaxation on its input."""
        relaxation = self.table.relaxation(node, self.relu_mode)
        source = self.forms.get(node.inputs[0])
        if relaxation is None or source is None:
            return None
        lines = _flat_lines(relaxation, self.table.batch)
        scale = 2 * gamma(4, self.unit)
        lower, lower_bias, low_mag = _line(lines.lower_slope, source, lower_side=True)
        upper, upper_bias, up_mag = _line(lines.upper_slope, source, lower_side=False)
        low_margin = scale * (low_mag + lines.lower_bias.abs())
        up_margin = scale * (up_mag + lines.upper_bias.abs())
        return make_form(lower, lower_bias + lines.lower_bias - low_margin, upper,
                         upper_bias + lines.upper_bias + up_margin)

    def _widen(self, form: Form, error: Tensor | None) -> Form:
        """The form widened by the node's float evaluation error (None: exact)."""
        if error is None:
            return form
        err = torch.broadcast_to(error, (self.table.batch, *error.shape[1:])).reshape(self.table.batch, -1)
        return replace(form, lower_bias=form.lower_bias - err, upper_bias=form.upper_bias + err)

    def _guard(self, name: str, form: Form) -> Form:
        """The form with every position that came out non-finite (a NaN or infinity in a
        coefficient or bias shows in the magnitude) cut at its interval bounds."""
        mag_lo, mag_hi = form.magnitudes()
        if all_finite(mag_lo) and all_finite(mag_hi):
            return form
        bad_lo, bad_hi = ~torch.isfinite(mag_lo), ~torch.isfinite(mag_hi)
        lo, hi = (_flat(b) for b in self.table.bounds[name])
        return make_form(torch.where(bad_lo.unsqueeze(1), 0.0, form.lower), torch.where(bad_lo, lo, form.lower_bias),
                         torch.where(bad_hi.unsqueeze(1), 0.0, form.upper), torch.where(bad_hi, hi, form.upper_bias))


def free_dimensions(width: Tensor, relative: float = 1e-6) -> Tensor:
    """Which input positions of boxes ``(N, n)`` (their widths or radii) count as *free*: those
    wider than ``relative`` times the widest one in some box of the batch, ``(n,)`` bool. The
    others (pixels fixed to an interval a few rounding steps wide, as in dist_shift) are worth
    neither a form column nor a split. Any choice is sound: it only decides where work goes."""
    widest = width.amax(dim=1, keepdim=True)
    return (width > relative * widest).any(dim=0)


def _free_dimensions(radius: Tensor) -> Tensor:
    """The input positions the forms keep a column for (:func:`free_dimensions`); the others
    enter as constants, their box ends, so a form costs ``2 (k + 1)`` vectors for ``k`` free
    positions instead of ``2 (n + 1)`` (a point box keeps one column)."""
    free = free_dimensions(radius).nonzero().reshape(-1)
    return free if free.numel() else torch.zeros(1, dtype=torch.long, device=radius.device)  # a point box


def _line(slope: Tensor, source: Form, lower_side: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``slope * v`` bounded from below (``lower_side``) or above through the source's form:
    the coefficients and bias (each slope times the lower or the upper function, by its sign
    and the side) and ``|slope|`` times that function's magnitude (for the rounding margin)."""
    mag_lo, mag_hi = source.magnitudes()
    near, far = (source.lower, source.upper) if lower_side else (source.upper, source.lower)
    near_b, far_b = (source.lower_bias, source.upper_bias) if lower_side else (source.upper_bias, source.lower_bias)
    near_m, far_m = (mag_lo, mag_hi) if lower_side else (mag_hi, mag_lo)
    if bool((slope >= 0).all()):  # the usual case (the ReLU family): no selection needed
        return slope.unsqueeze(1) * near, slope * near_b, slope * near_m
    pos = slope >= 0
    coef = slope.unsqueeze(1) * torch.where(pos.unsqueeze(1), near, far)
    return coef, slope * torch.where(pos, near_b, far_b), slope.abs() * torch.where(pos, near_m, far_m)


def _flat_lines(lines: LinearBounds, batch: int) -> LinearBounds:
    """The relaxation's tensors as ``(N, m)``."""
    def flat(t: Tensor) -> Tensor:
        return t.expand(batch, *t.shape[1:]).reshape(batch, -1)

    return LinearBounds(flat(lines.lower_slope), flat(lines.lower_bias), flat(lines.upper_slope),
                        flat(lines.upper_bias))


def _flat(t: Tensor) -> Tensor:
    """``(B, *shape)`` as ``(B, size)`` (also for 0-d values: size 1)."""
    return t.reshape(t.shape[0], -1)


def rows_through_form(rows: Tensor | Windows, form: Form, parts: int) -> tuple[Tensor, Tensor]:
    """The rows ``<A_r, v>`` for a value ``v`` whose form is exact (:attr:`Form.exact`:
    ``C t + b_l <= v <= C t + b_u``) as a function of the forms' ``t``: coefficients ``A C``
    ``(N, R, n)`` and a bias ``(N, R)`` with ``<A_r, v> >= (A C)_r t + bias_r`` for every ``t``
    in ``[-1, 1]^n``, so for every input of the boxes (the forms cover the model's float
    evaluation). A backward pass may end its rows here instead of walking on to the inputs:
    several such parts are added up and concretised together (``- sum_j |sum_parts (A C)_j|``),
    the bound the walk would give, at the cost of products with ``n`` columns.

    Floating point (unit ``u`` of the rows' dtype; ``parts``: at most how many parts are added
    before the concretisation): the products over ``m`` positions, the additions of the parts
    and the concretisation's sum over ``n`` columns err by at most ``gamma_{m+n+parts+2}``
    times ``|A| (sum_j |C_j| + max(|b_l|, |b_u|))`` for this part; twice ``gamma_{m+n+parts+4}``
    of it is subtracted from the bias (not differentiated, as the traversal's other allowances).
    """
    batch, n, m = form.lower.shape
    unit = unit_roundoff(form.lower.dtype)
    if isinstance(rows, Windows) and rows.patch[0, 0].numel() * (n + 3) > 3 * m:
        rows = rows.dense()  # large windows: reading n + 3 columns at each costs more than dense rows (measured)
    if isinstance(rows, Windows):  # one read of the columns, the biases and the magnitude
        picked = rows.gather_columns(form.end_columns.reshape(batch, n + 3, *rows.shape[1:]))
        patch = rows.patch.reshape(*rows.patch.shape[:2], -1)  # (N, R, D); picked (N, n + 3, R, D)
        coefficients = (picked[:, :n] * patch.unsqueeze(1)).sum(dim=3).transpose(1, 2)
        bias = (patch.clamp(min=0) * picked[:, n]).sum(dim=2) + (patch.clamp(max=0) * picked[:, n + 1]).sum(dim=2)
        size = (patch.detach().abs() * picked[:, n + 2]).sum(dim=2)
    else:
        flat = rows.reshape(rows.shape[0], rows.shape[1], -1).expand(batch, -1, -1)
        coefficients = torch.bmm(flat, form.lower.transpose(1, 2))
        bias = (torch.bmm(flat.clamp(min=0), form.lower_bias.unsqueeze(2))
                + torch.bmm(flat.clamp(max=0), form.upper_bias.unsqueeze(2))).squeeze(2)
        size = torch.bmm(flat.detach().abs(), form.end_columns[:, n + 2].unsqueeze(2)).squeeze(2)
    margin = 2 * gamma(m + n + parts + 4, unit) * size
    return coefficients, torch.nan_to_num(bias - margin, nan=-torch.inf)
