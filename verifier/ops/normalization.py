"""LayerNormalization (opset 17): ``y = (x - mean) / sqrt(var + epsilon) * Scale + B`` over the
dimensions from ``axis`` on, with constant ``Scale`` and ``B``.

Interval rule (exact real arithmetic; loose but sound, since the centred values share the
mean): ``d_i = x_i - mean = (1 - 1/n) x_i - (1/n) sum_{j != i} x_j`` is affine, so its bounds are
exact; ``var = (1/n) sum_j d_j^2`` lies between the means of the least and the largest squares
the ``d_j`` intervals allow; ``sigma = sqrt(var + epsilon)``; ``q_i = d_i / sigma`` by interval
division by a positive number, and always ``|q_i| <= sqrt(n - 1)`` (``sum_j d_j = 0`` gives
``d_i^2 <= (n - 1) / n * sum_j d_j^2 = (n - 1) var``); then ``q * Scale + B``.

Float error (:meth:`LayerNormalization.fp_error`) covers the one-pass variance
``E[x^2] - E[x]^2`` (the worst of the usual kernels: it cancels), a square root or reciprocal
square root with a library's accuracy, and either ``(x - mean) / sigma * Scale + B`` or the
fused ``x * a + c`` form; where the computed variance plus epsilon could reach 0 (a variance
below its rounding error) the bound is infinite, as the kernel's output may then be NaN.

Not supported (refused naming the node): the optional ``Mean`` and ``InvStdDev`` outputs, and
``Scale`` or ``B`` computed by the network. Bound methods cut the node at its interval bounds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.activation import FLOAT32_UNIT, TRANSCENDENTAL_REL, finite
from verifier.ops.base import Args, Flags, Op, Pair, gamma, register
from verifier.ops.linear import constant_arg


def _input(node: Node, arg: Tensor | None, batched: bool) -> Tensor:
    """The data input with its batch dimension (added to a constant)."""
    if arg is None:
        raise ModelError(f"LayerNormalization node {node.name!r}: missing input X")
    return arg if batched else arg.unsqueeze(0)


def _layout(node: Node, x: Tensor) -> tuple[list[int], int]:
    """The tensor dimensions normalised together (``axis`` on; ``x`` has a batch dimension
    first) and their element count ``n``; refuses the optional outputs."""
    if any(node.outputs[1:]):
        raise ModelError(f"LayerNormalization node {node.name!r}: the Mean and InvStdDev outputs are not supported")
    rank = x.dim() - 1
    axis = int(node.attr("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"LayerNormalization node {node.name!r}: axis {axis} is out of range for rank {rank}")
    first = (axis + rank if axis < 0 else axis) + 1
    dims = list(range(first, x.dim()))
    return dims, math.prod(x.shape[first:])


def _affine_args(node: Node, args: Args, batched: Flags, like: Tensor) -> tuple[Tensor, Tensor]:
    """``Scale`` and ``B`` (zeros when omitted) in ``like``'s dtype and device."""
    scale = constant_arg(node, args[1] if len(args) > 1 else None, len(batched) > 1 and batched[1], "Scale")
    bias_arg = args[2] if len(args) > 2 else None
    bias = torch.zeros_like(scale) if bias_arg is None else constant_arg(node, bias_arg, batched[2], "B")
    return scale.to(like), bias.to(like)


def _centred_bounds(lo: Tensor, hi: Tensor, dims: list[int], n: int) -> tuple[Tensor, Tensor]:
    """Exact bounds of ``d_i = x_i - mean`` over the box (see the module docstring)."""
    s_lo, s_hi = lo.sum(dims, keepdim=True), hi.sum(dims, keepdim=True)
    keep = 1.0 - 1.0 / n
    return keep * lo - (s_hi - hi) / n, keep * hi - (s_lo - lo) / n


def _variance_bounds(d_lo: Tensor, d_hi: Tensor, dims: list[int]) -> tuple[Tensor, Tensor]:
    """Bounds of ``var = mean_j d_j^2`` from the ``d_j`` intervals."""
    least = torch.where(d_lo > 0, d_lo * d_lo, torch.where(d_hi < 0, d_hi * d_hi, torch.zeros_like(d_lo)))
    most = torch.maximum(d_lo * d_lo, d_hi * d_hi)
    return least.mean(dims, keepdim=True), most.mean(dims, keepdim=True)


@register("LayerNormalization")
class LayerNormalization(Op):
    """See the module docstring."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = _input(node, args[0], batched[0])
        dims, _ = _layout(node, x)
        scale, bias = _affine_args(node, args, batched, x)
        mean = x.mean(dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dims, keepdim=True)
        return (centred / torch.sqrt(var + float(node.attr("epsilon", 1e-5))) * scale + bias,)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = (finite(_input(node, b, batched[0])) for b in (lower[0], upper[0]))
        dims, n = _layout(node, lo)
        scale, bias = _affine_args(node, lower, batched, lo)
        d_lo, d_hi = _centred_bounds(lo, hi, dims, n)
        v_lo, v_hi = _variance_bounds(d_lo, d_hi, dims)
        eps = float(node.attr("epsilon", 1e-5))
        sig_lo, sig_hi = torch.sqrt(v_lo + eps), torch.sqrt(v_hi + eps)
        q_lo = torch.where(d_lo >= 0, d_lo / sig_hi, d_lo / sig_lo)
        q_hi = torch.where(d_hi >= 0, d_hi / sig_lo, d_hi / sig_hi)
        cap = math.sqrt(n - 1)
        q_lo = torch.nan_to_num(q_lo, nan=-cap).clamp(-cap, cap)
        q_hi = torch.nan_to_num(q_hi, nan=cap).clamp(-cap, cap)
        out_lo = torch.where(scale >= 0, q_lo * scale, q_hi * scale) + bias
        out_hi = torch.where(scale >= 0, q_hi * scale, q_lo * scale) + bias
        return (out_lo,), (out_hi,)

    def fp_error(self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
                 ) -> tuple[Tensor | None, ...]:
        """Bounds ``|computed - exact|`` per output (see the module docstring), in units of
        ``unit``: ``e_v = 4 gamma_{n+4} A^2`` bounds the computed variance's error (``A``:
        the group's largest ``|x|``); the computed ``sigma`` is ``sigma * r`` with
        ``r^2 in [1 - e_v / (v + eps), 1 + e_v / (v + eps)]`` times the library's relative
        error; then ``|d^/sigma^ - d/sigma| <= e_d / sigma^ + sqrt(n-1) |1/r - 1|``, and the
        scale, bias and the fused form's cancellation add theirs."""
        lo, hi = (finite(_input(node, b, batched[0])) for b in (lower[0], upper[0]))
        dims, n = _layout(node, lo)
        scale, bias = (t.abs() for t in _affine_args(node, lower, batched, lo))
        d_lo, d_hi = _centred_bounds(lo, hi, dims, n)
        v_lo, _ = _variance_bounds(d_lo, d_hi, dims)
        big = torch.maximum(lo.abs(), hi.abs()).amax(dims, keepdim=True)
        most_d = torch.maximum(d_lo.abs(), d_hi.abs()).amax(dims, keepdim=True)
        g = gamma(n + 4, unit)
        library = TRANSCENDENTAL_REL * unit / FLOAT32_UNIT + 2 * unit  # sqrt or 1/sqrt, then a division
        floor = v_lo + float(node.attr("epsilon", 1e-5))
        t = 4 * g * big * big / floor
        r_lo = torch.sqrt((1 - t).clamp(min=0)) * (1 - library)
        r_hi = torch.sqrt(1 + t) * (1 + library)
        rho = torch.where(r_lo > 0, torch.maximum(1 / r_lo - 1, 1 - 1 / r_hi), torch.full_like(r_lo, math.inf))
        sig_lo = torch.sqrt(floor)
        sig_hat = sig_lo * r_lo
        e_m = g * big
        e_d = e_m + unit * (most_d + e_m)
        e_q = e_d / sig_hat + math.sqrt(n - 1) * rho
        quotient = torch.minimum(torch.full_like(most_d, math.sqrt(n - 1)), most_d / sig_lo)
        e_q = e_q + 2 * unit * (quotient + e_q)  # the division, or a reciprocal and a product
        size = scale * (quotient + e_q)
        fused = 3 * unit * scale * (big + e_m) / sig_hat  # x * a + c with c = B - mean * a
        err = scale * e_q + unit * size + unit * (size * (1 + unit) + bias) + fused
        err = torch.nan_to_num(err * (1 + 4 * unit), nan=math.inf)
        return (err.expand_as(out[0][0]),)
