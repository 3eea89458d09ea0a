"""Affine ops with constant weights, ``Linear`` (our own) and ``BatchNormalization``, and the
argument helpers other op modules share (:func:`constant_arg`, :func:`dynamic_input`...).

Both ops are :class:`~verifier.ops.base.LinearOp` s in their data input; products of operands
(``MatMul``, ``Gemm``, ``Einsum``) live in :mod:`verifier.ops.matmul`.

Float error model: a sum of ``n`` products, each then passed through ``s`` further roundings
(bias add, scaling by alpha...), differs from its exact value by at most
``gamma(n + s) * (sum of |products| + |additive terms|)`` for every summation order (Higham,
Lemma 3.4 and eq. 3.5); FMA only tightens this. Underflow is ignored, as in the base class.
``n`` counts only the products that can be nonzero (:meth:`ConstWeightLinear.product_counts`):
a product with a zero weight, or with an input whose certified float bounds are ``[0, 0]`` (a
fixed zero pixel, an inactive ReLU), is an exact zero; adding it to a partial sum (or a
fused multiply-add with it) returns that partial sum exactly, so by induction over any
summation tree every partial sum equals the one of the same tree with the zero leaves
removed: a summation of the other ``n`` products, covered by ``gamma(n + s)``.

Sharper, where the result passes no further rounding (``s = 1``, no ``fp_slack``): each of the
``n`` products rounds by ``u |product|``, and each of the ``n`` additions (``n + 1`` terms with
the bias) by ``u`` times its computed partial sum: an exact partial sum (of some products and
perhaps the bias, at most ``M = max(P, N) + |b|`` in magnitude, ``P``/``N`` the sums of the
products' largest positive/negative parts over the box) plus the error so far ``E``. So
``E <= u sum|products| + n u (M + E)``, i.e. ``E <= (u T + n u M) / (1 - n u)`` with ``T`` the
magnitude sum above: never more than ``gamma(n + 1) T``, about half of it where positive and
negative products weigh alike (:meth:`ConstWeightLinear.partial_sum_bound`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import (
    Affinity,
    Args,
    Flags,
    LinearOp,
    Pair,
    gamma,
    gamma_of_counts,
    magnitude,
    register,
)
from verifier.ops.local_map import LocalKind, LocalMap


def constant_arg(node: Node, arg: Tensor | None, batched: bool, what: str) -> Tensor:
    """Returns a constant argument without batch dimension.

    Constant folding hands constants in with a batch of 1, which is squeezed here; a truly
    dynamic tensor (batch > 1) in a slot that must be constant raises :class:`ModelError`.
    """
    if arg is None:
        raise ModelError(f"{node.op} node {node.name!r}: missing input {what}")
    if not batched:
        return arg
    if arg.shape[0] != 1:
        raise ModelError(
            f"{node.op} node {node.name!r}: input {what} must be constant, it is dynamic"
        )
    return arg[0]


def require_constant(
    node: Node, batched: Flags, slots: Sequence[int], names: Sequence[str]
) -> None:
    """Raises :class:`ModelError` when an input that must be constant is dynamic (bounds only)."""
    for slot, name in zip(slots, names, strict=True):
        if slot < len(batched) and batched[slot]:
            raise ModelError(
                f"{node.op} node {node.name!r}: input {name} must be constant; dynamic {name} is unsupported"
            )


def fp_stages(node: Node, default: int) -> int:
    """Extra rounding stages beyond the dot product (attr ``fp_stages``, set by the loader)."""
    value = node.attr("fp_stages")
    return default if value is None else int(value)


def slack_tensor(node: Node, like: Tensor, channel_axis: int | None) -> Tensor | float:
    """The loader's ``fp_slack`` attr as a tensor broadcastable to a batched output ``like``.

    The slack broadcasts numpy-style (right-aligned) against the output's static shape, e.g.
    ``(N,)`` for Linear or ``(M, 1, 1)`` for a 2-D Conv; for convolutions (``channel_axis``
    set) a 1-D slack of length > 1 is taken per output channel instead.
    """
    value = node.attr("fp_slack")
    if value is None:
        return 0.0
    slack = torch.as_tensor(value, dtype=like.dtype, device=like.device).abs()
    if channel_axis is not None and slack.dim() == 1 and slack.numel() > 1:
        slack = slack.reshape(-1, *([1] * (like.dim() - 1 - channel_axis)))
    try:
        torch.broadcast_shapes(slack.shape, like.shape)
    except RuntimeError as err:
        raise ModelError(
            f"{node.op} node {node.name!r}: fp_slack of shape {tuple(slack.shape)} does not fit "
            f"the output shape {tuple(like.shape[1:])}"
        ) from err
    return slack


class ConstWeightLinear(LinearOp):
    """A :class:`LinearOp` in input 0 whose other inputs must be constant.

    The float error bound is ``gamma(fan_in + stages) * (|W| m + |b| + slack)`` where ``stages``
    (attr ``fp_stages``, default :attr:`default_stages`) counts the roundings after the dot
    product and ``slack`` (attr ``fp_slack``) is extra magnitude from folded coefficients.
    """

    default_stages: ClassVar[int] = 1
    constant_names: ClassVar[tuple[str, ...]] = ("weight", "bias")
    channel_axis: ClassVar[int | None] = None

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        require_constant(node, batched, range(1, 1 + len(self.constant_names)), self.constant_names)
        return super().interval(node, lower, upper, batched)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        require_constant(node, batched, range(1, 1 + len(self.constant_names)), self.constant_names)
        mags = [
            magnitude(lo, hi) if (lo is not None and hi is not None and b) else lo
            for lo, hi, b in zip(lower, upper, batched, strict=True)
        ]
        total = self.apply(node, mags, batched, absolute=True)
        total = total + self.bias_magnitude(node, mags, batched)
        total = total + slack_tensor(node, total, self.channel_axis)
        stages = fp_stages(node, self.default_stages)
        fan_in = self.fan_in(node, lower, batched)
        counts = self.product_counts(node, mags, batched)
        if counts is None:
            return (gamma(fan_in + stages, unit) * total,)
        n = counts.clamp(max=fan_in) + stages
        plain = gamma_of_counts(n, unit) * total
        partial = None
        if stages == 1 and node.attr("fp_slack") is None:
            partial = self.partial_sum_bound(node, lower, upper, batched)
        if partial is None:
            return (plain,)
        # u |products| for the products' roundings, u |partial sum| for each of the n - 1
        # additions (n - 1 products and the bias), each partial sum within ``partial`` (+ the
        # error so far: the division); never above the plain bound
        nu = (n - 1) * unit
        bound = (unit * total + nu * partial) / (1.0 - nu.clamp(max=0.5))
        return (torch.minimum(torch.where(nu < 0.5, bound, torch.inf), plain),)

    def partial_sum_bound(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Tensor | None:
        """Per output element, a bound on ``|s|`` for every partial sum ``s`` of its products
        and bias, whatever terms it gathers: ``max(P, N) + |b|`` with ``P`` (``N``) the sum of
        the products' largest positive (negative) parts over the box. Tighter than the sum of
        all ``|products|`` where positive and negative products both weigh (None: not
        available, the caller uses that sum)."""
        x_lo, x_hi, weight = lower[0], upper[0], lower[1]
        if x_lo is None or x_hi is None or weight is None or not batched[0] or batched[1]:
            return None
        w = weight.to(x_lo.dtype)
        up, down = x_hi.clamp(min=0), (-x_lo).clamp(min=0)  # largest positive, negative part of x
        both = torch.cat([up, down])
        batch = x_lo.shape[0]
        with_positive = self.apply(node, [both, w.clamp(min=0), *lower[2:]], batched, absolute=True)
        with_negative = self.apply(node, [both, (-w).clamp(min=0), *lower[2:]], batched, absolute=True)
        positive = with_positive[:batch] + with_negative[batch:]
        negative = with_positive[batch:] + with_negative[:batch]
        mags = [magnitude(x_lo, x_hi), *lower[1:]]
        return torch.maximum(positive, negative) + self.bias_magnitude(node, mags, batched)

    def product_counts(self, node: Node, mags: Args, batched: Flags) -> Tensor | None:
        """Per output element (batched like the output), how many of its products can be
        nonzero: the nonzero weights times the inputs whose magnitude bound ``mags[0]`` is not 0
        (None: count the fan-in). Such zero products are exact and leave every partial sum they
        enter unchanged, so the float result is a sum over the others in some order (see the
        module docstring)."""
        x, weight = mags[0], mags[1]
        if x is None or weight is None or not batched[0] or batched[1]:
            return None
        nonzero = [(x != 0).to(x.dtype), (weight != 0).to(x.dtype), *mags[2:]]
        return self.apply(node, nonzero, batched, absolute=True)


def dynamic_input(node: Node, arg: Tensor | None, batched: bool) -> Tensor:
    """The op's data input as a batched tensor (a constant gets a batch of 1)."""
    if arg is None:
        raise ModelError(f"{node.op} node {node.name!r}: missing data input")
    return arg if batched else arg.unsqueeze(0)


def optional_arg(args: Args, i: int) -> Tensor | None:
    """Argument ``i``, or None when the node has fewer inputs."""
    return args[i] if i < len(args) else None


@register("Linear")
class Linear(ConstWeightLinear):
    """Our normalised affine op ``y = x @ weight + bias`` over the last axis of ``x``.

    Inputs: ``x`` (dynamic, any leading dims), ``weight`` constant ``(K, N)``, optional ``bias``
    constant ``(N,)``. Attrs ``fp_stages`` (default 1) and ``fp_slack`` (broadcast to the last
    axis) describe extra roundings of the original ONNX computation the loader folded here.
    """

    internal = True
    affinity = Affinity.JOINT

    def transpose(self, node: Node, rows: Tensor, constants: Args) -> tuple[Tensor, Tensor] | None:
        """``A W^T`` and ``<A, b>``."""
        weight = constants[1]
        if weight is None:
            return None
        coefficients = rows @ weight.to(rows.dtype).T
        bias = optional_arg(constants, 2)
        if bias is None:
            return coefficients, torch.zeros(rows.shape[:2], dtype=rows.dtype, device=rows.device)
        return coefficients, (rows @ bias.to(rows.dtype)).reshape(*rows.shape[:2], -1).sum(dim=2)

    def apply(self, node: Node, args: Args, batched: Flags, absolute: bool) -> Tensor:
        x = dynamic_input(node, args[0], batched[0])
        w = constant_arg(node, args[1], batched[1], "weight").to(x.dtype)
        if absolute:
            return x @ w.abs()
        y = x @ w
        bias = optional_arg(args, 2)
        if bias is not None:
            y = y + constant_arg(node, bias, batched[2], "bias").to(x.dtype)
        return y

    def fan_in(self, node: Node, args: Args, batched: Flags) -> int:
        w = args[1]
        assert w is not None
        return int(w.shape[-2])

    def bias_magnitude(self, node: Node, args: Args, batched: Flags) -> Tensor | float:
        bias = optional_arg(args, 2)
        if bias is None:
            return 0.0
        return constant_arg(node, bias, batched[2], "bias").abs()


@register("BatchNormalization")
class BatchNormalization(ConstWeightLinear):
    """Inference-mode batch normalisation, a per-channel affine map on ONNX axis 1.

    ``y = scale * (x - mean) / sqrt(var + epsilon) + B`` with constant ``scale, B, mean, var``.
    Parameters of shape ``(C,)`` broadcast over the spatial dims; with the legacy
    ``spatial=0`` they have shape ``(C, D1, ...)``. Training mode (``training_mode=1`` or more
    than one output) raises :class:`ModelError`. The float bound allows 7 roundings after the
    product: onnxruntime forms ``scale/sqrt(var+eps)`` and ``B - mean*scale'`` in float.
    """

    affinity = Affinity.JOINT

    default_stages = 7
    constant_names = ("scale", "B", "mean", "var")

    def _coefficients(
        self, node: Node, args: Args, batched: Flags, x: Tensor
    ) -> tuple[Tensor, Tensor]:
        if node.attr("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
            raise ModelError(
                f"BatchNormalization node {node.name!r}: training mode (batch statistics, "
                "extra outputs) is unsupported"
            )
        scale, bias, mean, var = (
            constant_arg(node, args[i], batched[i], name).to(x.dtype)
            for i, name in enumerate(self.constant_names, start=1)
        )
        eps = float(node.attr("epsilon", 1e-5))
        w = scale / torch.sqrt(var + eps)
        b = bias - mean * w
        rank = x.dim() - 1
        shape = lambda t: t.reshape(*t.shape, *([1] * (rank - 1 - t.dim())))  # noqa: E731
        return shape(w), shape(b)

    def apply(self, node: Node, args: Args, batched: Flags, absolute: bool) -> Tensor:
        x = dynamic_input(node, args[0], batched[0])
        w, b = self._coefficients(node, args, batched, x)
        if absolute:
            return x * w.abs()
        return x * w + b

    def fan_in(self, node: Node, args: Args, batched: Flags) -> int:
        return 1

    def product_counts(self, node: Node, mags: Args, batched: Flags) -> Tensor | None:
        """None: one product per output, nothing to count."""
        return None

    def partial_sum_bound(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Tensor | None:
        """None: one product per output."""
        return None

    def local_map(self, node: Node, constants: Args, in_shape: Sequence[int]) -> LocalMap | None:
        """``CHANNEL_SCALE`` by ``scale / sqrt(var + epsilon)`` on ``(1, C, H, W)`` inputs, with
        per-channel parameters (not the legacy ``spatial=0`` form)."""
        if len(in_shape) != 4 or any(c is None for c in constants[1:5]):
            return None
        scale = constants[1]
        assert scale is not None
        probe = scale.new_zeros((1, *in_shape))
        w, _ = self._coefficients(node, constants, [True, False, False, False, False], probe)
        if w.numel() != in_shape[1]:
            return None
        return LocalMap(LocalKind.CHANNEL_SCALE, w.reshape(-1))

    def bias_magnitude(self, node: Node, args: Args, batched: Flags) -> Tensor | float:
        x = args[0]
        assert x is not None
        _, b = self._coefficients(node, args, batched, x)
        bias = constant_arg(node, args[2], batched[2], "B").to(x.dtype)
        rank = x.dim() - 1
        bias = bias.reshape(*bias.shape, *([1] * (rank - 1 - bias.dim())))
        return bias.abs() + (b - bias).abs()
