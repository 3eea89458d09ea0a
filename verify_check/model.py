"""The checker's own ONNX reader: a float32 network as a chain of layers on flat vectors.

Certified op set: ``MatMul`` and ``Gemm`` with a constant weight (``Gemm``: ``alpha = beta =
1``, ``transA = 0``), ``Conv`` (2-D, one group, explicit pads; read as the dense matrix
of the same dot products), ``Add``/``Sub``/``Mul``/``Div`` with one constant operand,
``Relu``, ``LeakyRelu`` (``0 <= alpha <= 1``), ``MaxPool`` (2-D, floor mode, read as the
input positions of each window), and the shape-only ops ``Flatten``, ``Reshape``,
``Identity``, ``Squeeze``, ``Unsqueeze``.
Every op must take the previous op's output (a chain: one graph input, one output), and every
tensor must be float32. Each layer keeps its constants in float64 (exactly: a float32 value is
a float64 value).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

_SHAPE_OPS = {"Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Dropout"}


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


@dataclass(frozen=True)
class Layer:
    """One layer: its kind, its constants (``weight`` ``(m, n)`` for DENSE, else ``const``
    ``(n,)`` broadcast to the input; a RELU's ``leak``; a MAX's window ``index`` ``(m, K)``)
    and the ONNX node it comes from."""

    kind: Kind
    node: str
    weight: np.ndarray | None = None
    const: np.ndarray | None = None
    leak: float = 0.0
    index: np.ndarray | None = None


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


MAX_CONV_ENTRIES = 60_000_000
"""The largest dense matrix a ``Conv`` is read into."""


def _conv(node: onnx.NodeProto, ins: list[np.ndarray | None], shape: tuple[int, ...]) -> tuple[Layer, tuple[int, ...]]:
    """A 2-D ``Conv`` on the input of ``shape`` ``(1, C, H, W)`` as the dense matrix of its dot
    products (each output's terms: its kernel's weights and inputs, padding left out: zero
    terms are exact) and its output shape."""
    attrs = _attrs(node)
    weight = ins[1] if len(ins) > 1 else None
    if weight is None or ins[0] is not None or weight.ndim != 4 or len(shape) != 4:
        raise ModelError(f"node {node.name!r} (Conv): needs the previous output (2-D) and a constant weight")
    if attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
            or shape[0] != 1 or shape[1] != weight.shape[1]:
        raise ModelError(f"node {node.name!r} (Conv): only one group, batch 1, explicit pads and "
                         f"{weight.shape[1]} input channels are certified")
    w, size = weight.astype(np.float64), shape[2:]
    stride = list(attrs.get("strides", [1, 1]))  # type: ignore[call-overload]
    dilation = list(attrs.get("dilations", [1, 1]))  # type: ignore[call-overload]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    begin, end = pads[:2], pads[2:]
    out = [(size[a] + begin[a] + end[a] - dilation[a] * (w.shape[2 + a] - 1) - 1) // stride[a] + 1 for a in (0, 1)]
    entries = w.shape[0] * out[0] * out[1] * w.shape[1] * size[0] * size[1]
    if min(out) < 1 or entries > MAX_CONV_ENTRIES:
        raise ModelError(f"node {node.name!r} (Conv): output {out} is empty or its dense form too large")
    dense = np.zeros((w.shape[0], out[0], out[1], w.shape[1], size[0], size[1]))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            at = [np.arange(out[a]) * stride[a] - begin[a] + (i, j)[a] * dilation[a] for a in (0, 1)]
            ok = [np.nonzero((at[a] >= 0) & (at[a] < size[a]))[0] for a in (0, 1)]
            p, q = np.meshgrid(ok[0], ok[1], indexing="ij")
            dense[:, p, q, :, at[0][p], at[1][q]] = w[:, :, i, j]
    bias = ins[2].astype(np.float64).repeat(out[0] * out[1]) if len(ins) > 2 and ins[2] is not None else None
    layer = Layer(Kind.DENSE, node.name, dense.reshape(w.shape[0] * out[0] * out[1], -1), bias)
    return layer, (1, w.shape[0], *out)


def _pool(node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[Layer, tuple[int, ...]]:
    """A 2-D ``MaxPool`` on ``(1, C, H, W)``: each output's window as flat input positions."""
    attrs = _attrs(node)
    kernel = list(attrs.get("kernel_shape", []))  # type: ignore[call-overload]
    if len(shape) != 4 or len(kernel) != 2 or attrs.get("ceil_mode", 0) or len(node.output) > 1 \
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError(f"node {node.name!r} (MaxPool): only 2-D windows, floor mode, explicit pads and one "
                         f"output are certified")
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
        raise ModelError(f"node {node.name!r} (MaxPool): an empty output or a window of padding only")
    channels = np.arange(shape[1])[:, None, None] * size[0] * size[1]
    index = np.where(plane[None] >= 0, plane[None] + channels, -1).reshape(-1, plane.shape[1])
    return Layer(Kind.MAX, node.name, index=index), (1, shape[1], *out)


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
        elif node.op_type == "MaxPool":
            layer, shape = _pool(node, shape)
            layers.append(layer)
        elif node.op_type in ("Relu", "LeakyRelu"):
            layers.append(_leaky(node))
        else:
            raise ModelError(f"node {node.name!r}: op {node.op_type} is outside the certified op set")
        current = node.output[0]
    if graph.output[0].name != current:
        raise ModelError("the graph output is not the end of the chain")
    size = int(np.prod([max(int(d.dim_value), 1) for d in tensor.shape.dim]))
    return Chain(size, tuple(layers), int(np.prod(shape)), hashlib.sha256(data).hexdigest())
