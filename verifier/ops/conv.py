"""Convolutions: ``Conv`` and ``ConvTranspose`` (1-D, 2-D and 3-D) with constant weights.

Both are :class:`~verifier.ops.linear.ConstWeightLinear` ops: affine in the data input, exact
centre/radius interval bounds, float error ``gamma(fan_in + fp_stages) * (|W| m + |b| +
fp_slack)`` with ``fan_in = C_in / group * prod(kernel)`` (a bound on the number of products
summed into one output element; it holds for every summation order, im2col or direct).

A dynamic tensor is ``(B, N, C, *spatial)`` where ``N`` is the model's own batch dimension;
``B`` and ``N`` are folded together for torch and unfolded afterwards. The padding helpers here
are shared with the pooling ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Affinity, Args, Flags, register
from verifier.ops.linear import ConstWeightLinear, constant_arg, dynamic_input
from verifier.ops.local_map import LocalKind, LocalMap

Ints = tuple[int, ...]

_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T: dict[int, Callable[..., Tensor]] = {
    1: F.conv_transpose1d,
    2: F.conv_transpose2d,
    3: F.conv_transpose3d,
}


def spatial_attr(node: Node, key: str, n: int, default: int) -> Ints:
    """Reads a per-spatial-axis int list attribute; absent or empty gives ``default``."""
    value = node.attr(key)
    if value is None or len(value) == 0:
        return (default,) * n
    if len(value) != n:
        raise ModelError(f"{node.op} node {node.name!r}: {key}={tuple(value)} needs {n} values")
    return tuple(int(v) for v in value)


def auto_pad_mode(node: Node) -> str:
    """The ``auto_pad`` attribute as a str (``NOTSET`` when absent)."""
    mode = node.attr("auto_pad", "NOTSET")
    return mode.decode() if isinstance(mode, bytes) else str(mode)


def explicit_pads(node: Node, n: int) -> tuple[Ints, Ints]:
    """The ``pads`` attribute split into (begin, end) per spatial axis; zeros when absent."""
    pads = node.attr("pads")
    if pads is None or len(pads) == 0:
        return (0,) * n, (0,) * n
    if len(pads) != 2 * n:
        raise ModelError(f"{node.op} node {node.name!r}: pads={tuple(pads)} needs {2 * n} values")
    return tuple(int(p) for p in pads[:n]), tuple(int(p) for p in pads[n:])


def window_pads(
    node: Node,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Ints,
    dilations: Ints,
    dilated_same: bool = True,
) -> tuple[Ints, Ints]:
    """Begin/end padding of a sliding-window op (Conv and pooling), resolving ``auto_pad``.

    ``SAME_UPPER``/``SAME_LOWER`` pad by ``(ceil(in / stride) - 1) * stride + k - in`` in total,
    the odd element going to the end (UPPER) or the beginning (LOWER), as onnxruntime does;
    ``k`` is the dilated kernel extent for Conv but the plain kernel size for pooling
    (``dilated_same=False``), where a negative total is kept (some onnxruntime pooling kernels
    reject it, the others crop the input).
    """
    mode = auto_pad_mode(node)
    n = len(sizes)
    if mode == "NOTSET":
        return explicit_pads(node, n)
    if mode == "VALID":
        return (0,) * n, (0,) * n
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise ModelError(f"{node.op} node {node.name!r}: unsupported auto_pad={mode!r}")
    begin: list[int] = []
    end: list[int] = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        extent = (k - 1) * d + 1 if dilated_same else k
        total = (-(-size // s) - 1) * s + extent - size
        if dilated_same:
            total = max(0, total)
        # C++ integer division (truncation), as onnxruntime splits a negative total too
        head = int(total / 2) if mode == "SAME_UPPER" else int((total + 1) / 2)
        begin.append(head)
        end.append(total - head)
    return tuple(begin), tuple(end)


def torch_pad_list(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX-style per-axis (begin, end) pads as the reversed flat list ``F.pad`` expects."""
    flat: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        flat += [b, e]
    return flat


def fold_batch(x: Tensor, node: Node, spatial: int | None = None) -> tuple[Tensor, int, int]:
    """``(B, N, C, *sp)`` -> ``(B*N, C, *sp)``; returns it with ``B`` and ``N``."""
    if x.dim() < 4:
        raise ModelError(
            f"{node.op} node {node.name!r}: input of rank {x.dim() - 1} has no spatial axes"
        )
    nd = x.dim() - 3
    if spatial is not None and nd != spatial:
        raise ModelError(
            f"{node.op} node {node.name!r}: input rank {x.dim() - 1} does not match the kernel"
        )
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), x.shape[0], x.shape[1]


def _kernel(node: Node, w: Tensor) -> Ints:
    kernel = tuple(int(k) for k in w.shape[2:])
    given = node.attr("kernel_shape")
    if given is not None and len(given) and tuple(int(k) for k in given) != kernel:
        raise ModelError(
            f"{node.op} node {node.name!r}: kernel_shape={tuple(given)} does not match weights {kernel}"
        )
    if len(kernel) not in _CONV:
        raise ModelError(
            f"{node.op} node {node.name!r}: {len(kernel)}-D convolution is unsupported"
        )
    return kernel


def _weights(
    node: Node, args: Args, batched: Flags, x: Tensor, absolute: bool
) -> tuple[Tensor, Tensor | None]:
    w = constant_arg(node, args[1], batched[1], "W").to(x.dtype)
    bias = args[2] if len(args) > 2 else None
    if absolute:
        return w.abs(), None
    if bias is not None:
        bias = constant_arg(node, bias, batched[2], "B").to(x.dtype)
    return w, bias


def _prologue(
    node: Node, args: Args, batched: Flags, absolute: bool
) -> tuple[Tensor, Tensor, Tensor | None, Ints, tuple[int, int], Ints, Ints, int]:
    """Shared set-up of Conv and ConvTranspose: the input with both batch dims folded, the
    (absolute) weights and bias, kernel shape, the folded dims, strides, dilations, group."""
    x = dynamic_input(node, args[0], batched[0])
    w, bias = _weights(node, args, batched, x, absolute)
    kernel = _kernel(node, w)
    xb, b, n = fold_batch(x, node, len(kernel))
    nd = len(kernel)
    strides = spatial_attr(node, "strides", nd, 1)
    dilations = spatial_attr(node, "dilations", nd, 1)
    return xb, w, bias, kernel, (b, n), strides, dilations, int(node.attr("group", 1))


@register("Conv")
class Conv(ConstWeightLinear):
    """ONNX ``Conv``: group, dilations, strides, explicit or automatic pads; constant W and B.

    Dynamic weights raise :class:`ModelError`.
    """

    proof_checked = True

    affinity = Affinity.JOINT

    constant_names = ("W", "B")
    channel_axis = 2

    def apply(self, node: Node, args: Args, batched: Flags, absolute: bool) -> Tensor:
        xb, w, bias, kernel, (b, n), strides, dilations, group = _prologue(node, args, batched, absolute)
        nd = len(kernel)
        if xb.shape[1] != w.shape[1] * group or w.shape[0] % group:
            raise ModelError(
                f"Conv node {node.name!r}: {xb.shape[1]} input channels do not fit weights "
                f"{tuple(w.shape)} with group={group}"
            )
        if auto_pad_mode(node).startswith("SAME") and max(dilations) > 1:
            raise ModelError(
                f"Conv node {node.name!r}: auto_pad={auto_pad_mode(node)} with dilations "
                f"{dilations} is unsupported (onnxruntime rejects it too)"
            )
        begin, end = window_pads(node, xb.shape[2:], kernel, strides, dilations)
        padding: Ints = begin
        if begin != end or min(begin) < 0:
            xb = F.pad(xb, torch_pad_list(begin, end))
            padding = (0,) * nd
        y = _CONV[nd](xb, w, bias, strides, padding, dilations, group)
        return y.reshape(b, n, *y.shape[1:])

    def fan_in(self, node: Node, args: Args, batched: Flags) -> int:
        w = args[1]
        assert w is not None
        return int(math.prod(w.shape[1:]))

    def local_map(self, node: Node, constants: Args, in_shape: Sequence[int]) -> LocalMap | None:
        """2-D, one group: ``CONV`` with the resolved begin padding."""
        w = constants[1] if len(constants) > 1 else None
        if w is None or w.dim() != 4 or len(in_shape) != 4 or int(node.attr("group", 1)) != 1:
            return None
        kernel = _kernel(node, w)
        strides, dilations = spatial_attr(node, "strides", 2, 1), spatial_attr(node, "dilations", 2, 1)
        begin, _ = window_pads(node, in_shape[2:], kernel, strides, dilations)
        return LocalMap(LocalKind.CONV, w, (strides[0], strides[1]), (begin[0], begin[1]),
                        (dilations[0], dilations[1]))

    def bias_magnitude(self, node: Node, args: Args, batched: Flags) -> Tensor | float:
        return _bias_magnitude(node, args, batched)


def _bias_magnitude(node: Node, args: Args, batched: Flags) -> Tensor | float:
    bias = args[2] if len(args) > 2 else None
    x = args[0]
    if bias is None or x is None:
        return 0.0
    bias = constant_arg(node, bias, batched[2], "B").abs().to(x.dtype)
    return bias.reshape(-1, *([1] * (x.dim() - 3)))


def transpose_pads(node: Node, sizes: Sequence[int], kernel: Ints, adj: Ints) -> tuple[Ints, Ints]:
    """Begin/end cropping of a ``ConvTranspose`` output, following onnxruntime.

    With ``output_shape`` (or ``SAME_*`` auto padding, whose target is ``in * stride``) the total
    padding is ``stride*(in-1) + adj + (k-1)*dilation + 1 - target``; the odd element goes to
    the end for ``SAME_UPPER`` and to the beginning otherwise (ONNX spec; onnxruntime agrees).
    A negative total (target beyond the full output) crops nothing; onnxruntime then fills an
    explicit ``output_shape`` with zeros (plus bias) at the end and ignores a ``SAME_*`` target.
    """
    nd = len(sizes)
    strides = spatial_attr(node, "strides", nd, 1)
    dilations = spatial_attr(node, "dilations", nd, 1)
    mode = auto_pad_mode(node)
    shape = node.attr("output_shape")
    explicit = shape is not None and len(shape) > 0
    if explicit:
        target = tuple(int(v) for v in shape)[-nd:]
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        target = tuple(size * s for size, s in zip(sizes, strides, strict=True))
    elif mode in ("NOTSET", "VALID"):
        return explicit_pads(node, nd) if mode == "NOTSET" else ((0,) * nd, (0,) * nd)
    else:
        raise ModelError(f"ConvTranspose node {node.name!r}: unsupported auto_pad={mode!r}")
    begin: list[int] = []
    end: list[int] = []
    for size, k, s, d, a, t in zip(sizes, kernel, strides, dilations, adj, target, strict=True):
        total = s * (size - 1) + a + (k - 1) * d + 1 - t
        if total < 0:
            # onnxruntime: no cropping; an explicit output_shape is reached by zeros at the end
            begin.append(0)
            end.append(total if explicit else 0)
            continue
        head = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(head)
        end.append(total - head)
    return tuple(begin), tuple(end)


@register("ConvTranspose")
class ConvTranspose(ConstWeightLinear):
    """ONNX ``ConvTranspose``: group, dilations, strides, pads, output_padding, output_shape.

    Computed as the full transposed convolution (no padding), extended by ``output_padding``
    zeros at the end and cropped by the pads, then the bias is added everywhere.
    """

    affinity = Affinity.JOINT

    constant_names = ("W", "B")
    channel_axis = 2

    def apply(self, node: Node, args: Args, batched: Flags, absolute: bool) -> Tensor:
        xb, w, bias, kernel, (b, n), strides, dilations, group = _prologue(node, args, batched, absolute)
        nd = len(kernel)
        adj = spatial_attr(node, "output_padding", nd, 0)
        if xb.shape[1] != w.shape[0] or w.shape[0] % group:
            raise ModelError(
                f"ConvTranspose node {node.name!r}: {xb.shape[1]} input channels do not fit "
                f"weights {tuple(w.shape)} with group={group}"
            )
        begin, end = transpose_pads(node, xb.shape[2:], kernel, adj)
        y = _CONV_T[nd](xb, w, None, strides, 0, 0, group, dilations)
        y = F.pad(
            y, torch_pad_list([-p for p in begin], [a - p for a, p in zip(adj, end, strict=True)])
        )
        if bias is not None:
            y = y + bias.reshape(-1, *([1] * nd))
        return y.reshape(b, n, *y.shape[1:])

    def fan_in(self, node: Node, args: Args, batched: Flags) -> int:
        w = args[1]
        assert w is not None
        group = int(node.attr("group", 1))
        return int(w.shape[0] // group * math.prod(w.shape[2:]))

    def local_map(self, node: Node, constants: Args, in_shape: Sequence[int]) -> LocalMap | None:
        """2-D, one group, no dilation: ``CONV_TRANSPOSE`` with the begin cropping."""
        w = constants[1] if len(constants) > 1 else None
        if w is None or w.dim() != 4 or len(in_shape) != 4 or int(node.attr("group", 1)) != 1:
            return None
        if spatial_attr(node, "dilations", 2, 1) != (1, 1):
            return None
        kernel = _kernel(node, w)
        begin, _ = transpose_pads(node, in_shape[2:], kernel, spatial_attr(node, "output_padding", 2, 0))
        strides = spatial_attr(node, "strides", 2, 1)
        return LocalMap(LocalKind.CONV_TRANSPOSE, w, (strides[0], strides[1]), (begin[0], begin[1]))

    def bias_magnitude(self, node: Node, args: Args, batched: Flags) -> Tensor | float:
        return _bias_magnitude(node, args, batched)
