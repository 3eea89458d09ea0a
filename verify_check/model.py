"""The checker's own ONNX reader: a float32 network as a chain of layers on flat vectors.

Certified op set: ``MatMul`` and ``Gemm`` with a constant weight (``Gemm``: ``alpha = beta =
1``, ``transA = 0``), ``Conv`` (2-D, one group, explicit pads; read as the dense matrix
of the same dot products), ``Add``/``Sub``/``Mul``/``Div`` with one constant operand,
``Relu``, ``LeakyRelu`` (``0 <= alpha <= 1``), ``MaxPool`` and ``AveragePool`` (2-D, floor
mode, read as the input positions of each window; a window sum and a division), ``Pad``
(constant mode, read as one-input windows and the padding's value), and the shape-only ops
``Flatten``, ``Reshape``, ``Identity``, ``Squeeze``, ``Unsqueeze``.
Every op must take the previous op's output (a chain: one graph input, one output), and every
tensor must be float32. Each layer keeps its constants in float64 (exactly: a float32 value is
a float64 value).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

_SHAPE_OPS = {"Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Dropout"}
OPS = frozenset({"MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool", "Pad", "Relu",
                 "LeakyRelu"} | _SHAPE_OPS)
"""The ONNX ops the reader accepts (besides ``Constant`` nodes, read as constants)."""


class ModelError(ValueError):
    """The model is outside the checker's op set (the message names the node and op)."""


class Kind(Enum):
    """What a layer computes from its input vector ``x``."""

    DENSE = "dense"  # W x + b (b: one more term of the same sum, Gemm) or W x (MatMul)
    ADD = "add"  # x + c
    RSUB = "rsub"  # c - x
    MUL = "mul"  # x * c
    DIV = "div"  # x / c
    RELU = "relu"  # x for x >= 0, leak * x below (Relu: leak 0)
    MAX = "max"  # per output, the maximum of the inputs at index[j] (-1: padding, left out)
    SUM = "sum"  # per output, the sum of the inputs at index[j] (-1: padding, left out)


@dataclass(frozen=True)
class Layer:
    """One layer: its kind, its constants (``weight`` ``(m, n)`` for DENSE, else ``const``
    ``(n,)`` broadcast to the input; a RELU's ``leak``; a MAX's or SUM's window ``index``
    ``(m, K)``) and the ONNX node it comes from."""

    kind: Kind
    node: str
    weight: np.ndarray | None = None
    const: np.ndarray | None = None
    leak: float = 0.0
    index: np.ndarray | None = None

    @cached_property
    def signed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A DENSE layer's ``max(W, 0)``, ``min(W, 0)``, ``|W|`` and ``W != 0`` (as 0/1), computed
        once: every bound of the layer reads them (a Conv's dense matrix is large)."""
        assert self.weight is not None
        w = self.weight
        return np.maximum(w, 0), np.minimum(w, 0), np.abs(w), (w != 0).astype(np.float64)


@dataclass(frozen=True)
class Chain:
    """The network: input size, layers in order, output size, and the file's SHA-256."""

    inputs: int
    layers: tuple[Layer, ...]
    outputs: int
    sha256: str


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for name, value in found.items():
        if value.dtype not in (np.float32, np.int64):
            raise ModelError(f"constant {name!r} has element type {value.dtype}; only float32 is certified")
    return found


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dense(node: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray | None, width: int) -> tuple[Layer, int]:
    if weight.ndim != 2 or weight.shape[1] != width:
        raise ModelError(f"node {node.name!r} ({node.op_type}): weight shape {weight.shape} does not take "
                         f"{width} inputs")
    m = weight.shape[0]
    if bias is not None:
        bias = np.broadcast_to(bias.astype(np.float64), (1, m)).reshape(m) if bias.size in (1, m) else None
        if bias is None:
            raise ModelError(f"node {node.name!r} (Gemm): bias does not broadcast to {m} outputs")
    layer = Layer(Kind.DENSE, node.name, weight.astype(np.float64), bias)
    return layer, m


def _linear(node: onnx.NodeProto, ins: list[np.ndarray | None], width: int) -> tuple[Layer, int]:
    if node.op_type == "MatMul":
        if ins[0] is None and ins[1] is not None:  # x W
            return _dense(node, ins[1].T, None, width)
        if ins[0] is not None and ins[0].ndim == 2:  # W x, x a column (or a vector)
            return _dense(node, ins[0], None, width)
        raise ModelError(f"node {node.name!r} (MatMul): needs a constant 2-D weight and the previous output")
    attrs = _attrs(node)
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
        raise ModelError(f"node {node.name!r} (Gemm): only alpha = beta = 1, transA = 0 is certified")
    if ins[0] is not None or ins[1] is None:
        raise ModelError(f"node {node.name!r} (Gemm): B must be constant, A the previous output")
    weight = ins[1] if attrs.get("transB", 0) else ins[1].T
    return _dense(node, weight, ins[2] if len(ins) > 2 else None, width)


MAX_DENSE_ENTRIES = 60_000_000
"""The largest dense matrix a ``Conv`` is read into."""


def _windows(node: onnx.NodeProto, shape: tuple[int, ...], kernel: list[int]) -> tuple[np.ndarray, list[int]]:
    """For a 2-D window op on ``(1, C, H, W)`` with spatial ``kernel``: the flat spatial input
    position of each output's kernel offsets ``(outputs, kh * kw)`` (-1: padding) and the
    output's spatial size."""
    attrs = _attrs(node)
    if len(shape) != 4 or shape[0] != 1 or len(kernel) != 2 or attrs.get("ceil_mode", 0) \
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError(f"node {node.name!r} ({node.op_type}): only 2-D windows on batch 1, floor mode and explicit "
                         f"pads are certified")
    stride = list(attrs.get("strides", [1, 1]))  # type: ignore[call-overload]
    dilation = list(attrs.get("dilations", [1, 1]))  # type: ignore[call-overload]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    size = shape[2:]
    out = [(size[a] + pads[a] + pads[a + 2] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in (0, 1)]
    at = [np.arange(out[a])[:, None] * stride[a] - pads[a] + np.arange(kernel[a])[None] * dilation[a] for a in (0, 1)]
    rows, cols = at[0][:, None, :, None], at[1][None, :, None, :]  # (oh, ow, kh, kw) after broadcasting
    inside = (rows >= 0) & (rows < size[0]) & (cols >= 0) & (cols < size[1])
    plane = np.where(inside, rows * size[1] + cols, -1).reshape(out[0] * out[1], -1)
    if min(out) < 1 or not np.all((plane >= 0).any(axis=1)):
        raise ModelError(f"node {node.name!r} ({node.op_type}): an empty output or a window of padding only")
    return plane, out


def _conv(node: onnx.NodeProto, ins: list[np.ndarray | None], shape: tuple[int, ...]) -> tuple[Layer, tuple[int, ...]]:
    """A 2-D ``Conv`` as the dense matrix of its dot products, and its output shape."""
    weight = ins[1] if len(ins) > 1 else None
    if weight is None or ins[0] is not None or weight.ndim != 4 or _attrs(node).get("group", 1) != 1 \
            or len(shape) != 4 or shape[1] != weight.shape[1]:
        raise ModelError(f"node {node.name!r} (Conv): needs the previous output (2-D), a constant weight and one group")
    plane, out = _windows(node, shape, list(weight.shape[2:]))
    (co, ci), size = weight.shape[:2], shape[2] * shape[3]
    if co * plane.shape[0] * ci * size > MAX_DENSE_ENTRIES:
        raise ModelError(f"node {node.name!r} (Conv): its dense form is too large for the checker")
    dense = np.zeros((co, plane.shape[0], ci, size))  # each output's terms: its window's (padding: no term)
    at, offset = np.nonzero(plane >= 0)
    dense[:, at, :, plane[at, offset]] = weight.astype(np.float64).reshape(co, ci, -1)[:, :, offset].transpose(2, 0, 1)
    bias = ins[2].astype(np.float64).repeat(plane.shape[0]) if len(ins) > 2 and ins[2] is not None else None
    return Layer(Kind.DENSE, node.name, dense.reshape(co * plane.shape[0], ci * size), bias), (1, co, *out)


def _pool(node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[list[Layer], tuple[int, ...]]:
    """A 2-D ``MaxPool`` (each output's window as flat input positions) or ``AveragePool`` (the
    window's sum, rounded as a dot product; divided by the count of its terms, one rounding;
    and one rounding more, as a multiplication by 1: the division may be done as a
    multiplication by a rounded reciprocal), and the output shape."""
    attrs = _attrs(node)
    plane, out = _windows(node, shape, list(attrs.get("kernel_shape", [])))  # type: ignore[call-overload]
    if len(node.output) > 1:
        raise ModelError(f"node {node.name!r} ({node.op_type}): only one output (no indices) is certified")
    channels, size, count = shape[1], shape[2] * shape[3], plane.shape[0]
    index = np.where(plane[None] >= 0, plane[None] + (np.arange(channels) * size)[:, None, None], -1)
    index = index.reshape(-1, plane.shape[1])
    if node.op_type == "MaxPool":
        return [Layer(Kind.MAX, node.name, index=index)], (1, channels, *out)
    terms = np.full(count, plane.shape[1]) if attrs.get("count_include_pad", 0) else (plane >= 0).sum(axis=1)
    return [Layer(Kind.SUM, node.name, index=index),
            Layer(Kind.DIV, node.name, const=np.tile(terms, channels).astype(np.float64)),
            Layer(Kind.MUL, node.name, const=np.ones(channels * count))], (1, channels, *out)


def _pad(node: onnx.NodeProto, consts: dict[str, np.ndarray], shape: tuple[int, ...]
         ) -> tuple[list[Layer], tuple[int, ...]]:
    """A constant-mode ``Pad``: each output takes one input (a one-term window sum: exact) and
    the padding its value (added to the padded positions: one rounding, unless the value is 0)."""
    attrs = _attrs(node)
    given = consts[node.input[1]] if len(node.input) > 1 and node.input[1] else attrs.get("pads", [])
    pads = [int(p) for p in np.asarray(given).reshape(-1)]
    value = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else attrs.get("value", 0.0)
    if attrs.get("mode", b"constant") not in (b"constant", "constant") or len(pads) != 2 * len(shape) or min(pads) < 0:
        raise ModelError(f"node {node.name!r} (Pad): only constant padding with non-negative pads is certified")
    widths = [(pads[a], pads[a + len(shape)]) for a in range(len(shape))]
    index = np.pad(np.arange(int(np.prod(shape))).reshape(shape), widths, constant_values=-1).reshape(-1, 1)
    fill = float(np.asarray(value).reshape(-1)[0])
    layers = [Layer(Kind.SUM, node.name, index=index)]
    if fill != 0.0 and bool((index < 0).any()):
        layers.append(Layer(Kind.ADD, node.name, const=np.where(index[:, 0] < 0, fill, 0.0)))
    return layers, tuple(s + a + b for s, (a, b) in zip(shape, widths, strict=True))


def _leaky(node: onnx.NodeProto) -> Layer:
    leak = float(_attrs(node).get("alpha", 0.01)) if node.op_type == "LeakyRelu" else 0.0  # type: ignore[arg-type]
    if not 0.0 <= leak <= 1.0:
        raise ModelError(f"node {node.name!r} (LeakyRelu): alpha {leak} outside [0, 1] is not certified")
    return Layer(Kind.RELU, node.name, leak=leak)


def _elementwise(node: onnx.NodeProto, ins: list[np.ndarray | None], shape: tuple[int, ...]) -> Layer:
    if len(ins) != 2 or sum(v is None for v in ins) != 1:
        raise ModelError(f"node {node.name!r} ({node.op_type}): needs the previous output and one constant")
    const = ins[1] if ins[0] is None else ins[0]
    assert const is not None
    try:
        flat = np.broadcast_to(const.astype(np.float64), shape).reshape(-1)
    except ValueError:
        raise ModelError(f"node {node.name!r} ({node.op_type}): constant {const.shape} does not broadcast "
                         f"to {shape}") from None
    if np.broadcast_shapes(const.shape, shape) != shape:
        raise ModelError(f"node {node.name!r} ({node.op_type}): the constant changes the shape")
    first = ins[0] is None
    kind = {"Add": Kind.ADD, "Mul": Kind.MUL, "Div": Kind.DIV, "Sub": Kind.ADD if first else Kind.RSUB}[node.op_type]
    if node.op_type == "Div" and not first:
        raise ModelError(f"node {node.name!r} (Div): only division by a constant is certified")
    if node.op_type == "Div" and not np.all(flat != 0):
        raise ModelError(f"node {node.name!r} (Div): division by zero")
    return Layer(kind, node.name, None, -flat if node.op_type == "Sub" and first else flat)


def _reshaped(node: onnx.NodeProto, shape: tuple[int, ...], consts: dict[str, np.ndarray]) -> tuple[int, ...]:
    size = int(np.prod(shape))
    if node.op_type == "Flatten":
        axis = int(_attrs(node).get("axis", 1))  # type: ignore[call-overload]
        axis = axis + len(shape) if axis < 0 else axis
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    if node.op_type == "Reshape":
        target = [int(v) for v in consts[node.input[1]]]
        target = [shape[i] if v == 0 else v for i, v in enumerate(target)]
        if -1 in target:
            rest = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = size // max(rest, 1)
        return tuple(target)
    if node.op_type in ("Identity", "Dropout"):
        return shape
    return (size,)  # Squeeze, Unsqueeze: only the flat size matters here


def read_model(path: str) -> Chain:
    """Reads ``path`` into a :class:`Chain`.

    Raises:
        ModelError: an op outside the certified set, a non-float32 tensor, or a graph that is
            not a chain (named by node).
    """
    data = Path(path).read_bytes()
    model = onnx.load_from_string(data)
    graph = model.graph
    consts = _constants(graph)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError("the model must have one (non-constant) input and one output")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"input {inputs[0].name!r} is not float32")
    shape = tuple(max(int(d.dim_value), 1) for d in tensor.shape.dim)
    current, layers = inputs[0].name, []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if node.op_type not in OPS:
            raise ModelError(f"node {node.name!r}: op {node.op_type} is outside the certified op set")
        ins = [None if name == current else consts.get(name) for name in node.input if name]
        if sum(v is None for v in ins) != 1 or (ins and ins[0] is not None and node.op_type not in ("Add", "Mul",
                                                                                                  "Sub", "MatMul")):
            raise ModelError(f"node {node.name!r} ({node.op_type}) does not take the previous output "
                             f"{current!r} as its one variable input")
        if node.op_type in _SHAPE_OPS:
            shape = _reshaped(node, shape, consts)
        elif node.op_type in ("MatMul", "Gemm"):
            layer, m = _linear(node, ins, int(np.prod(shape)))
            layers.append(layer)
            shape = ((m, 1) if len(shape) == 2 else (m,)) if ins[0] is not None else (1, m)
        elif node.op_type in ("Add", "Sub", "Mul", "Div"):
            layers.append(_elementwise(node, ins, shape))
        elif node.op_type == "Conv":
            layer, shape = _conv(node, ins, shape)
            layers.append(layer)
        elif node.op_type in ("MaxPool", "AveragePool"):
            pooled, shape = _pool(node, shape)
            layers.extend(pooled)
        elif node.op_type == "Pad":
            padded, shape = _pad(node, consts, shape)
            layers.extend(padded)
        else:  # Relu, LeakyRelu
            layers.append(_leaky(node))
        current = node.output[0]
    if graph.output[0].name != current:
        raise ModelError("the graph output is not the end of the chain")
    size = int(np.prod([max(int(d.dim_value), 1) for d in tensor.shape.dim]))
    return Chain(size, tuple(layers), int(np.prod(shape)), hashlib.sha256(data).hexdigest())
