"""Products of operands: ``MatMul``, ``Gemm`` and ``Einsum``.

The three are multilinear in their operands: with one dynamic operand they are affine, with two
they use the centre/radius product rule (Rump): for ``f`` bilinear with all product
coefficients +1 (matrix products, einsum),
``|f(A, B) - f(Ac, Bc)| <= f(|Ac|, Br) + f(Ar, |Bc|) + f(Ar, Br)`` elementwise.

Float error model: as in :mod:`verifier.ops.linear`, a sum of ``n`` products passed through
``s`` further roundings is off by at most ``gamma(n + s) * (sum of |products| + |additive
terms|)`` (Higham, Lemma 3.4 and eq. 3.5).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Affinity, Args, Flags, Op, Pair, gamma, magnitude, register
from verifier.ops.linear import fp_stages, optional_arg

Product = Callable[[list[Tensor], bool], Tensor]


def multilinear_interval(
    node: Node, prod: Product, lower: Args, upper: Args, batched: Flags
) -> tuple[Tensor, Tensor]:
    """Sound bounds of a multilinear ``prod`` with non-negative product coefficients.

    ``prod(args, absolute)`` evaluates the op on the operands (``absolute=True`` asks for the
    coefficient magnitudes, e.g. ``|alpha|``; the caller passes non-negative operands then).
    One dynamic operand: centre/radius. Two: Rump's product rule. More: :class:`ModelError`.
    """
    dyn = [i for i, b in enumerate(batched) if b]
    lows = [t for t in lower if t is not None]
    if len(lows) != len(lower):
        raise ModelError(f"{node.op} node {node.name!r}: missing operand")
    if not dyn:
        value = prod(lows, False)
        return value, value
    centre = [(lo + hi) / 2 if b else lo for lo, hi, b in zip(lows, upper, batched, strict=True)]  # type: ignore[operator]
    radius = [(hi - lo) / 2 if b else lo for lo, hi, b in zip(lows, upper, batched, strict=True)]  # type: ignore[operator]
    mid = prod(centre, False)
    absolute_c = [c.abs() for c in centre]
    if len(dyn) == 1:
        i = dyn[0]
        rad = prod([radius[i] if k == i else a for k, a in enumerate(absolute_c)], True)
    elif len(dyn) == 2:
        i, j = dyn
        pick = lambda si, sj: [  # noqa: E731
            si if k == i else sj if k == j else a for k, a in enumerate(absolute_c)
        ]
        rad = (
            prod(pick(absolute_c[i], radius[j]), True)
            + prod(pick(radius[i], absolute_c[j]), True)
            + prod(pick(radius[i], radius[j]), True)
        )
    else:
        raise ModelError(
            f"{node.op} node {node.name!r}: products of more than two dynamic operands are unsupported"
        )
    return mid - rad, mid + rad


def operand_magnitudes(lower: Args, upper: Args, batched: Flags) -> list[Tensor]:
    """``max(|lo|, |hi|)`` for dynamic operands and ``|c|`` for constants."""
    out: list[Tensor] = []
    for lo, hi, b in zip(lower, upper, batched, strict=True):
        assert lo is not None and hi is not None
        out.append(magnitude(lo, hi) if b else lo.abs())
    return out


def common_dtype(a: Tensor, b: Tensor, fa: bool, fb: bool) -> tuple[Tensor, Tensor]:
    """Casts two operands to one dtype: a dynamic float operand's dtype wins over a constant's."""
    if a.dtype == b.dtype:
        return a, b
    if a.is_floating_point() and (not b.is_floating_point() or (fa and not fb)):
        return a, b.to(a.dtype)
    if b.is_floating_point() and (not a.is_floating_point() or (fb and not fa)):
        return a.to(b.dtype), b
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _lift(t: Tensor, batched: bool, rank: int) -> Tensor:
    """Pads the static shape of ``t`` with leading ones to ``rank``; the result is batched."""
    if batched:
        return t.reshape(t.shape[0], *([1] * (rank - t.dim() + 1)), *t.shape[1:])
    return t.reshape(*([1] * (rank + 1 - t.dim())), *t.shape)


def batched_matmul(a: Tensor, b: Tensor, fa: bool, fb: bool) -> Tensor:
    """numpy ``matmul`` of two ONNX values with the batch in front; the result is batched.

    1-D operands are promoted (``(K,)`` -> ``(1, K)`` on the left, ``(K, 1)`` on the right) and
    the promoted axis is dropped again, exactly as numpy does.
    """
    ra, rb = a.dim() - fa, b.dim() - fb
    if ra == 1:
        a = a.unsqueeze(-2)
    if rb == 1:
        b = b.unsqueeze(-1)
    a, b = common_dtype(a, b, fa, fb)
    top = max(a.dim() - fa, b.dim() - fb)
    a, b = _lift(a, fa, top), _lift(b, fb, top)
    y = torch.matmul(a, b)
    if rb == 1:
        y = y.squeeze(-1)
    if ra == 1:
        y = y.squeeze(-1 if rb == 1 else -2)
    return y


@register("MatMul")
class MatMul(Op):
    """numpy-semantics matrix product (1-D promotion, broadcast batch dims).

    Affine when one operand is constant; with both dynamic, Rump's interval product rule.
    Float error: ``gamma(K + fp_stages) * (|A| |B|)`` with ``fp_stages`` default 1.
    """

    proof_checked = True

    affinity = Affinity.ONE_DYNAMIC

    def _prod(self, batched: Flags) -> Product:
        def prod(ops: list[Tensor], absolute: bool) -> Tensor:
            return batched_matmul(ops[0], ops[1], batched[0], batched[1])

        return prod

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = args[0], args[1]
        if a is None or b is None:
            raise ModelError(f"MatMul node {node.name!r}: missing operand")
        return (batched_matmul(a, b, batched[0], batched[1]),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = multilinear_interval(node, self._prod(batched), lower[:2], upper[:2], batched[:2])
        return (lo,), (hi,)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = operand_magnitudes(lower[:2], upper[:2], batched[:2])
        k = int(mags[0].shape[-1])
        return (gamma(k + fp_stages(node, 1), unit) * self._prod(batched)(mags, True),)


@register("Gemm")
class Gemm(Op):
    """``Y = alpha * A' B' + beta * C`` with ``A' = A^T`` if ``transA`` (same for B).

    A and B may each be constant or dynamic (bilinear rule when both are); C is optional,
    unidirectionally broadcast to ``(M, N)``, constant or dynamic (monotone in C with the sign of
    beta). Float error: ``gamma(K + 3) * (|alpha| |A'| |B'| + |beta C|)`` (product, alpha scaling,
    beta scaling, addition).
    """

    proof_checked = True

    affinity = Affinity.ONE_DYNAMIC

    def _prod(self, node: Node, batched: Flags) -> Product:
        alpha = float(node.attr("alpha", 1.0))

        def prod(ops: list[Tensor], absolute: bool) -> Tensor:
            a, b = ops
            a = a.transpose(-1, -2) if node.attr("transA", 0) else a
            b = b.transpose(-1, -2) if node.attr("transB", 0) else b
            y = batched_matmul(a, b, batched[0], batched[1])
            return y * (abs(alpha) if absolute else alpha)

        return prod

    def _c_term(self, node: Node, c: Tensor | None, fc: bool) -> Tensor | float:
        if c is None:
            return 0.0
        beta = float(node.attr("beta", 1.0))
        if fc:
            c = c.reshape(c.shape[0], *([1] * (3 - c.dim())), *c.shape[1:])
        return beta * c

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = args[0], args[1]
        if a is None or b is None:
            raise ModelError(f"Gemm node {node.name!r}: missing operand")
        y = self._prod(node, batched)([a, b], False)
        c = optional_arg(args, 2)
        return (y + self._c_term(node, c, len(batched) > 2 and batched[2]),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = multilinear_interval(
            node, self._prod(node, batched), lower[:2], upper[:2], batched[:2]
        )
        c_lo, c_hi = optional_arg(lower, 2), optional_arg(upper, 2)
        fc = len(batched) > 2 and batched[2]
        if float(node.attr("beta", 1.0)) < 0:
            c_lo, c_hi = c_hi, c_lo
        return (lo + self._c_term(node, c_lo, fc),), (hi + self._c_term(node, c_hi, fc),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = operand_magnitudes(lower[:2], upper[:2], batched[:2])
        total = self._prod(node, batched)(mags, True)
        c_lo, c_hi = optional_arg(lower, 2), optional_arg(upper, 2)
        if c_lo is not None and c_hi is not None:
            fc = len(batched) > 2 and batched[2]
            c_term = self._c_term(node, magnitude(c_lo, c_hi), fc)
            total = total + abs(c_term) if isinstance(c_term, float) else total + c_term.abs()
        a = mags[0]
        k = int(a.shape[-2] if node.attr("transA", 0) else a.shape[-1])
        return (gamma(k + fp_stages(node, 3), unit) * total,)


def _einsum_parts(node: Node, count: int) -> tuple[list[str], str]:
    """Splits the Einsum equation into operand terms and the (explicit or implicit) output."""
    equation = str(node.attrs["equation"]).replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != count:
        raise ModelError(
            f"Einsum node {node.name!r}: equation {equation!r} does not match {count} inputs"
        )
    if not arrow:
        letters = [c for c in lhs if c.isalpha()]
        single = sorted(c for c in set(letters) if letters.count(c) == 1)
        rhs = ("..." if "..." in lhs else "") + "".join(single)
    return terms, rhs


def _einsum_equation(node: Node, batched: Flags) -> str:
    """Rewrites the Einsum equation so every batched operand and the output gain a batch letter."""
    terms, rhs = _einsum_parts(node, len(batched))
    used = "".join(terms) + rhs
    free = [c for c in string.ascii_letters if c not in used]
    if not free:
        raise ModelError(f"Einsum node {node.name!r}: no spare subscript letter for the batch")
    z = free[0]
    new_terms = [z + t if b else t for t, b in zip(terms, batched, strict=True)]
    return ",".join(new_terms) + "->" + z + rhs


def _einsum_summands(node: Node, shapes: Sequence[Sequence[int]]) -> int:
    """Number of products summed into one output element (product of contracted sizes)."""
    terms, rhs = _einsum_parts(node, len(shapes))
    sizes: dict[str, int] = {}
    ellipsis: list[int] = []
    for term, shape in zip(terms, shapes, strict=True):
        named = term.replace("...", "")
        lead = len(shape) - len(named)
        if "..." in term:
            dims = list(shape[term.index("...") : term.index("...") + lead])
            width = max(len(ellipsis), len(dims))
            ellipsis = [1] * (width - len(ellipsis)) + ellipsis
            dims = [1] * (width - len(dims)) + dims
            ellipsis = [max(e, d) for e, d in zip(ellipsis, dims, strict=True)]
            shape = list(shape[: term.index("...")]) + list(shape[term.index("...") + lead :])
        for letter, size in zip(named, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    count = 1
    for letter, size in sizes.items():
        if letter not in rhs:
            count *= size
    if "..." not in rhs:
        for size in ellipsis:
            count *= size
    return count


@register("Einsum")
class Einsum(Op):
    """``Einsum`` with at most two dynamic operands (affine with one, Rump's rule with two).

    Float error: ``gamma(n + k) * einsum(|operands|)`` with ``n`` the number of summed terms per
    output (product of the contracted dimensions) and ``k`` the number of operands.
    """

    affinity = Affinity.ONE_DYNAMIC

    def _prod(self, node: Node, batched: Flags) -> Product:
        def prod(ops: list[Tensor], absolute: bool) -> Tensor:
            y = torch.einsum(_einsum_equation(node, batched), *ops)
            return y if any(batched) else y.unsqueeze(0)

        return prod

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        ops = [a for a in args if a is not None]
        if len(ops) != len(args):
            raise ModelError(f"Einsum node {node.name!r}: missing operand")
        dtype = next((t.dtype for t, b in zip(ops, batched, strict=True) if b), ops[0].dtype)
        ops = [t.to(dtype) for t in ops]
        return (self._prod(node, batched)(ops, False),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = multilinear_interval(node, self._prod(node, batched), lower, upper, batched)
        return (lo,), (hi,)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = operand_magnitudes(lower, upper, batched)
        total = self._prod(node, batched)(mags, True)
        shapes = [t.shape[1:] if b else t.shape for t, b in zip(mags, batched, strict=True)]
        return (gamma(_einsum_summands(node, shapes) + len(mags), unit) * total,)
