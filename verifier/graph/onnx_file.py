"""Reading and checking an ONNX file, without torch: decoding, the checks of
:mod:`verifier.graph.validate` (opset, tensor data against shapes, external data), and the
graph inputs' static shapes and element types.

Everything here runs before a model's weights are converted or its ops evaluated, so a bad
file is refused (``ModelError``, exit code 3) before the costly imports and work of the loader
(:mod:`verifier.graph.loader`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from verifier.errors import ModelError
from verifier.graph.validate import (
    check_opset,
    check_size,
    check_tensors,
    load_external_data,
    uses_external_data,
)
from verifier.ir import Shape


def decode_model_file(path: Path) -> tuple[onnx.ModelProto, bytes]:
    """Reads and decodes an ONNX file without loading external data; returns the model and
    the file's bytes. Raises ModelError naming the file when it is missing or undecodable."""
    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file")
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"{path}: not a valid ONNX model ({exc})") from None
    if len(model.graph.node) == 0 and len(model.graph.output) == 0:
        raise ModelError(f"{path}: not a valid ONNX model (no graph; truncated or empty file?)")
    return model, data


def read_model(source: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Reads, decodes and checks an ONNX model; returns it and a label for messages.

    The checks (:mod:`verifier.graph.validate`) run before any tensor is converted: a
    supported opset, every tensor's data against its shape, and external data references
    (inside the model's folder, within the file, of the right length); external data is then
    loaded into the returned model. A model given in memory may not use external data.

    Raises:
        ModelError: naming the file (or the model's name), the tensor and the problem.
    """
    if isinstance(source, onnx.ModelProto):
        label = source.graph.name or "model"
        check_opset(source, label)
        check_tensors(source, label, None)
        return source, label
    path = Path(source)
    model, _ = decode_model_file(path)
    check_opset(model, str(path))
    check_tensors(model, str(path), path.parent)
    if uses_external_data(model):
        load_external_data(model, path.parent, str(path))
    return model, path.name


def model_file_bytes(path: str | Path) -> bytes:
    """What onnxruntime should load for an ONNX file: the file's own bytes, or, when its
    tensors keep their data in external files (which a session built from bytes cannot
    find), the checked model with that data embedded.

    Raises:
        ModelError: as :func:`read_model` (the opset is not checked here).
    """
    path = Path(path)
    model, data = decode_model_file(path)
    if not uses_external_data(model):
        return data
    check_tensors(model, str(path), path.parent)
    load_external_data(model, path.parent, str(path))
    try:
        return model.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit
        raise ModelError(f"{path}: too large for onnxruntime once its external data is embedded ({exc})") from None


def input_shape(info: onnx.ValueInfoProto, label: str = "model") -> Shape:
    """Static shape of a graph input; a symbolic or missing leading dimension becomes 1.

    Raises:
        ModelError: no shape, a symbolic or missing dimension after the first (dynamic), a
            dimension of size 0 or below (an empty tensor cannot be verified), or more than
            :data:`~verifier.graph.validate.MAX_VALUES` values.
    """
    ttype = info.type.tensor_type
    if not ttype.HasField("shape"):
        raise ModelError(f"{label}: graph input {info.name!r} has no shape; static shapes are required")
    dims: list[int] = []
    for axis, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_value"):
            raise ModelError(f"{label}: graph input {info.name!r} has size {dim.dim_value} at axis {axis}; an "
                             "empty tensor cannot be verified")
        elif axis == 0:
            dims.append(1)
        else:
            raise ModelError(f"{label}: graph input {info.name!r} has a dynamic dimension at axis {axis} "
                             f"({dim.dim_param or 'no size'}); static shapes are required")
    check_size(dims, f"{label}: graph input {info.name!r}")
    return tuple(dims)


def elem_dtype(info: onnx.ValueInfoProto) -> np.dtype:
    """Numpy dtype of a tensor value info."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))


def input_dtype(info: onnx.ValueInfoProto, label: str) -> np.dtype:
    """Numpy dtype of a graph input; ModelError for a missing or unknown element type."""
    try:
        return elem_dtype(info)
    except (KeyError, ValueError, TypeError):
        code = info.type.tensor_type.elem_type
        raise ModelError(f"{label}: graph input {info.name!r} has an undefined or unknown element type "
                         f"({code})") from None
