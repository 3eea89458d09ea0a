"""CROWN: backward linear bound propagation over the general graph.

For objective rows ``A·v`` on a value ``v``, the traversal walks the graph backwards and keeps
a linear lower bound ``sum_i <A_i, x_i> + bias`` of the rows in terms of the values reached:

- an affine node (:meth:`verifier.ops.base.Op.is_affine`) passes coefficients through the
  vector-Jacobian product of its own forward, and adds ``A·f(0)`` to the bias;
- an elementwise nonlinear node with a linear relaxation ``l_s x + l_b <= f(x) <= u_s x + u_b``
  (:mod:`verifier.ops.relax`, valid on the node's input bounds) passes
  ``A+ l_s + A- u_s`` and adds ``A+ l_b + A- u_b``;
- any other node is cut: its output bounds concretise its rows (``A+ lo + A- hi``).
At the graph inputs the form is minimised over the box. Intermediate bounds: every input of a
relaxed node is itself bounded by CROWN (rows ``±I``) before the node is relaxed, starting
from interval bounds.

Floating point: the model computes each node in float32. Its float output equals the exact
op applied to the (float) inputs plus an error bounded by the op's ``fp_error``; every node
the traversal passes through therefore subtracts ``|A|·err`` from the bias, so the bound holds
for the float model. ``err`` is computed with unit ``u_model + u_float64``, which also covers
the float64 rounding of the traversal's own products; the final concretisation subtracts its
own rounding bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds.interval import _widen, model_unit
from verifier.bounds.rounding import outward, unit_roundoff
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Node
from verifier.ops.base import Op, gamma
from verifier.ops.relax import LinearBounds, relax

Bounds = tuple[Tensor, Tensor]
RowsOf = tuple[str, int, int] | None
FINAL = ""
"""The alpha key of the final objective rows (no value is named ``""``)."""


@dataclass(frozen=True)
class CrownConfig:
    """Options of CROWN.

    Attributes:
        relu_mode: lower slope of unstable ReLUs: ``adaptive`` (CROWN), ``zero`` or ``one``.
        intermediate: bound the inputs of relaxed nodes with CROWN (else intervals only).
        max_rows: rows bounded per backward pass when refining intermediate bounds.
        real_arithmetic: bound the network in exact real arithmetic, without the float-error
            terms. NOT sound for the float32 model: only for comparing with references and
            other tools that bound the real-valued network.
        fast_paths: hand-written backward rules for common affine ops (``Linear``) instead of
            the generic vector-Jacobian product (same result; tested against it).
        per_domain_rows: refine the inputs of ReLU-like nodes with each batch element's own
            unstable positions (rows padded to the largest count in the batch) instead of the
            union over the batch: cheaper for large batches of small boxes (input splitting),
            where each box has few unstable neurons. Not used while alpha slopes are set
            (their shapes follow the union rows).
    """

    relu_mode: str = "adaptive"
    intermediate: bool = True
    max_rows: int = 256
    real_arithmetic: bool = False
    fast_paths: bool = True
    per_domain_rows: bool = False


def _rowwise(t: Tensor) -> Tensor:
    """``(N, R, *shape)`` as ``(N, R, size)`` (also for 0-d values: size 1)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def _dot(a: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``sum(A+ lower + A- upper)`` over all but the first two dims; 0 * inf counts as 0."""
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    if bool(torch.isfinite(lower).all()) and bool(torch.isfinite(upper).all()):
        n = a.shape[0]
        lo = lower.expand(n, *lower.shape[1:]).reshape(n, -1, 1).to(a.dtype)
        hi = upper.expand(n, *upper.shape[1:]).reshape(n, -1, 1).to(a.dtype)
        return (torch.bmm(_rowwise(pos), lo) + torch.bmm(_rowwise(neg), hi)).squeeze(2)
    lo, hi = lower.unsqueeze(1), upper.unsqueeze(1)
    terms = torch.where(pos > 0, pos * lo, 0.0) + torch.where(neg < 0, neg * hi, 0.0)
    return _rowwise(terms).sum(dim=2)


class Crown:
    """CROWN bounds of a graph over a batch of input boxes.

    Construction computes the bounds of every value (intervals, refined by CROWN at the
    inputs of relaxed nodes); :meth:`lower_bound` then bounds arbitrary objective rows.
    """

    def __init__(self, tgraph: TorchGraph, lower: Sequence[Tensor], upper: Sequence[Tensor],
                 config: CrownConfig | None = None, prior: Mapping[str, Bounds] | None = None) -> None:
        """Bounds every value over the boxes ``[lower, upper]`` (one ``(N, *shape)`` pair per
        graph input). ``prior`` gives bounds ``(N, size)`` (flattened) of some values already
        known to hold on these boxes (e.g. a parent box's bounds in branch and bound); they
        are intersected in, which is sound whenever they are valid bounds."""
        self.tgraph, self.graph = tgraph, tgraph.graph
        self.config = config or CrownConfig()
        self.unit = 0.0 if self.config.real_arithmetic else model_unit(tgraph) + unit_roundoff(tgraph.place.dtype)
        self.batch = lower[0].shape[0]
        device, dtype = tgraph.place.device, tgraph.place.dtype
        self.input_bounds: dict[str, Bounds] = {
            info.name: outward(lo.to(device), hi.to(device), dtype)
            for info, lo, hi in zip(self.graph.inputs, lower, upper, strict=True)
        }
        self.bounds: dict[str, Bounds] = {}
        self.relaxations: dict[str, LinearBounds | None] = {}
        self.errors: dict[str, tuple[Tensor | None, ...]] = {}
        self.exact: set[str] = set()
        # alpha-CROWN: optimisable lower slopes of unstable ReLU-like neurons, keyed by
        # (node, start): start FINAL for the objective rows of lower_bound, shape (N, R, *shape);
        # start = a refined value for its intermediate rows, shape (N, 2, W, *shape) over the
        # W refined positions (+I rows, then -I rows). Any slope in the valid range is sound.
        self.alpha: dict[tuple[str, str], Tensor] = {}
        # refined value -> (index of the node it feeds, flat positions refined); fixed at the
        # first pass so that recomputing reuses the same rows (and the same alpha shapes).
        self.refined: dict[str, tuple[int, Tensor]] = {}
        # best bounds found so far for each refined value (every pass's bounds are valid)
        self.best: dict[str, Bounds] = dict(prior or {})
        # coefficients (N, R, *input_shape) of the graph inputs in the last lower_bound's linear
        # bound (for branching heuristics)
        self.input_coefficients: dict[str, Tensor] = {}
        # beta-CROWN: for a ReLU-like node with split neurons, ``beta * s`` of shape
        # (N, R, *shape) for the final objective rows (``s = +1`` for a neuron split active,
        # ``x >= 0``, ``-1`` for one split inactive, ``x <= 0``; 0 elsewhere; ``beta >= 0``). The
        # term ``-beta * s * x`` is added to the rows: it is <= 0 wherever the split constraints
        # hold, so the bound stays valid on the split domain (Lagrangian relaxation).
        self.beta: dict[str, Tensor] = {}
        # when ``record_relu``: the final rows' coefficients (N, R, *shape) on the output of each
        # relaxed single-input node, from the last lower_bound (for ReLU branching heuristics)
        self.record_relu = False
        self.relu_coefficients: dict[str, Tensor] = {}
        self._offsets: dict[str, Tensor] = {}  # f(0) of the nodes on the fast pass-through path
        self._bias_kind: dict[str, bool] = {}  # see _upper_bias_only
        self.compute()

    def compute(self) -> None:
        """(Re)computes the bounds of every value: intervals, refined by CROWN at the inputs of
        relaxed nodes with the current alpha slopes, intersected with the best found before.

        Differentiable with respect to :attr:`alpha` (alpha-CROWN optimises intermediate
        bounds through it)."""
        self.bounds = dict(self.input_bounds)
        self.relaxations.clear()
        self._bias_kind.clear()
        self.errors.clear()
        # values whose interval bounds are already exact: the inputs, and one affine op of one input
        self.exact = {v.name for v in self.graph.inputs}
        for index in range(len(self.graph.nodes)):
            self._forward_node(index)

    # ---------------------------------------------------------------- arguments
    def _args(self, node: Node) -> tuple[list[Tensor | None], list[Tensor | None], list[bool]]:
        """Lower and upper bounds of the node's arguments (constants twice) and the flags."""
        los: list[Tensor | None] = []
        his: list[Tensor | None] = []
        batched: list[bool] = []
        for name in node.inputs:
            lo: Tensor | None = None
            hi: Tensor | None = None
            if name in self.tgraph.constants:
                lo = hi = self.tgraph.constants[name]
            elif name:
                lo, hi = self.bounds[name]
            los.append(lo)
            his.append(hi)
            batched.append(bool(name) and name not in self.tgraph.constants)
        return los, his, batched

    # ---------------------------------------------------------------- forward pass
    def _forward_node(self, index: int) -> None:
        """Bounds the node's outputs, first refining its input with CROWN if it is relaxed."""
        node = self.graph.nodes[index]
        op = self.tgraph.ops[index]
        los, his, batched = self._args(node)
        relaxable = sum(batched) == 1 and batched[0] and len(node.outputs) == 1
        multi = op.multi_relaxation
        if self.config.intermediate and not op.is_affine(node, batched):
            if multi is not None:
                wanted = multi.refine(node, los, his, batched)
                for position, rows in wanted.items():
                    source = node.inputs[position]
                    if source in self.refined:  # the rows of the first pass (alpha slopes match them)
                        rows = self.refined[source][1]
                    if source not in self.exact and rows.numel() > 0:
                        self.bounds[source] = self._refine(source, index, rows)
                los, his, batched = self._args(node)
            elif relaxable:
                source = node.inputs[0]
                if source in self.refined:
                    self.bounds[source] = self._refine(source, index, self.refined[source][1])
                    los, his, batched = self._args(node)
                elif source not in self.exact and self._has_relaxation(node, los[0], his[0]):
                    if self.config.per_domain_rows and op.kink_at_zero and not self.alpha:
                        self.bounds[source] = self._refine_each(source, index)
                    else:
                        self.bounds[source] = self._refine(source, index, _rows_to_refine(op, los[0], his[0]))
                    los, his, batched = self._args(node)
        out = op.interval(node, los, his, batched)
        errors = op.fp_error(node, los, his, batched, out, self.unit)
        self.errors[node.name] = errors
        dynamic = [n for n, b in zip(node.inputs, batched, strict=True) if b]
        if op.is_affine(node, batched) and len(dynamic) == 1 and dynamic[0] in {v.name for v in self.graph.inputs}:
            self.exact.update(n for n in node.outputs if n)
        limits = op.float_range(node)
        for name, lo, hi, err in zip(node.outputs, out[0], out[1], errors, strict=False):
            if name:
                lo, hi = _widen(lo, hi, err, limits)
                best = self.best.get(name)
                if best is not None:
                    lo = torch.maximum(lo, best[0].reshape(lo.shape))
                    hi = torch.minimum(hi, best[1].reshape(hi.shape))
                self.bounds[name] = lo, hi

    def _has_relaxation(self, node: Node, lo: Tensor | None, hi: Tensor | None) -> bool:
        assert lo is not None and hi is not None
        return self._relax(node, lo[:1], hi[:1]) is not None

    def _relax(self, node: Node, lo: Tensor, hi: Tensor) -> LinearBounds | None:
        """The elementwise relaxation (``Op.relaxation``) of a node with one dynamic input."""
        op = self.tgraph.op_of[node.name]
        constants = self.tgraph.constant_args(node)
        return relax(op, node, lo, hi, self.config.relu_mode, constants)

    def _refine(self, value: str, stop: int, wanted: Tensor) -> Bounds:
        """CROWN bounds of the flat positions ``wanted`` of ``value`` (rows ``+I`` and ``-I``),
        intersected with the current bounds and the best earlier ones; other positions keep
        theirs."""
        self.refined.setdefault(value, (stop, wanted))
        lo, hi = self.bounds[value]
        shape = lo.shape[1:]
        size = int(lo[0].numel())
        flat_lo, flat_hi = lo.reshape(self.batch, size).clone(), hi.reshape(self.batch, size).clone()
        start = 0
        for chunk in wanted.split(self.config.max_rows):
            rows = chunk.numel()
            if rows == 0:
                continue
            eye = torch.zeros(rows, size, dtype=lo.dtype, device=lo.device)
            eye[torch.arange(rows, device=lo.device), chunk] = 1.0
            seed = torch.cat([eye, -eye]).reshape(1, 2 * rows, *shape).expand(self.batch, -1, *shape)
            bound = self._lower({value: seed}, stop, (value, start, start + rows))
            flat_lo[:, chunk] = torch.maximum(flat_lo[:, chunk], bound[:, :rows])
            flat_hi[:, chunk] = torch.minimum(flat_hi[:, chunk], -bound[:, rows:])
            start += rows
        best = self.best.get(value)
        if best is not None:
            flat_lo, flat_hi = torch.maximum(flat_lo, best[0]), torch.minimum(flat_hi, best[1])
        self.best[value] = (flat_lo.detach(), flat_hi.detach())
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)

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
            position = torch.argsort((~unstable).to(torch.int8), dim=1, stable=True)[:, :rows]
            valid = torch.arange(rows, device=lo.device).unsqueeze(0) < count.unsqueeze(1)
            eye = torch.zeros(self.batch, rows, size, dtype=lo.dtype, device=lo.device)
            eye.scatter_(2, position.unsqueeze(2), valid.unsqueeze(2).to(lo.dtype))
            seed = torch.cat([eye, -eye], dim=1).reshape(self.batch, 2 * rows, *lo.shape[1:])
            bound = self._lower({value: seed}, stop, (value, 0, 2 * rows))
            found_lo = torch.where(valid, bound[:, :rows], -torch.inf)
            found_hi = torch.where(valid, -bound[:, rows:], torch.inf)
            flat_lo = torch.maximum(flat_lo, torch.full_like(flat_lo, -torch.inf).scatter(1, position, found_lo))
            flat_hi = torch.minimum(flat_hi, torch.full_like(flat_hi, torch.inf).scatter(1, position, found_hi))
        best = self.best.get(value)
        if best is not None:
            flat_lo, flat_hi = torch.maximum(flat_lo, best[0]), torch.minimum(flat_hi, best[1])
        self.best[value] = (flat_lo.detach(), flat_hi.detach())
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)

    # ---------------------------------------------------------------- backward pass
    def _lower(self, seeds: dict[str, Tensor], stop: int, rows_of: RowsOf = None) -> Tensor:
        """Certified lower bounds ``(N, R)`` of the rows ``sum_v <seeds[v], v>``.

        Only nodes before index ``stop`` are traversed (the seeds' producers come before it).
        ``rows_of`` names the alpha slopes to use: None for the final objective's, or
        ``(value, first, end)`` for the refined positions ``first:end`` of ``value``.
        """
        pending = dict(seeds)
        rows = next(iter(seeds.values())).shape[1]
        bias = torch.zeros(self.batch, rows, dtype=self.tgraph.place.dtype, device=self.tgraph.place.device)
        for index in range(stop - 1, -1, -1):
            node = self.graph.nodes[index]
            coeffs = [pending.pop(name, None) if name else None for name in node.outputs]
            if all(c is None for c in coeffs):
                continue
            bias = bias + self._step(index, node, coeffs, pending, rows_of)
            if rows_of is None and node.name in self.beta:
                _accumulate(pending, node.inputs[0], -self.beta[node.name].to(bias.dtype))
        if rows_of is None:
            self.input_coefficients = {name: pending[name] for name in self.input_bounds if name in pending}
        return self._concretise(pending, bias)

    def _step(self, index: int, node: Node, coeffs: list[Tensor | None], pending: dict[str, Tensor],
              rows_of: RowsOf = None) -> Tensor:
        """Moves the coefficients on the node's outputs to its inputs; returns the bias added."""
        los, his, batched = self._args(node)
        if self.tgraph.ops[index].is_affine(node, batched):
            return self._fp_term(node, coeffs) + self._affine(index, node, coeffs, pending, batched)
        multi = self.tgraph.ops[index].multi_relaxation
        if multi is not None and coeffs[0] is not None and all(c is None for c in coeffs[1:]):
            moved = multi.backward(node, coeffs[0], los, his, batched)
            if moved is not None:
                for position, moved_coeff in moved.coefficients.items():
                    _accumulate(pending, node.inputs[position], moved_coeff)
                return self._fp_term(node, coeffs) + moved.bias
        relaxation = self._relaxation(node, los, his, batched)
        if relaxation is not None and coeffs[0] is not None:
            a = coeffs[0]
            lower_slope = relaxation.lower_slope.unsqueeze(1)
            alpha = self._alpha(node.name, rows_of)
            if alpha is not None:
                lo, hi = los[0], his[0]
                assert lo is not None and hi is not None
                unstable = ((lo < 0) & (hi > 0)).unsqueeze(1)
                lower_slope = torch.where(unstable, alpha, lower_slope)
            slope = a * torch.where(a > 0, lower_slope, relaxation.upper_slope.unsqueeze(1))
            if rows_of is None and self.record_relu:
                self.relu_coefficients[node.name] = a
            _accumulate(pending, node.inputs[0], slope)
            if self._upper_bias_only(node.name, relaxation):  # A+ · 0 adds nothing: one product
                n = a.shape[0]
                upper_bias = relaxation.upper_bias.expand(n, *relaxation.upper_bias.shape[1:]).reshape(n, -1, 1)
                bias = torch.bmm(_rowwise(a.clamp(max=0)), upper_bias.to(a.dtype)).squeeze(2)
                return self._fp_term(node, coeffs) + bias
            return self._fp_term(node, coeffs) + _dot(a, relaxation.lower_bias, relaxation.upper_bias)
        first = next(c for c in coeffs if c is not None)
        total = torch.zeros(first.shape[:2], dtype=first.dtype, device=first.device)
        for name, coeff in zip(node.outputs, coeffs, strict=False):
            if coeff is not None:
                out_lo, out_hi = self.bounds[name]
                total = total + _dot(coeff, out_lo, out_hi)
        return total

    def _alpha(self, name: str, rows_of: RowsOf) -> Tensor | None:
        """The alpha slopes ``(N, R, *shape)`` of node ``name`` for the rows being bounded."""
        if rows_of is None:
            return self.alpha.get((name, FINAL))
        value, first, end = rows_of
        alpha = self.alpha.get((name, value))
        if alpha is None:
            return None
        return alpha[:, :, first:end].flatten(1, 2)

    def _relaxation(self, node: Node, los: list[Tensor | None], his: list[Tensor | None],
                    batched: list[bool]) -> LinearBounds | None:
        if not (sum(batched) == 1 and batched[0] and len(node.outputs) == 1):
            return None
        if node.name not in self.relaxations:
            lo, hi = los[0], his[0]
            assert lo is not None and hi is not None
            self.relaxations[node.name] = self._relax(node, lo, hi)
        return self.relaxations[node.name]

    def _upper_bias_only(self, name: str, relaxation: LinearBounds) -> bool:
        """True when the node's relaxation has a zero lower bias and a finite upper bias (e.g.
        ReLU): its bias term is then ``A- · upper_bias`` alone (cached per relaxation)."""
        if name not in self._bias_kind:
            self._bias_kind[name] = (not bool(relaxation.lower_bias.any())
                                     and bool(torch.isfinite(relaxation.upper_bias).all()))
        return self._bias_kind[name]

    def _fp_term(self, node: Node, coeffs: list[Tensor | None]) -> Tensor:
        """``-sum |A|·err`` over the node's outputs: the float evaluation error of the node."""
        errors = self.errors[node.name]
        total: Tensor | float = 0.0
        for a, err in zip(coeffs, errors, strict=False):
            if a is None or err is None:
                continue
            e = torch.broadcast_to(err, (a.shape[0], *a.shape[2:])).reshape(a.shape[0], -1, 1).to(a.dtype)
            total = total + torch.bmm(_rowwise(a.abs()), e).squeeze(2)
        if isinstance(total, float):
            a0 = next(c for c in coeffs if c is not None)
            return torch.zeros(a0.shape[:2], dtype=a0.dtype, device=a0.device)
        return -torch.nan_to_num(total, nan=torch.inf)

    def _affine(self, index: int, node: Node, coeffs: list[Tensor | None], pending: dict[str, Tensor],
                batched: list[bool]) -> Tensor:
        """Vector-Jacobian product through an affine node; returns ``A·f(0)``."""
        op = self.tgraph.ops[index]
        a0 = next(c for c in coeffs if c is not None)
        if self.config.fast_paths and coeffs[0] is not None and sum(batched) == 1 and len(node.outputs) == 1:
            fast = self._fast_affine(index, node, coeffs[0], pending, batched)
            if fast is not None:
                return fast
        n, r = a0.shape[:2]
        args, leaves = self.tgraph.leaf_args(node, batched, n * r, a0.dtype, a0.device)
        with torch.enable_grad():
            outs = op.forward(node, args, batched)
            # outputs that do not depend on the inputs (e.g. Dropout's mask) only add A·f(0)
            pairs = [(o, a.reshape(n * r, *o.shape[1:])) for o, a in zip(outs, coeffs, strict=False)
                     if a is not None and o.requires_grad]
            grads: tuple[Tensor | None, ...] = (None,) * len(leaves)
            if pairs:
                grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True,
                                            create_graph=bool(self.alpha))
        dyn_names = [name for name, is_dyn in zip(node.inputs, batched, strict=True) if name and is_dyn]
        for name, grad in zip(dyn_names, grads, strict=True):
            if grad is not None:
                _accumulate(pending, name, grad.reshape(n, r, *grad.shape[1:]))
        offset = torch.zeros((n, r), dtype=a0.dtype, device=a0.device)
        for out, a in zip(outs, coeffs, strict=False):
            if a is not None:
                const = out.detach()[:1].unsqueeze(1)
                offset = offset + _rowwise(a * const).sum(dim=2)
        return offset

    def _fast_affine(self, index: int, node: Node, a: Tensor, pending: dict[str, Tensor],
                     batched: list[bool]) -> Tensor | None:
        """The op's own transpose rule, or a pass-through (:meth:`Op.pass_through_sign`) when the
        shapes agree; returns ``A·f(0)``, or None when neither applies."""
        op = self.tgraph.ops[index]
        if batched[0]:
            constants = self.tgraph.constant_args(node)
            moved = op.transpose(node, a, constants)
            if moved is not None:
                _accumulate(pending, node.inputs[0], moved[0])
                return moved[1]
        position = batched.index(True)
        sign = op.pass_through_sign(node, position)
        if sign is None or self.graph.shapes[node.outputs[0]] != self._dynamic_shape(node, batched):
            return None
        return self._pass_through(index, node, a, pending, batched, sign)

    def _dynamic_shape(self, node: Node, batched: list[bool]) -> tuple[int, ...]:
        name = next(n for n, b in zip(node.inputs, batched, strict=True) if b)
        return tuple(self.graph.shapes[name])

    def _pass_through(self, index: int, node: Node, a: Tensor, pending: dict[str, Tensor],
                      batched: list[bool], sign: float) -> Tensor:
        """Fast path for reshapes and for adding/subtracting a constant that does not broadcast
        the dynamic input: the coefficients pass (negated for ``c - x``) with their input's
        shape; the offset is ``A·f(0)``."""
        position = batched.index(True)
        name = node.inputs[position]
        _accumulate(pending, name, (sign * a).reshape(*a.shape[:2], *self.graph.shapes[name]))
        if self.tgraph.ops[index].copies_input:
            return torch.zeros(a.shape[:2], dtype=a.dtype, device=a.device)
        if node.name not in self._offsets:
            args: list[Tensor | None] = [
                None if not n else (torch.zeros((1, *self.graph.shapes[n]), dtype=a.dtype, device=a.device)
                                    if b else self.tgraph.constants[n])
                for n, b in zip(node.inputs, batched, strict=True)
            ]
            with torch.no_grad():
                self._offsets[node.name] = self.tgraph.ops[index].forward(node, args, batched)[0].to(a.dtype)
        offset = self._offsets[node.name].reshape(1, 1, -1).expand(a.shape[0], 1, -1)
        return torch.bmm(_rowwise(a), offset.transpose(1, 2)).squeeze(2)

    def _concretise(self, pending: dict[str, Tensor], bias: Tensor) -> Tensor:
        """Minimises the linear form over the input boxes, minus a float64 rounding margin."""
        total = bias
        scale = bias.abs()
        terms = 0
        for info in self.graph.inputs:
            a = pending.get(info.name)
            if a is None:
                continue
            lo, hi = self.bounds[info.name]
            total = total + _dot(a, lo, hi)
            mag = torch.maximum(lo.abs(), hi.abs())
            scale = scale + _rowwise(a.abs() * mag.unsqueeze(1)).sum(dim=2)
            terms += info.size
        margin = gamma(terms + 2, unit_roundoff(torch.float64)) * scale
        return torch.nan_to_num(total - margin, nan=-torch.inf)

    # ---------------------------------------------------------------- public
    def lower_bound(self, coefficients: Tensor) -> Tensor:
        """Certified lower bounds ``(N, R)`` of ``coefficients @ y`` for the flattened output ``y``.

        ``coefficients`` is ``(R, m)`` or ``(N, R, m)`` with ``m`` the output size.

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
        return self._lower(seeds, len(self.graph.nodes))

    def output_bounds(self) -> Bounds:
        """Certified lower and upper bounds ``(N, m)`` of every flattened output."""
        m = self.graph.output_size
        eye = torch.eye(m, dtype=self.tgraph.place.dtype, device=self.tgraph.place.device)
        both = self.lower_bound(torch.cat([eye, -eye]))
        return both[:, :m], -both[:, m:]




def _rows_to_refine(op: Op, lower: Tensor | None, upper: Tensor | None) -> Tensor:
    """Flat positions worth refining: unstable ones for ReLU-like ops, all for the others."""
    assert lower is not None and upper is not None
    flat_lo, flat_hi = lower.flatten(1), upper.flatten(1)
    if op.kink_at_zero:
        return torch.nonzero(((flat_lo < 0) & (flat_hi > 0)).any(dim=0)).flatten()
    return torch.arange(flat_lo.shape[1], device=lower.device)


def _accumulate(pending: dict[str, Tensor], name: str, value: Tensor) -> None:
    pending[name] = pending[name] + value if name in pending else value
