"""Typed ONNX node attributes with the schema's defaults filled in."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from verifier.errors import ModelError


def attribute_value(attr: onnx.AttributeProto, where: str) -> Any:
    """Converts one AttributeProto to a plain Python/numpy value.

    Strings become ``str``, repeated fields tuples, tensors numpy arrays. Graph-valued
    attributes (control flow) are unsupported and raise :class:`ModelError` naming ``where``.
    """
    kind = attr.type
    if kind in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        raise ModelError(f"{where}: attribute {attr.name!r} holds a subgraph; control flow is not supported")
    value = onnx.helper.get_attribute_value(attr)
    if kind == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(value)
    if kind == onnx.AttributeProto.TENSORS:
        return tuple(numpy_helper.to_array(t) for t in value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in value)
    return value


def schema_defaults(op_type: str, opset: int, domain: str = "") -> dict[str, Any]:
    """Default attribute values that the ONNX schema of ``op_type`` at ``opset`` declares."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return {}
    defaults: dict[str, Any] = {}
    for name, spec in schema.attributes.items():
        default = spec.default_value
        if default is not None and default.type != onnx.AttributeProto.UNDEFINED:
            defaults[name] = attribute_value(default, f"{op_type} schema")
    return defaults


def node_attributes(node: onnx.NodeProto, opset: int, where: str) -> dict[str, Any]:
    """The node's attributes over the schema defaults, plus ``_opset`` (the model opset)."""
    attrs = schema_defaults(node.op_type, opset, node.domain)
    for attr in node.attribute:
        attrs[attr.name] = attribute_value(attr, where)
    attrs["_opset"] = opset
    return attrs


def as_static(value: np.ndarray) -> Any:
    """Converts a constant that an op needs at load time into an attribute value.

    0-d arrays become a Python scalar, 1-d arrays a tuple of Python scalars; anything with
    more dimensions stays a numpy array.
    """
    if value.ndim == 0:
        return value.item()
    if value.ndim == 1:
        return tuple(v.item() for v in value)
    return value
