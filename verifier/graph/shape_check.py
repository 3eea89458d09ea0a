"""Cross-checks the shapes our ops produce against ONNX shape inference."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import onnx

from verifier.errors import ModelError
from verifier.ir import Shape, ValueInfo

_FLOATING = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                       onnx.TensorProto.BFLOAT16})
WEIGHTS_AS_INPUTS = 1024
"""Floating initializers with more elements than this are given to shape inference as typed graph
inputs: it needs their shapes, never their values (values it propagates are small integer shape
tensors), and it would otherwise serialise and parse every weight twice."""


def _weights_as_inputs(graph: onnx.GraphProto) -> None:
    """Replaces ``graph``'s large floating initializers by graph inputs of the same type and shape."""
    declared = {info.name for info in graph.input}
    kept = []
    for tensor in graph.initializer:
        if tensor.data_type in _FLOATING and math.prod(tensor.dims) > WEIGHTS_AS_INPUTS:
            if tensor.name not in declared:
                graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
        else:
            kept.append(tensor)
    if len(kept) < len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def _fixed_inputs(model: onnx.ModelProto, inputs: Sequence[ValueInfo]) -> onnx.ModelProto:
    """A copy of ``model`` for shape inference: its graph inputs carry our static shapes and its
    large weights are typed inputs (:data:`WEIGHTS_AS_INPUTS`)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _weights_as_inputs(copy.graph)
    wanted = {v.name: v.shape for v in inputs}
    for info in copy.graph.input:
        if info.name in wanted:
            dims = info.type.tensor_type.shape.dim
            for dim, size in zip(dims, wanted[info.name], strict=True):
                dim.Clear()
                dim.dim_value = size
    del copy.graph.value_info[:]
    return copy


def inferred_shapes(model: onnx.ModelProto, inputs: Sequence[ValueInfo]) -> dict[str, Shape]:
    """Fully static shapes that ONNX shape inference derives; empty when inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_fixed_inputs(model, inputs), data_prop=True)
    except Exception:  # inference is only a cross-check; our own dry run is authoritative
        return {}
    shapes: dict[str, Shape] = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        ttype = info.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = ttype.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _ceil_pool(node: onnx.NodeProto) -> bool:
    """Pooling with ``ceil_mode = 1``: ONNX shape inference keeps a last window that would
    start in the right padding, onnxruntime (and our ops, tested against it) drop it; the
    runtime is the reference there, so these outputs are not cross-checked."""
    if node.op_type not in ("MaxPool", "AveragePool", "LpPool"):
        return False
    return any(a.name == "ceil_mode" and a.i == 1 for a in node.attribute)


def check_against_onnx_inference(
    model: onnx.ModelProto, inputs: Sequence[ValueInfo], ours: Mapping[str, Shape], label: str
) -> None:
    """Raises ModelError when a dynamic value's shape differs from ONNX shape inference.

    A disagreement means that an op implementation or the model is inconsistent with the
    ONNX specification; verifying such a model would not be trustworthy.
    """
    producer = {out: (n.name or n.op_type) for n in model.graph.node for out in n.output}
    skip = {out for n in model.graph.node if _ceil_pool(n) for out in n.output}
    for name, shape in inferred_shapes(model, inputs).items():
        if name in ours and name not in skip and tuple(ours[name]) != shape:
            raise ModelError(
                f"{label}: value {name!r} (output of node {producer.get(name, '?')}) has shape "
                f"{list(ours[name])} when evaluated but ONNX shape inference says {list(shape)}"
            )
