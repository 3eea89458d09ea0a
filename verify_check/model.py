"""The checker's own ONNX reader: a float32 network as a chain of layers on flat vectors.

Certified op set: ``MatMul`` and ``Gemm`` with a constant weight (``Gemm``: ``alpha = beta =
1``, ``transA = 0``), ``Add``/``Sub``/``Mul``/``Div`` with one constant operand, ``Relu``,
and the shape-only ops ``Flatten``, ``Reshape``, ``Identity``, ``Squeeze``, ``Unsqueeze``.
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
    RELU = "relu"


@dataclass(frozen=True)
class Layer:
    """One layer: its kind, its constants (``weight`` ``(m, n)`` for DENSE, else ``const``
    ``(n,)`` broadcast to the input) and the ONNX node it comes from."""

    kind: Kind
    node: str
    weight: np.ndarray | None = None
    const: np.ndarray | None = None


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
    return (size,)  # Squeeze, Unsqueeze, Identity, Dropout: only the flat size matters here


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
        elif node.op_type == "Relu":
            layers.append(Layer(Kind.RELU, node.name))
        else:
            raise ModelError(f"node {node.name!r}: op {node.op_type} is outside the certified op set")
        current = node.output[0]
    if graph.output[0].name != current:
        raise ModelError("the graph output is not the end of the chain")
    size = int(np.prod([max(int(d.dim_value), 1) for d in tensor.shape.dim]))
    return Chain(size, tuple(layers), int(np.prod(shape)), hashlib.sha256(data).hexdigest())
