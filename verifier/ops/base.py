"""The operator registry and the base classes every op family derives from.

An op class holds only math: a batched concrete ``forward``, a sound ``interval`` rule and a
bound on its floating-point evaluation error (``fp_error``). Ops are stateless singletons
looked up by ONNX op type in :data:`REGISTRY`.

Tensor conventions (see :mod:`verifier.ir`): a *dynamic* argument has shape
``(B, *static_shape)``; a *constant* argument has its own shape and no batch dimension.
``batched[i]`` tells which is which. ``None`` stands for an omitted optional input.
Constant inputs that must be known at load time (Reshape's ``shape``, Slice's ``starts``...)
are listed in :attr:`Op.static_inputs`; the loader moves them into node attributes, so the op
never sees them as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from verifier.ir import Node

if TYPE_CHECKING:
    import numpy as np

    from verifier.ops.local_map import LocalMap
    from verifier.ops.max_form import MaxForm
    from verifier.ops.multi_relax import MultiRule
    from verifier.ops.relax import Relaxation

Args = Sequence[Tensor | None]
Flags = Sequence[bool]
Pair = tuple[tuple[Tensor, ...], tuple[Tensor, ...]]

REGISTRY: dict[str, Op] = {}


def register(*op_types: str) -> Callable[[type[Op]], type[Op]]:
    """Class decorator: registers one instance of the class under each ONNX op type."""

    def wrap(cls: type[Op]) -> type[Op]:
        for op_type in op_types:
            if op_type in REGISTRY:
                raise RuntimeError(f"op type {op_type} registered twice")
            REGISTRY[op_type] = cls()
        return cls

    return wrap


def lookup(op_type: str) -> Op:
    """Returns the registered op for ``op_type``; raises KeyError naming it when missing."""
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise KeyError(f"no op registered for ONNX op type {op_type!r}") from None


class Affinity(Enum):
    """How an op's outputs depend on its dynamic inputs, the constant inputs fixed."""

    NONE = "none"
    """Not affine (or only in special cases the op states by overriding :meth:`Op.is_affine`)."""
    JOINT = "joint"
    """``f(x_1, ..., x_k) = L(x_1, ..., x_k) + c`` in all dynamic inputs jointly: linear maps,
    selections, reshapes, sums."""
    ONE_DYNAMIC = "one dynamic"
    """Multilinear (products): affine when exactly one operand is dynamic."""


class Op:
    """Base class of every operator.

    Class attributes:
        static_inputs: input index -> attribute name, for inputs that must be constant and are
            moved into the node's attributes by the loader (they then disappear from
            ``node.inputs``; inputs after them keep their relative order).
        exact: True when the float evaluation of the op incurs no rounding (selections,
            reshapes, max, ReLU...), so :meth:`fp_error` is zero.
        affinity: how the outputs depend on the dynamic inputs (:class:`Affinity`); bound
            methods pass coefficients through affine nodes with the vector-Jacobian product of
            :meth:`forward` and the exact engines compose their dense maps, so an affine op
            needs no rule of its own beyond this trait.
        relaxation: the linear relaxation of a unary elementwise op (:mod:`verifier.ops.relax`:
            lines valid on every box of the dynamic input); None: bound methods cut the node
            at its interval bounds.
        multi_relaxation: the relaxation of an op with several dynamic inputs or windows
            (:mod:`verifier.ops.multi_relax`: moves backward coefficients to the inputs); None:
            cut at interval bounds.
        copies_input: each output element is an element of the dynamic input, in the same flat
            order (reshapes, Identity, Dropout's output): bound methods pass coefficients
            through unchanged (reshaped to the input's shape when the element counts agree).
        kink_at_zero: the op is linear on each side of 0 (the ReLU family), so only positions
            whose input box contains 0 in its interior need tighter input bounds before the op
            is relaxed; the others are exact.
        boolean_output: the outputs are Booleans (comparisons, logic): a Cast of them to a
            float type converts (bool tensors to 0.0/1.0) rather than passing through.
        proof_checked: the independent checker ``verify-check`` reads the op (within its
            restrictions: constant weights, a chain; see the README, "Checking an unsat
            answer"), so a certificate of a model made of such ops can be checked; a model
            with any other op gets its regions written as uncertified.
        internal: our own op, introduced by graph simplification (Linear, Power): never
            accepted from an ONNX file nor listed among the supported ONNX operators.
    """

    static_inputs: ClassVar[dict[int, str]] = {}
    exact: ClassVar[bool] = False
    boolean_output: ClassVar[bool] = False
    internal: ClassVar[bool] = False
    proof_checked: ClassVar[bool] = False
    affinity: ClassVar[Affinity] = Affinity.NONE
    kink_at_zero: ClassVar[bool] = False
    copies_input: ClassVar[bool] = False
    relaxation: ClassVar[Relaxation | None] = None
    multi_relaxation: ClassVar[MultiRule | None] = None

    def pass_through_sign(self, node: Node, position: int) -> float | None:
        """``s`` when the output is ``s * x + c`` elementwise in the dynamic input ``x`` at
        ``position`` (same shape and element order, ``c`` from the constants alone); None when
        the op is not of this form. Bound methods then pass ``s * A`` on (a fast path)."""
        return 1.0 if self.copies_input else None

    def transpose(self, node: Node, rows: Tensor, constants: Args) -> tuple[Tensor, Tensor] | None:
        """A fast vector-Jacobian product for an affine node whose first input is its only
        dynamic one: for rows ``A`` ``(N, R, *out_shape)``, returns ``A L`` (coefficients on
        the input, ``(N, R, *in_shape)``) and ``A f(0)`` ``(N, R)``; ``constants`` holds the
        constant inputs (None at dynamic or omitted positions). None: use the generic
        vector-Jacobian product of :meth:`forward` (the result must be equal up to rounding)."""
        return None

    def local_map(self, node: Node, constants: Args, in_shape: Sequence[int]) -> LocalMap | None:
        """For an affine node whose first input ``x`` (shape ``in_shape``, ``(1, C, H, W)``) is
        its only dynamic one: its linear part as a local map of 2-D feature maps
        (:mod:`verifier.ops.local_map`, whose contract it must meet), so that bound methods can
        keep coefficients as small windows; ``constants`` as in :meth:`transpose`. None: not
        such a map (bound methods use dense coefficients through it)."""
        return None

    def absolute_linear(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, int] | None:
        """For an affine node with one dynamic input ``v`` (given in ``args``, batched):
        ``|L| v``, with ``L`` the linear part of :meth:`forward` (``f(v) = L v + f(0)``), and
        the most operations one output element of :meth:`forward` rounds (its fan-in + 1).
        Forward-mode linear bounds (:mod:`verifier.bounds.forward`) need it to split ``L``
        into its positive and negative parts; None: not available (they cut the node at its
        interval bounds). Default: the selections (:attr:`copies_input`, ``|L| = L``, exact)
        and the pass-through ops (``s * v + c``: ``|s| v``, one rounding)."""
        position = batched.index(True)
        v = args[position]
        if v is None:
            return None
        if self.copies_input:
            return self.forward(node, args, batched)[0], 0
        sign = self.pass_through_sign(node, position)
        if sign is None:
            return None
        return abs(sign) * v, 1

    def lower_slope_range(self, node: Node) -> tuple[float, float] | None:
        """The slopes ``[a, b]`` whose line ``s * x`` (through 0) lies below the op's output on
        every box around 0 (so alpha-CROWN may optimise the lower slope of an unstable neuron
        in it, and ReLU splitting applies: the op is ``x`` above 0 and ``a x`` below); None for
        ops that are not of this kind."""
        return None

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        """The op as a maximum of affine pieces (:mod:`verifier.ops.max_form`), which the exact
        engines encode; ``constants`` holds the constant inputs as arrays (None at dynamic or
        omitted positions). None: the op has no such form (the exact engines refuse it unless
        it is affine)."""
        return None

    def step_levels(self, node: Node) -> tuple[float, float, float] | None:
        """``(below, at, above)``: the op's exact output for an input ``< 0``, ``= 0`` and
        ``> 0`` when it is elementwise on one dynamic input and constant on each side of 0
        (Sign: -1, 0, 1); the exact engines encode it with two binaries per element. None:
        not such an op."""
        return None

    def integer_offsets(self, node: Node) -> tuple[float, float] | None:
        """``(low, high)`` when the op is elementwise on one dynamic input and its output is an
        integer ``k`` with ``x - k`` in ``[low, high]`` (Floor: ``[0, 1)``, Ceil: ``(-1, 0]``,
        Round: ``[-0.5, 0.5]``, the ends closed); the exact engines encode it with one integer
        variable per element, which at an end allows both neighbours (a relaxation). None: not
        such an op."""
        return None

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """True when the node's outputs are ``L(dynamic inputs) + c`` with its constants fixed.

        Contract (soundness of every backward pass and exact encoding rests on it): for all
        dynamic inputs, ``forward`` equals a linear map of them plus ``forward`` at zero.
        """
        if self.affinity is Affinity.JOINT:
            return True
        if self.affinity is Affinity.ONE_DYNAMIC:
            return sum(batched) == 1
        return False

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        """Concrete batched evaluation; returns one tensor per node output (all batched)."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def forward_for_gradients(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        """:meth:`forward`'s values with gradients an attack can follow: ops that are constant
        almost everywhere (Sign, Floor...) pass the gradient straight through instead of
        their zero one. Only attacks use it (their points are re-checked by onnxruntime);
        the values must equal :meth:`forward`'s exactly. Default: :meth:`forward`."""
        return self.forward(node, args, batched)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        """Sound elementwise bounds of every output over the input boxes.

        Contract: for every choice of inputs ``lower[i] <= x_i <= upper[i]`` (exact real
        arithmetic), the exact op value lies within the returned bounds, up to rounding of
        the computation itself, which :meth:`fp_error` covers. Constant inputs have
        ``lower[i] is upper[i]``.
        """
        raise NotImplementedError(f"{type(self).__name__}.interval")

    def float_range(self, node: Node) -> tuple[float, float] | None:
        """Bounds that every output element of the op's floating-point evaluation obeys, or None.

        Contract: for every input whatsoever, each float output element (as onnxruntime and
        torch compute it, rounding included) lies in ``[low, high]``. Bound propagation
        intersects the widened bounds (:meth:`interval` plus :meth:`fp_error`) with it, so
        only ranges that follow from the structure of the float computation itself qualify.
        """
        return None

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        """Bounds the absolute error of evaluating the op in floating point.

        Args:
            lower, upper: the input bounds used for :meth:`interval`.
            out: the (lower, upper) bounds that :meth:`interval` returned.
            unit: unit roundoff of the evaluation precision (2**-24 for float32).

        Returns:
            one tensor (or ``None`` for zero) per output, broadcastable to its bounds, that
            bounds ``|float_eval(op)(x) - op(x)|`` for every input in the boxes. The default
            assumes one correctly rounded operation per output element.
        """
        if self.exact:
            return tuple(None for _ in out[0])
        return tuple(unit * magnitude(lo, hi) for lo, hi in zip(*out, strict=True))


def all_finite(t: Tensor) -> bool:
    """Whether every element of ``t`` is finite, by one reduction: the sum is finite only
    then (a sum of finite elements that overflows says False, which callers take as the safe
    answer). Far cheaper on CPU than an elementwise finiteness test."""
    return bool(torch.isfinite(t.sum()))


def magnitude(lower: Tensor, upper: Tensor) -> Tensor:
    """Elementwise ``max(|lower|, |upper|)``: a bound on ``|x|`` for x in the interval."""
    return torch.maximum(lower.abs(), upper.abs())


def align(args: Args, batched: Flags) -> list[Tensor]:
    """Brings dynamic and constant arguments to one rank for numpy-style broadcasting.

    A dynamic argument ``(B, *s)`` of static rank ``r`` becomes ``(B, 1, ..., 1, *s)`` and a
    constant of shape ``s`` becomes ``(1, 1, ..., *s)``, both of rank ``R + 1`` where ``R`` is
    the largest static rank. Broadcasting then matches ONNX semantics with the batch in front.
    """
    ranks = [(a.dim() - 1 if b else a.dim()) for a, b in zip(args, batched, strict=True) if a is not None]
    top = max(ranks, default=0)
    out: list[Tensor] = []
    for a, b in zip(args, batched, strict=True):
        if a is None:
            raise ValueError("align() got an omitted input")
        if b:
            extra = top - (a.dim() - 1)
            out.append(a.reshape(a.shape[0], *([1] * extra), *a.shape[1:]))
        else:
            out.append(a.reshape(*([1] * (top + 1 - a.dim())), *a.shape))
    return out


def operands(args: Args, batched: Flags) -> list[Tensor]:
    """Aligns the arguments for broadcasting (see :func:`align`) and casts floating constants
    to the floating dtype of the first dynamic argument, so the dynamic dtype is preserved."""
    dtype = next(
        (
            a.dtype
            for a, b in zip(args, batched, strict=True)
            if b and a is not None and a.is_floating_point()
        ),
        None,
    )
    cast = [
        a.to(dtype) if dtype is not None and a is not None and a.is_floating_point() else a
        for a in args
    ]
    return align(cast, batched)


_UNITS = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def unit_roundoff(dtype: torch.dtype) -> float:
    """Unit roundoff ``u`` of a torch floating-point type (half the machine epsilon)."""
    return _UNITS[dtype]


class MonotoneOp(Op):
    """An op that is monotone in each dynamic input, elementwise over its outputs.

    ``monotonicity[i]`` is +1 when every output is non-decreasing in input ``i`` and -1 when
    non-increasing. Interval bounds follow by evaluating the forward at the matching box
    corners; this is exact for monotone ops. Inputs past the tuple default to +1.
    """

    monotonicity: ClassVar[tuple[int, ...]] = ()

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        def corner(low_side: bool) -> list[Tensor | None]:
            picked: list[Tensor | None] = []
            for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
                sign = self.monotonicity[i] if i < len(self.monotonicity) else 1
                picked.append(lo if (sign > 0) == low_side else hi)
            return picked

        return self.forward(node, corner(True), batched), self.forward(node, corner(False), batched)


class ElementwiseUnary(MonotoneOp):
    """A unary, elementwise, non-decreasing op given by :meth:`fn`."""

    def fn(self, node: Node, x: Tensor) -> Tensor:
        """The scalar function applied elementwise."""
        raise NotImplementedError(f"{type(self).__name__}.fn")

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = args[0]
        assert x is not None
        return (self.fn(node, x),)


class LinearOp(Op):
    """An op that is affine in its single dynamic input ``x``, with constant coefficients.

    Subclasses implement :meth:`apply` computing ``W x + b`` and, with ``absolute=True``,
    ``|W| x`` (no bias). Interval bounds use the centre/radius form
    ``[W c + b - |W| r, W c + b + |W| r]``; the float error is bounded by
    ``gamma(n) * (|W| m + |b|)`` with ``m = max(|lo|, |hi|)`` and ``n`` the fan-in
    (:meth:`fan_in`), which holds for every summation order.
    """

    exact = False

    def apply(self, node: Node, args: Args, batched: Flags, absolute: bool) -> Tensor:
        """``W x + b`` with ``absolute=False``; ``|W| x`` with ``absolute=True``."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def fan_in(self, node: Node, args: Args, batched: Flags) -> int:
        """Largest number of products summed into one output element."""
        raise NotImplementedError(f"{type(self).__name__}.fan_in")

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (self.apply(node, args, batched, absolute=False),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        centre, radius = centre_radius(lower, upper, batched)
        mid = self.apply(node, centre, batched, absolute=False)
        rad = self.apply(node, radius, batched, absolute=True)
        return (mid - rad,), (mid + rad,)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = [
            magnitude(lo, hi) if (lo is not None and hi is not None and b) else lo
            for lo, hi, b in zip(lower, upper, batched, strict=True)
        ]
        total = self.apply(node, mags, batched, absolute=True) + self.bias_magnitude(node, mags, batched)
        return (gamma(self.fan_in(node, lower, batched) + 1, unit) * total,)

    def absolute_linear(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, int] | None:
        """``|W| v`` (see :meth:`Op.absolute_linear`) and the fan-in + 1."""
        return self.apply(node, args, batched, absolute=True), self.fan_in(node, args, batched) + 1

    def bias_magnitude(self, node: Node, args: Args, batched: Flags) -> Tensor | float:
        """``|b|`` broadcastable to the output; 0 when the op has no bias."""
        return 0.0


def centre_radius(lower: Args, upper: Args, batched: Flags) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """Splits dynamic boxes into centre and radius; constants pass through as the centre.

    The radius of a constant argument is the constant itself so that ``apply(absolute=True)``
    sees the weights; only the dynamic slot carries the radius.
    """
    centre: list[Tensor | None] = []
    radius: list[Tensor | None] = []
    for lo, hi, b in zip(lower, upper, batched, strict=True):
        if lo is None or hi is None or not b:
            centre.append(lo)
            radius.append(lo)
        else:
            centre.append((lo + hi) / 2)
            radius.append((hi - lo) / 2)
    return centre, radius


def gamma(n: int, unit: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of an n-term dot product."""
    nu = n * unit
    if nu >= 0.5:
        return float("inf")
    return nu / (1.0 - nu)


def gamma_of_counts(counts: Tensor, unit: float) -> Tensor:
    """:func:`gamma` elementwise over a tensor of (integer-valued) rounding counts."""
    nu = counts * unit
    return torch.where(nu < 0.5, nu / (1.0 - nu.clamp(max=0.5)), torch.inf)
