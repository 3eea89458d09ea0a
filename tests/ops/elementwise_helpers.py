"""Single-node ONNX test cases for the elementwise, activation and reduction ops.

A :class:`Case` describes one node: its op type, attributes, opset and inputs (dynamic inputs
with a sampling range, constants, omitted ones). From it we build the ONNX model (run with
onnxruntime as the oracle) and our :class:`~verifier.ir.Node` with attributes as the
loader would give them: schema defaults filled in and static inputs moved into attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.graph.onnx_attrs import as_static, node_attributes
from verifier.ir import Node, freeze_attrs
from verifier.ops import REGISTRY, Op


@dataclass(frozen=True)
class Dyn:
    """A dynamic input: static shape, sampling range, numpy dtype, integer-valued samples."""

    shape: tuple[int, ...]
    low: float = -4.0
    high: float = 4.0
    dtype: str = "float32"
    integral: bool = False


@dataclass(frozen=True)
class Case:
    """One single-node test case.

    Attributes:
        op: ONNX op type.
        inputs: per ONNX input, a :class:`Dyn`, a numpy constant, or None (omitted).
        attrs: node attributes as given in the ONNX node.
        opset: the model's opset.
        out_type: ONNX element type of the output.
        bounded: whether finite boxes inside the sampling ranges must give finite bounds.
        interval_error: True when :meth:`interval` must raise ModelError (constant-only ops).
        label: short test id suffix.
    """

    op: str
    inputs: tuple[Any, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 17
    out_type: int = TensorProto.FLOAT
    bounded: bool = True
    interval_error: bool = False
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.opset}" + (f"-{self.label}" if self.label else "")

    @property
    def dynamic(self) -> list[tuple[int, Dyn]]:
        return [(i, s) for i, s in enumerate(self.inputs) if isinstance(s, Dyn)]

    @property
    def float_inputs(self) -> bool:
        return all(s.dtype == "float32" for _, s in self.dynamic)


def _np_to_onnx(dtype: str) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def onnx_node(case: Case) -> onnx.NodeProto:
    """The ONNX node of ``case``; input i is named ``in{i}`` (``""`` when omitted)."""
    names = ["" if s is None else f"in{i}" for i, s in enumerate(case.inputs)]
    while names and names[-1] == "":
        names.pop()
    return helper.make_node(case.op, names, ["out"], name=f"node_{case.op}", **case.attrs)


def _oracle_nodes(case: Case) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The ONNX nodes computing ``case`` and their extra initializers: the case's own node,
    or for our own ops the ONNX ops they stand for (Power: Pow with a constant exponent)."""
    if case.op == "Power":
        exponent = numpy_helper.from_array(np.array(case.attrs["exponent"], np.float32), "exponent")
        return [helper.make_node("Pow", ["in0", "exponent"], ["out"], name="node_Pow")], [exponent]
    return [onnx_node(case)], []


def build_model(case: Case) -> onnx.ModelProto:
    """A one-node ONNX model: dynamic inputs as graph inputs, constants as initializers (our own
    ops: the ONNX ops they stand for)."""
    nodes, inits = _oracle_nodes(case)
    inputs = []
    for i, spec in enumerate(case.inputs):
        if isinstance(spec, Dyn):
            inputs.append(helper.make_tensor_value_info(f"in{i}", _np_to_onnx(spec.dtype), spec.shape))
        elif spec is not None:
            inits.append(numpy_helper.from_array(np.asarray(spec), f"in{i}"))
    output = helper.make_tensor_value_info("out", case.out_type, None)
    graph = helper.make_graph(nodes, "g", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return model


def our_node(case: Case) -> tuple[Node, Op, list[int]]:
    """Our node for ``case``, its op, and the ONNX input indices left as arguments."""
    proto = onnx_node(case)
    op = REGISTRY[case.op]
    attrs = node_attributes(proto, case.opset, proto.name)
    kept = []
    for i, spec in enumerate(case.inputs):
        if i in op.static_inputs:
            assert not isinstance(spec, Dyn), "static inputs must be constant"
            if spec is not None:
                attrs[op.static_inputs[i]] = as_static(np.asarray(spec))
        else:
            kept.append(i)
    inputs = tuple(proto.input[i] if i < len(proto.input) else "" for i in kept)
    node = Node(proto.name, case.op, inputs, ("out",), freeze_attrs(attrs))
    return node, op, kept


def sample(spec: Dyn, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random samples of a dynamic input, shape ``(n, *spec.shape)``."""
    if spec.dtype == "bool":
        return rng.uniform(size=(n, *spec.shape)) > 0.5
    x = rng.uniform(spec.low, spec.high, size=(n, *spec.shape))
    if spec.integral:
        x = np.round(x)
    return x.astype(spec.dtype)


def run_ort(case: Case, feeds: dict[int, np.ndarray]) -> np.ndarray:
    """onnxruntime's output for batched feeds ``{input index: (B, *shape)}``, one run per sample."""
    session = ort.InferenceSession(build_model(case).SerializeToString(), providers=["CPUExecutionProvider"])
    batch = next(iter(feeds.values())).shape[0]
    outs = [session.run(None, {f"in{i}": x[b] for i, x in feeds.items()})[0] for b in range(batch)]
    return np.stack(outs)


def args_for(
    case: Case, kept: list[int], dyn: dict[int, torch.Tensor], dtype: torch.dtype, fold: bool = False
) -> tuple[list[torch.Tensor | None], list[bool]]:
    """Our argument list: dynamic tensors from ``dyn``, constants as tensors (float ones in
    ``dtype``). With ``fold``, constants get a batch dimension of 1 and every flag is True, as in
    constant folding."""
    args: list[torch.Tensor | None] = []
    flags: list[bool] = []
    for i in kept:
        spec = case.inputs[i]
        if isinstance(spec, Dyn):
            args.append(dyn[i])
            flags.append(True)
        elif spec is None:
            args.append(None)
            flags.append(False)
        else:
            t = torch.from_numpy(np.array(spec))
            if t.is_floating_point():
                t = t.to(dtype)
            args.append(t.unsqueeze(0) if fold else t)
            flags.append(fold)
    return args, flags


def to_torch(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A float array in ``dtype``; other arrays keep their dtype."""
    t = torch.from_numpy(np.array(x))
    return t.to(dtype) if t.is_floating_point() else t
