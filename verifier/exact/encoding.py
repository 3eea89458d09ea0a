"""The network as a piecewise-linear program, shared by the MILP and SMT engines.

:func:`encode` walks the graph's nodes in order. Real *variables* stand for the input elements
and for the outputs of the piecewise-linear relations that bounds cannot decide; every element
of every value is an :class:`Affine` expression of these variables plus a *band*: the true
(float) value lies within ``expression +- band``. Nothing else is a variable, so stable neurons
and chains of affine ops cost nothing.

- Affine nodes (:meth:`verifier.ops.base.Op.is_affine`, any op) compose: the dense matrix
  ``W`` and offset ``c`` of the map come from the op's own forward in float64 (vector-Jacobian
  products with the identity rows, at input 0), so no op needs code of its own here, and the
  outputs are ``W @ inputs + c``. An op whose matrix would exceed ``max_entries`` raises
  :class:`ExactUnsupported`.
- Ops with a max form (:meth:`verifier.ops.base.Op.max_form`, :mod:`verifier.ops.max_form`)
  become :class:`MaxRow` relations ``|sign * y - max_i T_i| <= err`` with affine terms
  ``T_i``: elementwise chains of maxima (the ReLU family, Abs, Clip as a max then a min; an
  inner stage gets interval bounds and no error of its own), maxima and minima of broadcast
  inputs, and window maxima (windows read off the op's forward on one-hot inputs). Terms that
  bounds show can never be the largest are dropped; when one term is left, the output is that
  term (an expression, no variable).
- Ops with step levels (:meth:`verifier.ops.base.Op.step_levels`: Sign) become
  :class:`StepRow` relations: the output element is the level of the side of 0 its input's
  float value lies on, read off the input's expression widened by its band (within the band
  of 0 every level is allowed); an element whose CROWN bounds fix the side is a constant.
- Ops with integer offsets (:meth:`verifier.ops.base.Op.integer_offsets`: Floor, Ceil, Round)
  become :class:`IntegerRow` relations: an integer within the offsets of the input's
  expression widened by its band; an element whose bounds fix the output is a constant.
- Any other op raises :class:`ExactUnsupported` naming the node and the op.

Soundness contract (what makes an infeasible program a proof for the float32 model): every
float32 execution of the model on an input of the box, extended with its values, satisfies
the program. The pieces:

1. *Float evaluation.* CROWN's ``errors[node]`` bounds how far the model's float output of a
   node lies from the exact op applied to the node's float inputs; it enters the band (affine
   nodes) or the relation's ``err`` (max relations).
2. *Bands.* A band is propagated exactly as an interval: ``|W| @ band_in + err`` through an
   affine node; a max relation takes ``err + max_i beta_i`` where ``beta_i`` is its term's band
   (``max`` moves by at most the largest move of a term); a clause row ``C y <= d`` on outputs
   ``y = E + delta`` is implied by ``C E <= d + |C| @ band`` (the engines relax their rows so).
3. *Float64 arithmetic.* Matrices, compositions and terms are computed in float64 and then
   taken as exact. Their error is added to the band: ``(2**-45 + gamma_{n+2}) * (|W| @ m +
   |c|)`` for a node of fan-in ``n`` (``m``: magnitude bound of the input expressions; 2**-45
   covers the float64 matrix of ops such as BatchNorm or AveragePool, whose real coefficients
   float64 cannot hold, with 256 float64 ulps to spare), ``2**-50 * (|a| m + |k|)`` for a term
   ``a x + k``; a pure copy or negation (an exact op, one coefficient +-1 per row) adds nothing.
   Bands are computed with a relative ``2**-30`` upward, and ``inf``/NaN stays ``inf``.
4. *Bounds.* Variables are bounded by ``table.bounds`` of their value, and term bounds (for
   pruning and big-M) come from ``table.bounds`` of the term's input widened by its band.
   CROWN derives these for the perturbed network (any error within ``errors`` at every node),
   which contains every float execution, so they cut off none; pruning compares them with a
   relative slack of ``2**-40``. Bounds that are too tight would make the program unsound: the
   tests show it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from verifier.bounds.table import BoundTable
from verifier.exact.program import (
    MAX_DENSE_ENTRIES,
    Affine,
    Encoding,
    ExactOutcome,
    ExactUnsupported,
    IntegerRow,
    MaxRow,
    StepRow,
    constant_expr,
    gather,
    stack,
    variable_expr,
)
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Node
from verifier.ops import REGISTRY
from verifier.ops.base import Op, gamma
from verifier.ops.max_form import MaxForm, MaxShape, Stage

__all__ = ["MATRIX_SLACK", "MAX_DENSE_ENTRIES", "PRUNE_SLACK", "TERM_SLACK", "UPWARD", "Affine", "Encoding",
           "ExactOutcome", "ExactUnsupported", "IntegerRow", "MaxRow", "StepRow", "encode", "gather",
           "stack"]

MATRIX_SLACK = 2.0**-45
"""Relative error allowed for the float64 matrix and offset of an affine op (point 3 above)."""
TERM_SLACK = 2.0**-50
"""Relative error of forming a max term ``a x + k`` in float64."""
PRUNE_SLACK = 2.0**-40
"""Relative slack of the float64 comparisons that prune max terms."""
UPWARD = 1.0 + 2.0**-30
"""Factor applied to every band so that its own float64 rounding is covered."""
_U64 = 2.0**-53


def encode(table: BoundTable, max_entries: int = MAX_DENSE_ENTRIES, keep: Collection[str] = ()) -> Encoding:
    """Encodes the graph of ``table`` over its single input box (see the module docstring).

    Args:
        table: the bound table (CROWN) over one box (batch size 1); its bounds and float-error bounds
            must hold for the perturbed network (any error within ``errors`` at every node).
        max_entries: largest dense matrix built for one node.
        keep: values whose expressions go to ``Encoding.values`` (e.g. to constrain them).

    Returns:
        the program; every float32 execution of the model on an input of the box satisfies it.

    Raises:
        ExactUnsupported: an op without an exact encoding, or a matrix over ``max_entries``.
    """
    if table.batch != 1:
        raise ValueError(f"the exact engines take a bound table over one box, got {table.batch}")
    encoder = _Encoder(table, max_entries)
    for position, node in enumerate(table.graph.nodes):
        encoder.node(position, node)
    enc = encoder.enc
    enc.inputs = np.concatenate([encoder.values[v.name].vars for v in table.graph.inputs])
    enc.outputs = stack([encoder.values[v.name] for v in table.graph.outputs])
    bounds = [encoder.bounds(v.name) for v in table.graph.outputs]
    enc.output_lower = np.concatenate([b[0] for b in bounds])
    enc.output_upper = np.concatenate([b[1] for b in bounds])
    enc.values = {name: encoder.values[name] for name in keep if name in encoder.values}
    return enc


class _Encoder:
    """The traversal: ``values`` maps each dynamic value to its expression."""

    def __init__(self, table: BoundTable, max_entries: int) -> None:
        self.table = table
        self.graph = table.graph
        self.max_entries = max_entries
        ops = {node.op: op for node, op in zip(table.graph.nodes, table.tgraph.ops, strict=True)}
        self.tgraph = TorchGraph(table.graph, "cpu", torch.float64, ops)  # CROWN's ops (overrides kept)
        self.enc = Encoding()
        self.values: dict[str, Affine] = {}
        self.position = 0
        for info in self.graph.inputs:
            lo, hi = self.bounds(info.name)
            var = self.enc.new_vars(lo, hi, info.name)
            self.values[info.name] = Affine(var, np.eye(var.size), np.zeros(var.size), np.zeros(var.size))

    # ---------------------------------------------------------------- helpers
    def bounds(self, value: str) -> tuple[np.ndarray, np.ndarray]:
        """CROWN's bounds of ``value``, flattened float64."""
        lo, hi = self.table.bounds[value]
        return (lo.detach().to("cpu", torch.float64).reshape(-1).numpy(),
                hi.detach().to("cpu", torch.float64).reshape(-1).numpy())

    def error(self, node: Node, position: int) -> np.ndarray:
        """The float-error bound of output ``position`` per element (0 where exact)."""
        shape = self.graph.shapes[node.outputs[position]]
        errors = self.table.errors.get(node.name)
        err = None if errors is None or position >= len(errors) else errors[position]
        if err is None:
            return np.zeros(math.prod(shape))
        flat = torch.broadcast_to(err.detach().to("cpu", torch.float64), (1, *shape)).reshape(-1).numpy()
        return np.nan_to_num(flat, nan=math.inf)

    def batched(self, node: Node) -> list[bool]:
        return [bool(name) and name not in self.tgraph.constants for name in node.inputs]

    def unsupported(self, node: Node, why: str) -> ExactUnsupported:
        return ExactUnsupported(f"node {node.name!r} (op {node.op}): {why}")

    # ---------------------------------------------------------------- dispatch
    def node(self, position: int, node: Node) -> None:
        """Encodes node number ``position`` of the graph."""
        self.position = position
        try:
            self.dispatch(node)
        except ExactUnsupported as exc:
            if node.name in str(exc):
                raise
            raise self.unsupported(node, str(exc)) from None

    def dispatch(self, node: Node) -> None:
        batched = self.batched(node)
        op = self.tgraph.ops[self.position]
        if op.is_affine(node, batched):
            self.affine(node, batched)
            return
        constants = [None if not name or dyn else self.graph.constants.get(name)
                     for name, dyn in zip(node.inputs, batched, strict=True)]
        levels, offsets = op.step_levels(node), op.integer_offsets(node)
        if levels is not None or offsets is not None:
            if not batched or not batched[0] or any(batched[1:]):
                raise self.unsupported(node, "needs one dynamic input")
            if levels is not None:
                self.step(node, levels)
            elif offsets is not None:
                self.integer(node, offsets)
            return
        form = op.max_form(node, constants)
        if form is None:
            raise self.unsupported(node, "no exact (piecewise-linear) encoding; the MILP and SMT "
                                   "engines handle affine ops and " + ", ".join(_max_form_ops()))
        if form.shape is MaxShape.ELEMENTWISE:
            self.elementwise(node, batched, form)
        elif form.shape is MaxShape.BROADCAST:
            self.variadic(node, batched, form.sign)
        else:
            self.window(node, batched, form.sign)

    # ---------------------------------------------------------------- affine
    def affine(self, node: Node, batched: list[bool]) -> None:
        """Composes the node's dense map with its inputs' expressions."""
        dynamic = [name for name, b in zip(node.inputs, batched, strict=True) if b]
        inputs = stack([self.values[name] for name in dynamic], self.max_entries)
        magnitudes = self.enc.size_of(inputs)
        exact_op = all(e is None for e in self.table.errors.get(node.name, (None,)))
        for position, out in enumerate(node.outputs):
            if not out or out not in self.graph.shapes:
                continue
            matrix, offset = self.dense(node, batched, position)
            nonzero = matrix != 0
            copies = exact_op and bool(np.all(nonzero.sum(axis=1) <= 1) and np.all(np.abs(matrix[nonzero]) == 1))
            abs_w = np.abs(matrix)
            with np.errstate(invalid="ignore"):
                bands = abs_w @ inputs.bands + self.error(node, position)
                if not copies:
                    fan_in = int(nonzero.sum(axis=1).max(initial=0))
                    slack = MATRIX_SLACK + gamma(fan_in + 2, _U64)
                    bands = bands + slack * (abs_w @ magnitudes + np.abs(offset))
            if matrix.shape[0] * inputs.vars.size > self.max_entries:
                raise self.unsupported(node, f"its expressions would have {matrix.shape[0]} x "
                                       f"{inputs.vars.size} coefficients, over the cap of {self.max_entries}")
            coefs = matrix @ inputs.coefs if inputs.vars.size else np.zeros((matrix.shape[0], 0))
            expr = Affine(inputs.vars, coefs, matrix @ inputs.consts + offset, _upward(bands))
            self.values[out] = gather(expr, np.arange(expr.size))

    def dense(self, node: Node, batched: list[bool], position: int) -> tuple[np.ndarray, np.ndarray]:
        """``(W, c)`` of output ``position``: ``out = W @ concat(flat dynamic inputs) + c``."""
        out_size = math.prod(self.graph.shapes[node.outputs[position]])
        in_sizes = [math.prod(self.graph.shapes[n]) for n, b in zip(node.inputs, batched, strict=True) if b]
        if out_size * sum(in_sizes) > self.max_entries:
            raise self.unsupported(node, f"its dense matrix would have {out_size} x {sum(in_sizes)} "
                                   f"entries, over the cap of {self.max_entries}")
        op = self.tgraph.ops[self.position]
        args, leaves = self.tgraph.leaf_args(node, batched, out_size, torch.float64, "cpu")
        with torch.enable_grad():
            result = op.forward(node, args, batched)[position]
            offset = result.detach()[0].reshape(-1).numpy().copy()
            grads: Sequence[torch.Tensor | None] = [None] * len(leaves)
            if result.requires_grad:
                eye = torch.eye(out_size, dtype=torch.float64).reshape(result.shape)
                grads = torch.autograd.grad(result, leaves, eye, allow_unused=True)
        blocks = [np.zeros((out_size, size)) if g is None else g.reshape(out_size, size).numpy()
                  for g, size in zip(grads, in_sizes, strict=True)]
        return np.concatenate(blocks, axis=1), offset

    # ---------------------------------------------------------------- steps
    def integer(self, node: Node, offsets: tuple[float, float]) -> None:
        """An elementwise rounding to integers (:meth:`verifier.ops.base.Op.integer_offsets`): an
        element whose bounds fix the output is that constant; every other one is a new variable
        (bounded by the output's bounds) tied to its input by an :class:`IntegerRow` (exact op)."""
        expr, (lo, hi) = self.values[node.inputs[0]], self.bounds(node.outputs[0])
        parts = []
        for j in range(expr.size):
            if lo[j] == hi[j]:
                parts.append(constant_expr(lo[j]))
                continue
            x = gather(expr, np.array([j]))
            band = float(x.bands[0])
            if not all(math.isfinite(v) for v in (band, lo[j], hi[j])):
                raise self.unsupported(node, f"element {j} is unbounded: no integer range for it")
            var = int(self.enc.new_vars(np.array([lo[j]]), np.array([hi[j]]), node.outputs[0], j)[0])
            self.enc.integers.append(IntegerRow(var, x.vars, x.coefs[0], float(x.consts[0]), band, offsets, node.name))
            parts.append(variable_expr(var))
        self.values[node.outputs[0]] = stack(parts, self.max_entries)

    def step(self, node: Node, levels: tuple[float, float, float]) -> None:
        """An elementwise step at 0 (:meth:`verifier.ops.base.Op.step_levels`): an element whose
        CROWN bounds keep its input on one side of 0 is that side's level; every other one is
        a new variable tied to its input's expression by a :class:`StepRow` (the op is exact:
        no float error of its own)."""
        name = node.inputs[0]
        expr, (lo, hi) = self.values[name], self.bounds(name)
        below, at, above = levels
        parts = []
        for j in range(expr.size):
            level = above if lo[j] > 0 else below if hi[j] < 0 else at if lo[j] == hi[j] == 0 else None
            if level is not None:
                parts.append(constant_expr(level))
                continue
            x = gather(expr, np.array([j]))
            band = float(x.bands[0])
            low, high = float(lo[j]) - band, float(hi[j]) + band
            if not all(math.isfinite(v) for v in (band, low, high)):
                raise self.unsupported(node, f"element {j} of its input is unbounded: no big-M constant")
            var = int(self.enc.new_vars(np.array([min(levels)]), np.array([max(levels)]), node.outputs[0], j)[0])
            self.enc.steps.append(StepRow(var, x.vars, x.coefs[0], float(x.consts[0]), band, low, high, levels,
                                          node.name))
            parts.append(variable_expr(var))
        self.values[node.outputs[0]] = stack(parts, self.max_entries)

    # ---------------------------------------------------------------- piecewise linear
    def terms_of(self, name: str, index: np.ndarray, coefs: np.ndarray, consts: np.ndarray) -> _Terms:
        """Terms ``coefs * value[index] + consts`` of a dynamic value, with its CROWN bounds."""
        lo, hi = self.bounds(name)
        return _Terms(self.values[name], lo, hi, index, coefs, consts)

    def elementwise(self, node: Node, batched: list[bool], form: MaxForm) -> None:
        """A chain of elementwise maxima on one dynamic input (constant parameters).

        An inner stage's output gets the interval bounds of its pieces and no float error (the
        op's error is the whole chain's, counted once at its last stage)."""
        if not batched or not batched[0] or any(batched[1:]):
            raise self.unsupported(node, "needs one dynamic input and constant parameters")
        name = node.inputs[0]
        shape = self.graph.shapes[name]
        size = math.prod(shape)
        every, ones, zeros = np.arange(size), np.ones(size), np.zeros(size)
        current = self.terms_of(name, every, ones, zeros)
        for number, step in enumerate(form.stages):
            sign, slopes, offsets = _flat_stage(step, shape)
            terms = [_Terms(current.expr, current.lower, current.upper, current.index, a, k)
                     for a, k in zip(slopes, offsets, strict=True)]
            if number == len(form.stages) - 1:
                current = _Terms(self.maxima(node, sign, terms), None, None, every, ones, zeros)
                break
            lo, hi = _stage_bounds(sign, terms)
            inner = self.maxima(node, sign, terms, (lo, hi, f"{node.outputs[0]}:stage{number}"))
            current = _Terms(inner, lo, hi, every, ones, zeros)
        assert current.expr is not None
        self.values[node.outputs[0]] = current.expr

    def variadic(self, node: Node, batched: list[bool], sign: float) -> None:
        """The maximum (``sign = 1``) or minimum (``-1``) of broadcast inputs, dynamic or constant."""
        shape = self.graph.shapes[node.outputs[0]]
        size = math.prod(shape)
        terms: list[_Terms] = []
        for name, dyn in zip(node.inputs, batched, strict=True):
            if not name:
                continue
            if dyn:
                positions = np.arange(math.prod(self.graph.shapes[name])).reshape(self.graph.shapes[name])
                index = np.broadcast_to(positions, shape).reshape(-1)
                terms.append(self.terms_of(name, index, np.full(size, sign), np.zeros(size)))
            else:
                const = np.asarray(self.graph.constants[name], dtype=np.float64)
                terms.append(_constant(sign * np.broadcast_to(const, shape).reshape(-1)))
        self.values[node.outputs[0]] = self.maxima(node, np.full(size, sign), terms)

    def window(self, node: Node, batched: list[bool], sign: float) -> None:
        """Window maxima (``sign = 1``) or minima (``-1``): each output's window read off the
        forward on one-hot inputs."""
        if not batched or not batched[0] or any(batched[1:]):
            raise self.unsupported(node, "needs one dynamic input")
        name = node.inputs[0]
        in_shape = self.graph.shapes[name]
        in_size, out_size = math.prod(in_shape), math.prod(self.graph.shapes[node.outputs[0]])
        if in_size * out_size > self.max_entries:
            raise self.unsupported(node, f"its window table would have {out_size} x {in_size} entries, "
                                   f"over the cap of {self.max_entries}")
        op = self.tgraph.ops[self.position]
        basis = sign * torch.eye(in_size, dtype=torch.float64).reshape(in_size, *in_shape)
        rest: list[torch.Tensor | None] = [None] * (len(node.inputs) - 1)
        with torch.no_grad():
            hits = (sign * op.forward(node, [basis, *rest], batched)[0]).reshape(in_size, out_size).numpy()
            base = op.forward(node, [torch.zeros(1, *in_shape, dtype=torch.float64), *rest], batched)[0]
        member = hits.T > 0.5
        if not (np.all((hits == 0) | (hits == 1)) and np.all(base.numpy() == 0) and member.any(axis=1).all()):
            raise self.unsupported(node, "its forward does not act as a maximum over windows")
        windows = [np.flatnonzero(row) for row in member]
        terms = []
        for slot in range(max(len(w) for w in windows)):  # a short window repeats its last element
            index = np.array([w[min(slot, len(w) - 1)] for w in windows])
            terms.append(self.terms_of(name, index, np.full(out_size, sign), np.zeros(out_size)))
        self.values[node.outputs[0]] = self.maxima(node, np.full(out_size, sign), terms)

    # ---------------------------------------------------------------- max relations
    def maxima(self, node: Node, sign: np.ndarray, terms: list[_Terms],
               inner: tuple[np.ndarray, np.ndarray, str] | None = None) -> Affine:
        """The expression of ``out`` with ``sign * out = max_i terms_i`` elementwise, plus the
        node's float error; an ``inner`` relation (bounds and label of its own) has none."""
        label = node.outputs[0]
        if inner is None:
            lo, hi = self.bounds(label)
            err = self.error(node, 0)
        else:
            lo, hi, label = inner
            err = np.zeros(len(sign))
        return stack([self.element(node, (label, i), float(sign[i]), terms, float(err[i]), (float(lo[i]), float(hi[i])))
                      for i in range(len(sign))], self.max_entries)

    def element(self, node: Node, where: tuple[str, int], sign: float, terms: list[_Terms], err: float,
                out_bounds: tuple[float, float]) -> Affine:
        """Output element ``where = (value, i)``: prunes terms that are never the largest; one
        term left makes the output that term, otherwise a new variable tied by a :class:`MaxRow`."""
        i = where[1]
        exprs, lows, highs, bands = [], [], [], []
        seen: set[tuple[int, int, float, float]] = set()
        for t in terms:
            a, k = float(t.coefs[i]), float(t.consts[i])
            key = (id(t.expr), int(t.index[i]), a, k)
            if t.expr is None or a == 0.0:
                key = (-1, -1, 0.0, k)
            if key in seen:
                continue
            seen.add(key)
            if key[0] < 0:
                exprs.append(constant_expr(k))
                lows.append(k)
                highs.append(k)
                bands.append(0.0)
                continue
            assert t.expr is not None and t.lower is not None and t.upper is not None
            j = int(t.index[i])
            x = gather(t.expr, np.array([j]))
            band = abs(a) * float(x.bands[0])
            if not (abs(a) == 1.0 and k == 0.0):
                band += TERM_SLACK * (abs(a) * float(self.enc.size_of(x)[0]) + abs(k))
            band = float(_upward(np.array([band]))[0])
            exprs.append(Affine(x.vars, a * x.coefs, a * x.consts + k, np.array([band])))
            x_lo, x_hi = float(t.lower[j]), float(t.upper[j])
            t_lo, t_hi = min(a * x_lo, a * x_hi) + k, max(a * x_lo, a * x_hi) + k
            slack = PRUNE_SLACK * (abs(t_lo) + abs(t_hi)) + band
            lows.append(_finite_or(t_lo - slack, -math.inf))
            highs.append(_finite_or(t_hi + slack, math.inf))
            bands.append(band)
        best = int(np.argmax(lows))
        keep = [t for t in range(len(exprs)) if t == best or highs[t] > lows[best]]
        total_err = float(_upward(np.array([err + max(bands[t] for t in keep)]))[0])
        if len(keep) == 1:
            term = exprs[best]
            return Affine(term.vars, sign * term.coefs, sign * term.consts, np.array([total_err]))
        var = int(self.enc.new_vars(np.array([out_bounds[0]]), np.array([out_bounds[1]]), *where)[0])
        kept = stack([exprs[t] for t in keep])
        self.enc.maxes.append(MaxRow(var, int(sign), kept.vars, kept.coefs, kept.consts,
                                     np.array([lows[t] for t in keep]), np.array([highs[t] for t in keep]),
                                     total_err, node.name))
        return variable_expr(var)


@dataclass(frozen=True)
class _Terms:
    """One term per output element: ``coefs[e] * value[index[e]] + consts[e]`` where ``value``
    has expression ``expr`` and bounds ``lower``/``upper`` (``expr`` None: the constants)."""

    expr: Affine | None
    lower: np.ndarray | None
    upper: np.ndarray | None
    index: np.ndarray
    coefs: np.ndarray
    consts: np.ndarray


def _constant(values: np.ndarray) -> _Terms:
    zeros = np.zeros(len(values))
    return _Terms(None, None, None, np.zeros(len(values), dtype=np.int64), zeros, values)


def _flat_stage(step: Stage, shape: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A stage's sign, slopes and offsets broadcast to ``shape`` and flattened: the terms of
    ``sign * y = max_i (slopes_i x + offsets_i)``."""
    def flat(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values, tuple(shape)).reshape(-1).astype(np.float64)

    return flat(step.sign), [flat(a) for a in step.slopes], [flat(k) for k in step.offsets]


def _stage_bounds(sign: np.ndarray, terms: list[_Terms]) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of ``sign * max_i terms_i`` from the bounds of the terms' input."""
    lows, highs = [], []
    for t in terms:
        assert t.lower is not None and t.upper is not None
        x_lo, x_hi = t.lower[t.index], t.upper[t.index]
        with np.errstate(invalid="ignore"):
            ends = (t.coefs * x_lo + t.consts, t.coefs * x_hi + t.consts)
        lows.append(np.where(t.coefs == 0, t.consts, np.minimum(*ends)))
        highs.append(np.where(t.coefs == 0, t.consts, np.maximum(*ends)))
    top_lo, top_hi = np.max(lows, axis=0), np.max(highs, axis=0)
    return np.where(sign > 0, top_lo, -top_hi), np.where(sign > 0, top_hi, -top_lo)


def _max_form_ops() -> list[str]:
    """The registered op types that declare a :class:`MaxForm`, step levels or integer offsets
    (for error messages)."""
    return sorted(name for name, op in REGISTRY.items()
                  if type(op).max_form is not Op.max_form or type(op).step_levels is not Op.step_levels
                  or type(op).integer_offsets is not Op.integer_offsets)


def _finite_or(value: float, replacement: float) -> float:
    return replacement if math.isnan(value) else value


def _upward(bands: np.ndarray) -> np.ndarray:
    """Bands scaled up by :data:`UPWARD` (covering their own rounding); NaN becomes ``inf``."""
    return np.nan_to_num(bands * UPWARD, nan=math.inf)
