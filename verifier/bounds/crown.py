"""CROWN: the bound pass over the general graph, with alpha slopes and beta multipliers.

:class:`Crown` fills a :class:`~verifier.bounds.table.BoundTable` for a batch of input boxes:
interval bounds node by node, and before each relaxed node (one with a linear relaxation or a
multi-input rule) CROWN bounds of its input (rows ``±I``) from the backward traversal
(:func:`verifier.bounds.backward.backward`), intersected with the interval ones. Objective
rows are then bounded by the same traversal (:meth:`Crown.lower_bound`).

State it keeps between passes: the refined rows of the first pass and the best bounds found so
far (every pass's bounds are valid, so they are intersected). Alpha slopes and beta multipliers
are not its state: the optimisers own them (:mod:`verifier.bounds.alpha`,
:mod:`verifier.bab.relu_bounding`) and pass them in as :class:`~verifier.bounds.backward.Multipliers`.

Floating point: the model computes each node in float32. Its float output equals the exact
op applied to the (float) inputs plus an error bounded by the op's ``fp_error``; every node
the traversal passes through therefore subtracts ``|A|·err`` from the bias, so the bound holds
for the float model. ``err`` is computed with unit ``u_model + u_float64``, which also covers
the float64 rounding of the traversal's own products; the final concretisation subtracts its
own rounding bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from verifier.bounds.backward import Cache, Multipliers, Record, Traversal, backward
from verifier.bounds.forward import Form, ForwardForms
from verifier.bounds.interval import _widen, model_unit
from verifier.bounds.rounding import outward, unit_roundoff
from verifier.bounds.table import Bounds, BoundTable
from verifier.bounds.windows import Windows
from verifier.config import CrownConfig, IntermediateMethod
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import ValueInfo
from verifier.ops.base import Affinity, Op
from verifier.ops.relax import LinearBounds

RowsOf = tuple[str, int, int] | None
FINAL = ""
"""The alpha key of the final objective rows (no value is named ``""``)."""


class Crown:
    """CROWN bounds of a graph over a batch of input boxes.

    Construction computes the bounds of every value (intervals, refined by CROWN at the
    inputs of relaxed nodes) into :attr:`table`; :meth:`lower_bound` then bounds arbitrary
    objective rows.
    """

    def __init__(self, tgraph: TorchGraph, lower: Sequence[Tensor], upper: Sequence[Tensor],
                 config: CrownConfig | None = None, prior: Mapping[str, Bounds] | None = None,
                 deadline: Deadline | None = None, table: BoundTable | None = None) -> None:
        """Bounds every value over the boxes ``[lower, upper]`` (one ``(N, *shape)`` pair per
        graph input). ``prior`` gives bounds ``(N, *shape)`` or flattened ``(N, size)`` of some
        values already known to hold on these boxes (e.g. a parent box's bounds in branch and bound); they
        are intersected in, which is sound whenever they are valid bounds.

        ``deadline`` is checked before every node of every pass, this one and later ones
        (:meth:`compute`, :meth:`lower_bound`). ``table``: a table already valid on these
        boxes (:meth:`tiled`): it is taken as it is, without a pass.

        Raises:
            ValueError: a box is neither ``(N, *shape)`` of its graph input nor flattened
                ``(N, size)`` (flattened boxes are reshaped).
            DeadlineExceeded: the deadline passed during a pass; the object must then not be
                used (its table is incomplete).
        """
        self.tgraph, self.graph = tgraph, tgraph.graph
        self.config = config or CrownConfig()
        self.deadline = deadline
        self.unit = 0.0 if self.config.real_arithmetic else model_unit(tgraph) + unit_roundoff(tgraph.place.dtype)
        lower, upper = _shaped(self.graph.inputs, lower, upper)
        self.batch = lower[0].shape[0]
        device, dtype = tgraph.place.device, tgraph.place.dtype
        self.input_bounds: dict[str, Bounds] = {
            info.name: outward(lo.to(device), hi.to(device), dtype)
            for info, lo, hi in zip(self.graph.inputs, lower, upper, strict=True)
        }
        self.table = BoundTable(tgraph, self.unit, self.batch, self.input_bounds)
        # refined value -> (index of the node it feeds, flat positions refined); fixed at the
        # first pass so that recomputing reuses the same rows (and the same alpha shapes).
        self.refined: dict[str, tuple[int, Tensor]] = {}
        # best bounds found so far for each refined value (every pass's bounds are valid), flat
        self.best: dict[str, Bounds] = {name: (lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1))
                                        for name, (lo, hi) in (prior or {}).items()}
        # what the last lower_bound recorded: input coefficients always, the coefficients on
        # the relaxed nodes' outputs when ``record.relu`` (branching heuristics)
        self.record = Record()
        self._cache = Cache()
        # True once ``refine_seconds`` left some rows unrefined (a backward pass costs too much here)
        self.refinement_cut = False
        # values affine in the input with exact forms: refining passes end there (compute())
        self.ends: dict[str, Form] = {}
        # seconds of the last full pass (compute()); 0 for a table taken as it is
        self.compute_seconds = 0.0
        if table is not None:
            self.table = table
            return
        self.compute()

    def tiled(self, copies: int, prior: Mapping[str, Bounds], certified: bool = True,
              dtype: torch.dtype | None = None) -> Crown:
        """A CROWN object over ``copies`` copies of this batch (copy ``c`` of box ``i`` at
        ``c * N + i``) whose table is this one's, tiled and intersected with ``prior``
        (flattened bounds ``(copies * N, size)`` of some values, valid on each copy's own
        domain), without a new interval pass: for sub-domains of these boxes (branch and bound
        children). Sound: a box's bounds and float errors hold on its sub-domains, and the
        relaxations are recomputed from the intersected bounds. No refinement state is kept.

        ``certified=False``: the copy's table is in real arithmetic (unit 0): its passes skip the
        traversal's rounding allowances (about half of a pass on a CNN), so its bounds are
        estimates, NOT sound for the float model (e.g. to rank branching candidates); ``dtype``
        (only then) runs them in another precision (float32: about twice as fast on a CPU)."""
        if dtype is not None and certified:
            raise ValueError("a certified copy keeps the table's precision")
        tgraph = self.tgraph.in_dtype(dtype or self.tgraph.place.dtype)
        cast = tgraph.place.dtype

        def tile(t: Tensor) -> Tensor:
            t = t.to(cast) if t.is_floating_point() else t
            return t.repeat(copies, *([1] * (t.dim() - 1))) if t.shape[0] == self.batch else t

        old = self.table
        bounds = {name: (tile(lo), tile(hi)) for name, (lo, hi) in old.bounds.items()}
        for name, (lo, hi) in prior.items():
            if name in bounds:
                low, high = bounds[name]
                lo, hi = lo.to(cast).reshape(low.shape), hi.to(cast).reshape(high.shape)
                bounds[name] = (torch.maximum(low, lo), torch.minimum(high, hi))
        inputs = {name: (tile(lo), tile(hi)) for name, (lo, hi) in old.input_bounds.items()}
        errors = {name: tuple(None if e is None else tile(e) for e in found) for name, found in old.errors.items()}
        unit = old.unit if certified else 0.0
        table = BoundTable(tgraph, unit, self.batch * copies, inputs, bounds, errors, {}, set(old.exact), not certified)
        return Crown(tgraph, [lo for lo, _ in inputs.values()], [hi for _, hi in inputs.values()],
                     self.config, deadline=self.deadline, table=table)

    @property
    def bounds(self) -> dict[str, Bounds]:
        """The bounds of every value (:attr:`BoundTable.bounds`)."""
        return self.table.bounds

    @property
    def errors(self) -> dict[str, tuple[Tensor | None, ...]]:
        """The float-error bound of every node (:attr:`BoundTable.errors`)."""
        return self.table.errors

    @property
    def relaxations(self) -> dict[str, LinearBounds | None]:
        """The relaxation of every relaxed node (:attr:`BoundTable.relaxations`)."""
        return self.table.relaxations

    @property
    def input_coefficients(self) -> dict[str, Tensor]:
        """The graph inputs' coefficients ``(N, R, *shape)`` in the last :meth:`lower_bound`, for
        every input (zeros for one the rows do not reach: every path to it was cut at interval
        bounds)."""
        return self.record.inputs

    def compute(self, multipliers: Multipliers | None = None) -> None:
        """(Re)computes the bounds of every value: intervals, refined by CROWN at the inputs of
        relaxed nodes (with the intermediate-row slopes of ``multipliers``), intersected with
        the best found before.

        Differentiable with respect to those slopes (alpha-CROWN optimises intermediate
        bounds through them)."""
        mult = multipliers or Multipliers()
        began = time.monotonic()
        self.table = BoundTable(self.tgraph, self.unit, self.batch, self.input_bounds, dict(self.input_bounds))
        # values whose interval bounds are already exact: the inputs, and one affine op of one input
        self.table.exact = {v.name for v in self.graph.inputs}
        method = self.config.intermediate_method
        forms = self.config.intermediate and method in (IntermediateMethod.FORWARD, IntermediateMethod.HYBRID)
        self.forms = ForwardForms(self.table, self.config.relu_mode, self.deadline) if (
            forms and ForwardForms.applicable(self.table, 8 * self.config.chunk_elements)) else None
        self.prefix = self.forms if self.forms is not None else self._prefix_forms()
        self.ends = {}
        self._note_ends([info.name for info in self.graph.inputs])  # where walked rows join the ended ones
        seconds = self.config.refine_seconds
        self._refine_until = None if seconds is None else time.monotonic() + seconds
        self._seconds_per_row = 0.0
        for index in range(len(self.graph.nodes)):
            if self.deadline is not None:
                self.deadline.check()
            self._forward_node(index, mult)
        self.compute_seconds = time.monotonic() - began

    # ---------------------------------------------------------------- forward pass
    def _forward_node(self, index: int, mult: Multipliers) -> None:
        """Bounds the node's outputs, first refining its inputs with CROWN if it is relaxed."""
        node, op = self.graph.nodes[index], self.tgraph.ops[index]
        los, his, batched = self.table.args(node)
        relaxed = self.config.intermediate and not op.is_affine(node, batched)
        backward = self.forms is None or self.config.intermediate_method is IntermediateMethod.HYBRID
        if relaxed and backward and self._refine_inputs(index, los, his, batched, mult):
            los, his, batched = self.table.args(node)
        elif relaxed and self.forms is not None:  # the forms' bounds are kept as the best found
            for name, lo, hi, is_dynamic in zip(node.inputs, los, his, batched, strict=True):
                if is_dynamic and lo is not None and hi is not None and lo.is_floating_point() \
                        and name not in self.table.exact:
                    self.best[name] = lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)
        out = op.interval(node, los, his, batched)
        errors = op.fp_error(node, los, his, batched, out, self.unit)
        self.table.errors[node.name] = errors
        dynamic = [n for n, b in zip(node.inputs, batched, strict=True) if b]
        if op.is_affine(node, batched) and len(dynamic) == 1 and dynamic[0] in self.input_bounds:
            self.table.exact.update(n for n in node.outputs if n)
        limits = op.float_range(node)
        for name, lo, hi, err in zip(node.outputs, out[0], out[1], errors, strict=False):
            if name:
                lo, hi = _widen(lo, hi, err, limits)
                best = self.best.get(name)
                if best is not None:
                    lo = torch.maximum(lo, best[0].reshape(lo.shape))
                    hi = torch.minimum(hi, best[1].reshape(hi.shape))
                self.table.bounds[name] = lo, hi
        if self.forms is not None:  # forward mode: every value's bounds also from its linear forms
            self.forms.pass_node(index)
            for name in node.outputs:
                found = self.forms.bounds(name) if name else None
                if found is not None:
                    lo, hi = self.table.bounds[name]
                    self.table.bounds[name] = torch.maximum(lo, found[0]), torch.minimum(hi, found[1])
        elif self.prefix is not None and op.is_affine(node, batched) and any(
                name in self.ends for name, b in zip(node.inputs, batched, strict=True) if b):
            self.prefix.pass_node(index)  # the prefix's forms: only from exact ones (the input's among them)
        self._note_ends(node.outputs)

    def _prefix_forms(self) -> ForwardForms | None:
        """Forward forms for the values that are affine functions of the input, when the
        boxes have at most ``config.form_end_inputs`` free positions (refining passes end at
        them, :attr:`ends`); None otherwise."""
        if not self.config.intermediate or not ForwardForms.applicable(self.table, 8 * self.config.chunk_elements) \
                or ForwardForms.free_inputs(self.table) > self.config.form_end_inputs:
            return None
        return ForwardForms(self.table, self.config.relu_mode, self.deadline)

    def _note_ends(self, names: Sequence[str]) -> None:
        """Records the values among ``names`` whose form is exact as ends of refining passes."""
        if self.prefix is None or self.prefix.n > self.config.form_end_inputs:
            return
        for name in names:
            form = self.prefix.forms.get(name) if name else None
            if form is not None and form.exact:
                self.ends[name] = form

    def _refine_inputs(self, index: int, los: list[Tensor | None], his: list[Tensor | None],
                       batched: list[bool], mult: Multipliers) -> bool:
        """CROWN bounds of the inputs of a relaxed node; True when some were refined."""
        node, op = self.graph.nodes[index], self.tgraph.ops[index]
        bounds, exact = self.table.bounds, self.table.exact
        if op.multi_relaxation is not None:
            wanted = op.multi_relaxation.refine(node, los, his, batched)
            for position, rows in wanted.items():
                source = node.inputs[position]
                if source in self.refined:  # the rows of the first pass (alpha slopes match them)
                    rows = self.refined[source][1]
                if source not in exact and rows.numel() > 0:
                    bounds[source] = self._refine(source, index, rows, mult)
            return True
        if not (sum(batched) == 1 and batched[0] and len(node.outputs) == 1):
            return False
        source = node.inputs[0]
        if source in self.refined:
            bounds[source] = self._refine(source, index, self.refined[source][1], mult)
            return True
        lo, hi = los[0], his[0]
        assert lo is not None and hi is not None
        if source in exact or self.table.relax(node, lo[:1], hi[:1], self.config.relu_mode) is None:
            return False
        if self.config.per_domain_rows and op.kink_at_zero and not mult.slopes:
            bounds[source] = self._refine_each(source, index)
        else:
            bounds[source] = self._refine(source, index, _rows_to_refine(op, lo, hi), mult)
        return True

    def _refine(self, value: str, stop: int, wanted: Tensor, mult: Multipliers) -> Bounds:
        """CROWN bounds of the flat positions ``wanted`` of ``value`` (rows ``+I`` and ``-I``),
        intersected with the current bounds and the best earlier ones; other positions keep
        theirs. The first time, the rows are ordered most unstable first and, under
        ``refine_seconds``, only those refined in time are kept (:attr:`refined`)."""
        lo, hi = self.bounds[value]
        if value not in self.refined:
            wanted = _most_unstable_first(wanted, lo, hi)
        shape = lo.shape[1:]
        size = int(lo[0].numel())
        flat_lo, flat_hi = lo.reshape(self.batch, size).clone(), hi.reshape(self.batch, size).clone()
        start, began = 0, time.monotonic()
        allowance = self._allowance(stop)
        for chunk in wanted.split(self._rows_per_pass()):
            rows = chunk.numel()
            if rows == 0:
                continue
            if allowance is not None and _overruns(began, allowance, start, rows, self._seconds_per_row):
                self.refinement_cut = True
                break
            bound = self._lower({value: self._unit_rows(chunk, tuple(shape), lo)}, stop, mult,
                                (value, start, start + rows))
            flat_lo[:, chunk] = _KeepBest.apply(bound[:, :rows], flat_lo[:, chunk], True)
            flat_hi[:, chunk] = _KeepBest.apply(-bound[:, rows:], flat_hi[:, chunk], False)
            start += rows
        if start:  # the next node's first pass is judged by this one's pace (deeper rows cost more)
            self._seconds_per_row = max(self._seconds_per_row, (time.monotonic() - began) / start)
        self.refined.setdefault(value, (stop, wanted[:start]))
        best = self.best.get(value)
        if best is not None:
            flat_lo, flat_hi = _KeepBest.apply(flat_lo, best[0], True), _KeepBest.apply(flat_hi, best[1], False)
        self.best[value] = (flat_lo.detach(), flat_hi.detach())
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)

    def _unit_rows(self, positions: Tensor, shape: tuple[int, ...], like: Tensor) -> Tensor | Windows:
        """The seed rows ``+e_p`` then ``-e_p`` for the flat ``positions`` of a value of
        ``shape``: windows on 2-D feature maps (``config.windows``), else dense ``(N, 2R, *shape)``."""
        if self.config.windows and len(shape) == 4 and shape[0] == 1:
            return Windows.unit_rows(shape, positions, self.batch, like.dtype, self._cache.windows)
        rows, size = positions.numel(), math.prod(shape)
        eye = torch.zeros(rows, size, dtype=like.dtype, device=like.device)
        eye[torch.arange(rows, device=like.device), positions] = 1.0
        return torch.cat([eye, -eye]).reshape(1, 2 * rows, *shape).expand(self.batch, -1, *shape)

    def _allowance(self, stop: int) -> float | None:
        """Seconds the refinement of the value feeding node ``stop`` may take: an equal share
        of what is left of ``refine_seconds`` among the relaxed nodes from ``stop`` on (None:
        no limit; 0 once it is spent)."""
        if self._refine_until is None:
            return None
        left = self._refine_until - time.monotonic()
        relaxed = sum(1 for node, op in zip(self.graph.nodes[stop:], self.tgraph.ops[stop:], strict=True)
                      if not op.is_affine(node, [bool(n) and n not in self.tgraph.constants for n in node.inputs]))
        return max(0.0, left) / max(1, relaxed)

    def _rows_per_pass(self) -> int:
        """Rows per refining pass: ``max_rows``, fewer where the coefficients on the graph's
        largest value would exceed ``chunk_elements`` entries (never fewer than one)."""
        widest = self.graph.largest_value_size
        return max(1, min(self.config.max_rows, self.config.chunk_elements // max(1, 2 * self.batch * widest)))

    def _refine_each(self, value: str, stop: int) -> Bounds:
        """CROWN bounds (rows ``+I`` and ``-I``) of each batch element's own unstable positions
        of ``value`` (``l < 0 < u``), intersected with the current and best earlier bounds;
        the other positions keep theirs. Not recorded in :attr:`refined` (the rows differ
        between batch elements)."""
        lo, hi = self.bounds[value]
        size = int(lo[0].numel())
        flat_lo, flat_hi = lo.reshape(self.batch, size), hi.reshape(self.batch, size)
        unstable = (flat_lo < 0) & (flat_hi > 0)
        count = unstable.sum(dim=1)
        rows = int(count.max()) if self.batch else 0
        if rows > 0:
            # each element's unstable positions first (a stable sort keeps them distinct)
            order = torch.argsort((~unstable).to(torch.int8), dim=1, stable=True)[:, :rows]
            found_lo = torch.full_like(flat_lo, -torch.inf)
            found_hi = torch.full_like(flat_hi, torch.inf)
            step = self._rows_per_pass()
            for first in range(0, rows, step):
                position = order[:, first : first + step]
                k = position.shape[1]
                valid = torch.arange(first, first + k, device=lo.device).unsqueeze(0) < count.unsqueeze(1)
                eye = torch.zeros(self.batch, k, size, dtype=lo.dtype, device=lo.device)
                eye.scatter_(2, position.unsqueeze(2), valid.unsqueeze(2).to(lo.dtype))
                seed = torch.cat([eye, -eye], dim=1).reshape(self.batch, 2 * k, *lo.shape[1:])
                bound = self._lower({value: seed}, stop, Multipliers(), (value, 0, 2 * k))
                found_lo.scatter_(1, position, torch.where(valid, bound[:, :k], -torch.inf))
                found_hi.scatter_(1, position, torch.where(valid, -bound[:, k:], torch.inf))
            flat_lo, flat_hi = torch.maximum(flat_lo, found_lo), torch.minimum(flat_hi, found_hi)
        best = self.best.get(value)
        if best is not None:
            flat_lo, flat_hi = torch.maximum(flat_lo, best[0]), torch.minimum(flat_hi, best[1])
        self.best[value] = (flat_lo.detach(), flat_hi.detach())
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)

    # ---------------------------------------------------------------- backward pass
    def _lower(self, seeds: Mapping[str, Tensor | Windows], stop: int, mult: Multipliers,
               rows_of: RowsOf = None) -> Tensor:
        """Certified lower bounds ``(N, R)`` of the rows ``sum_v <seeds[v], v>``.

        Only nodes before index ``stop`` are traversed (the seeds' producers come before it).
        ``rows_of`` names the alpha slopes to use: None for the final objective's, or
        ``(value, first, end)`` for the refined positions ``first:end`` of ``value``.
        """
        final = rows_of is None
        plan = Traversal(stop, self.config.relu_mode, _slopes(mult, rows_of), mult.betas if final else {},
                         self.config.fast_paths, create_graph=bool(mult.slopes), deadline=self.deadline,
                         ends=self.ends)  # a final pass records its input coefficients: backward ignores ends
        return backward(self.table, seeds, plan, self.record if final else None, self._cache)

    # ---------------------------------------------------------------- public
    def lower_bound(self, coefficients: Tensor, multipliers: Multipliers | None = None) -> Tensor:
        """Certified lower bounds ``(N, R)`` of ``coefficients @ y`` for the flattened output ``y``.

        ``coefficients`` is ``(R, m)`` or ``(N, R, m)`` with ``m`` the output size;
        ``multipliers`` gives the objective rows' alpha slopes and beta multipliers.

        Raises:
            ValueError: a coefficient is not representable in the bound arithmetic's dtype
                (float32 bounds): the bound would be of a different row.
        """
        c = coefficients.to(self.tgraph.place.dtype).to(self.tgraph.place.device)
        if c.dtype != torch.float64 and not torch.equal(c.to(torch.float64), coefficients.to(c.device, torch.float64)):
            raise ValueError(f"spec coefficients are not exactly representable in {c.dtype}; use float64 bounds")
        if c.dim() == 2:
            c = c.unsqueeze(0).expand(self.batch, -1, -1)
        if c.shape[1] == 0 or c.shape[2] == 0:  # no rows, or an empty output: the bound is exact
            return torch.zeros(self.batch, c.shape[1], dtype=c.dtype, device=c.device)
        seeds: dict[str, Tensor] = {}
        start = 0
        for info in self.graph.outputs:
            part = c[:, :, start : start + info.size].reshape(self.batch, c.shape[1], *info.shape)
            seeds[info.name] = seeds[info.name] + part if info.name in seeds else part
            start += info.size
        return self._lower(seeds, len(self.graph.nodes), multipliers or Multipliers())

    def output_bounds(self) -> Bounds:
        """Certified lower and upper bounds ``(N, m)`` of every flattened output."""
        m = self.graph.output_size
        eye = torch.eye(m, dtype=self.tgraph.place.dtype, device=self.tgraph.place.device)
        both = self.lower_bound(torch.cat([eye, -eye]))
        return both[:, :m], -both[:, m:]




def _shaped(inputs: Sequence[ValueInfo], lower: Sequence[Tensor], upper: Sequence[Tensor]
            ) -> tuple[list[Tensor], list[Tensor]]:
    """The boxes as ``(N, *shape)`` of their graph inputs (flattened ``(N, size)`` ones
    reshaped: every pass indexes positions by the input's shape)."""
    los, his = [], []
    for info, lo, hi in zip(inputs, lower, upper, strict=True):
        if lo.shape != hi.shape or lo.dim() == 0 or lo[0].numel() != info.size:
            raise ValueError(f"input {info.name}: boxes of shape {tuple(lo.shape)} and {tuple(hi.shape)}, "
                             f"expected (N, {', '.join(map(str, info.shape))})")
        los.append(lo.reshape(lo.shape[0], *info.shape))
        his.append(hi.reshape(hi.shape[0], *info.shape))
    return los, his


def _most_unstable_first(wanted: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``wanted`` (flat positions) ordered by ``min(-l, u)`` over the batch, largest first (the
    neurons whose relaxation is loosest); a stable order among ties."""
    flat_lo, flat_hi = lower.flatten(1)[:, wanted], upper.flatten(1)[:, wanted]
    score = torch.minimum(-flat_lo, flat_hi).amax(dim=0)
    return wanted[torch.argsort(-score, stable=True)]


def _overruns(began: float, allowance: float, done: int, rows: int, earlier: float) -> bool:
    """True when a pass of ``rows`` more rows would end past ``began + allowance`` at the
    seconds per row measured over the ``done`` rows so far, or before any, at ``earlier``
    (an earlier node's pace: rows reaching fewer nodes cost less, so this errs low)."""
    spent = time.monotonic() - began
    if allowance <= 0.0:
        return True
    return spent + (spent / done if done else earlier) * rows > allowance


def refines_every_position(tgraph: TorchGraph) -> bool:
    """Whether the graph has an elementwise relaxed op that is not ReLU-like (Sigmoid, Tanh,
    Clip, ...): CROWN's backward refinement then bounds every one of its positions, in every
    box however small (a pass per neuron; ReLU-like ops need only their unstable positions,
    which become few as boxes shrink)."""
    return any(op.relaxation is not None and op.affinity is Affinity.NONE and not op.kink_at_zero
               for op in tgraph.ops)


def _rows_to_refine(op: Op, lower: Tensor | None, upper: Tensor | None) -> Tensor:
    """Flat positions worth refining: unstable ones for ReLU-like ops, all for the others."""
    assert lower is not None and upper is not None
    flat_lo, flat_hi = lower.flatten(1), upper.flatten(1)
    if op.kink_at_zero:
        return torch.nonzero(((flat_lo < 0) & (flat_hi > 0)).any(dim=0)).flatten()
    return torch.arange(flat_lo.shape[1], device=lower.device)


def _slopes(mult: Multipliers, rows_of: RowsOf) -> dict[str, Tensor]:
    """The alpha slopes ``(N, R, *shape)`` per node for the rows being bounded."""
    if rows_of is None:
        return {name: alpha for (name, start), alpha in mult.slopes.items() if start == FINAL}
    value, first, end = rows_of
    return {name: alpha[:, :, first:end].flatten(1, 2)
            for (name, start), alpha in mult.slopes.items() if start == value}


class _KeepBest(torch.autograd.Function):
    """The better of fresh bounds and the best earlier ones (``max`` for lower bounds, ``min``
    for upper), differentiated as the fresh bounds: an optimiser keeps a gradient where the
    earlier bound is still better, or tied, instead of a zero or a halved one."""

    @staticmethod
    def forward(ctx, fresh: Tensor, best: Tensor, lower: bool) -> Tensor:
        return torch.maximum(fresh, best) if lower else torch.minimum(fresh, best)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None
