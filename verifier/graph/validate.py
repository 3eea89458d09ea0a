"""Checks an ONNX model's protobuf before any of its tensors is converted or evaluated.

Everything here reads only the protobuf's fields and the sizes of files; no tensor data is
converted or allocated, so a tensor that claims a huge shape is refused before numpy sees it.

* :func:`check_opset`: the default-domain opset lies in :data:`SUPPORTED_OPSETS`.
* :func:`check_tensors`: every tensor of the model (initializers, sparse initializers and
  the tensor attributes of every node, subgraphs included) has non-negative dimensions and
  exactly as much data as its shape and element type say; a tensor whose data lives in an
  external file names a regular file inside the model's folder (after resolving ``..`` and
  symbolic links) that holds the bytes at the stated offset and length.
* :func:`load_external_data`: loads the (checked) external data into the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper

from verifier.errors import ModelError

MAX_VALUES = 2**28
"""The most values a tensor that loading creates may have (a graph input for the dry run,
the output of ConstantOfShape, Expand, Tile or Range); weights are not limited."""
SUPPORTED_OPSETS = range(8, 22)
"""The default-domain ONNX opsets the verifier accepts (8 to 21)."""
MIN_OPSET, MAX_OPSET = SUPPORTED_OPSETS[0], SUPPORTED_OPSETS[-1]

# element types stored in fewer than 8 bits: bits per element (packed in raw_data and int32_data)
_PACKED_BITS = {getattr(TensorProto, n): b for n, b in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4),
                                                        ("INT2", 2), ("UINT2", 2)) if hasattr(TensorProto, n)}
# 6-bit floats: packed in raw_data, one element per int32_data entry
_SIX_BITS = {getattr(TensorProto, n) for n in ("FLOAT6E2M3", "FLOAT6E3M2") if hasattr(TensorProto, n)}
_COMPLEX = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}


def check_size(shape: Sequence[int], where: str) -> None:
    """ModelError when a tensor of ``shape`` would have more than :data:`MAX_VALUES` values."""
    count = math.prod(int(d) for d in shape)
    if count > MAX_VALUES:
        raise ModelError(f"{where} would have shape {list(shape)}, {count} values: more than the "
                         f"{MAX_VALUES} a tensor built while loading may have")


def default_opset(model: onnx.ModelProto, label: str = "model") -> int:
    """The opset version of the default ONNX domain; ModelError naming ``label`` when none."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelError(f"{label}: the model imports no opset of the default ONNX domain")


def check_opset(model: onnx.ModelProto, label: str) -> int:
    """Returns the model's default-domain opset; ModelError when it is not supported."""
    opset = default_opset(model, label)
    if opset not in SUPPORTED_OPSETS:
        raise ModelError(f"{label}: the model uses ONNX opset {opset}; supported opsets are "
                         f"{MIN_OPSET} to {MAX_OPSET} (convert it with onnx.version_converter)")
    return opset


def model_tensors(graph: onnx.GraphProto, prefix: str = "") -> Iterator[tuple[TensorProto, str]]:
    """Every tensor of ``graph`` and its subgraphs, with a description for messages."""
    for tensor in graph.initializer:
        yield tensor, f"{prefix}initializer {tensor.name!r}"
    for sparse in graph.sparse_initializer:
        yield sparse.values, f"{prefix}sparse initializer {sparse.values.name!r} (values)"
        yield sparse.indices, f"{prefix}sparse initializer {sparse.values.name!r} (indices)"
    for index, node in enumerate(graph.node):
        where = f"{prefix}node {node.name} ({node.op_type})" if node.name else \
            f"{prefix}unnamed node {index} ({node.op_type})"
        for attr in node.attribute:
            sparse_tensors = [*attr.sparse_tensors, *([attr.sparse_tensor] if attr.HasField("sparse_tensor") else [])]
            tensors = [*attr.tensors, *([attr.t] if attr.HasField("t") else [])]
            for tensor in tensors + [t for s in sparse_tensors for t in (s.values, s.indices)]:
                yield tensor, f"{where}, attribute {attr.name!r}"
            for sub in [*attr.graphs, *([attr.g] if attr.HasField("g") else [])]:
                yield from model_tensors(sub, f"{where}, subgraph {attr.name!r}: ")


def uses_external_data(model: onnx.ModelProto) -> bool:
    """True when some tensor of the model keeps its data in an external file."""
    return any(t.data_location == TensorProto.EXTERNAL for t, _ in model_tensors(model.graph))


def element_count(tensor: TensorProto, where: str, label: str) -> int:
    """The number of elements the tensor's shape says; ModelError for a negative dimension."""
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise ModelError(f"{label}: {where} has a negative dimension in its shape {dims}")
    return int(np.prod(dims, dtype=object)) if dims else 1


def data_bytes(tensor: TensorProto, count: int, where: str, label: str) -> int:
    """Bytes that ``count`` elements of the tensor's element type take in raw (or external) data."""
    kind = tensor.data_type
    if kind in _PACKED_BITS or kind in _SIX_BITS:
        bits = 6 if kind in _SIX_BITS else _PACKED_BITS[kind]
        return (count * bits + 7) // 8
    if kind == TensorProto.STRING:
        raise ModelError(f"{label}: {where} is a string tensor stored as raw bytes, which ONNX does not allow")
    return count * np.dtype(helper.tensor_dtype_to_np_dtype(kind)).itemsize


def _typed_field(tensor: TensorProto, count: int) -> tuple[str, int]:
    """The typed field that holds the tensor's values and how many entries it must have."""
    kind = tensor.data_type
    field = helper.tensor_dtype_to_field(kind)
    if kind in _PACKED_BITS:
        return field, (count * _PACKED_BITS[kind] + 7) // 8
    return field, 2 * count if kind in _COMPLEX else count


def _shape_text(tensor: TensorProto, count: int) -> str:
    name = TensorProto.DataType.Name(tensor.data_type)
    return f"shape {[int(d) for d in tensor.dims]} ({count} {name} values)"


def check_element_type(tensor: TensorProto, where: str, label: str) -> None:
    """ModelError for an undefined or unknown element type, or a segmented tensor."""
    known = tensor.data_type in TensorProto.DataType.values()
    if not known or tensor.data_type == TensorProto.UNDEFINED:
        raise ModelError(f"{label}: {where} has an undefined or unknown element type ({tensor.data_type})")
    if tensor.HasField("segment"):
        raise ModelError(f"{label}: {where} is stored in segments, which are not supported")


def check_inline_data(tensor: TensorProto, where: str, label: str) -> None:
    """ModelError unless the tensor's embedded data (raw or typed) matches its shape exactly."""
    check_element_type(tensor, where, label)
    count = element_count(tensor, where, label)
    if tensor.HasField("raw_data"):
        expected = data_bytes(tensor, count, where, label)
        if len(tensor.raw_data) != expected:
            raise ModelError(f"{label}: {where} has {_shape_text(tensor, count)}, which take {expected} "
                             f"bytes, but its raw_data holds {len(tensor.raw_data)} bytes")
        return
    field, expected = _typed_field(tensor, count)
    held = len(getattr(tensor, field))
    if held != expected:
        raise ModelError(f"{label}: {where} has {_shape_text(tensor, count)}, which take {expected} "
                         f"entries of {field}, but {field} holds {held} (truncated or corrupt data?)")


def _external_entries(tensor: TensorProto, where: str, label: str) -> tuple[str, int, int | None]:
    """The location, offset and length (None when absent) of an external tensor."""
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    if not location:
        raise ModelError(f"{label}: {where} keeps its data in an external file but names none (no location)")
    numbers: dict[str, int | None] = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        try:
            numbers[key] = None if text is None else int(text)
        except ValueError:
            numbers[key] = -1
        if (numbers[key] or 0) < 0:
            raise ModelError(f"{label}: {where}: external data {key} {text!r} (file {location!r}) is not a "
                             "non-negative integer")
    return location, numbers["offset"] or 0, numbers["length"]


def external_file(location: str, base_dir: Path, where: str, label: str) -> Path:
    """The regular file ``location`` names, which must lie inside ``base_dir`` once resolved."""
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or \
            PureWindowsPath(location).drive or "\0" in location:
        raise ModelError(f"{label}: {where}: external data file {location!r} is an absolute path; it must be "
                         "relative to the model's folder")
    folder = base_dir.resolve()
    path = (folder / location).resolve()
    if not path.is_relative_to(folder):
        raise ModelError(f"{label}: {where}: external data file {location!r} resolves to {path}, outside the "
                         f"model's folder {folder}")
    if not path.is_file():
        raise ModelError(f"{label}: {where}: external data file {location!r} ({path}) does not exist or is "
                         "not a regular file")
    return path


def check_external_data(tensor: TensorProto, where: str, base_dir: Path | None, label: str) -> None:
    """ModelError unless the tensor's external data reference is safe and matches its shape."""
    check_element_type(tensor, where, label)
    count = element_count(tensor, where, label)
    location, offset, length = _external_entries(tensor, where, label)
    if base_dir is None:
        raise ModelError(f"{label}: {where} keeps its data in external file {location!r}, but the model was "
                         "given in memory: load it from its file")
    size = external_file(location, base_dir, where, label).stat().st_size
    expected = data_bytes(tensor, count, where, label)
    available = size - offset
    if available < 0 or (length is not None and length > available):
        stated = "to the end" if length is None else f"{length} bytes"
        raise ModelError(f"{label}: {where}: external data file {location!r} has {size} bytes, too few for "
                         f"offset {offset} and {stated}")
    held = available if length is None else length
    if held != expected:
        raise ModelError(f"{label}: {where} has {_shape_text(tensor, count)}, which take {expected} bytes, "
                         f"but its external data in {location!r} (offset {offset}) is {held} bytes long")


def check_tensors(model: onnx.ModelProto, label: str, base_dir: Path | None) -> None:
    """Checks every tensor of the model (see the module docstring) without converting any.

    Args:
        model: the decoded model; external data not yet loaded.
        label: the model's file (or name) for messages.
        base_dir: the folder external data is relative to; None for a model given in memory,
            which then may not use external data.

    Raises:
        ModelError: naming the file, the tensor (and its node) and the mismatch.
    """
    for tensor, where in model_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            check_external_data(tensor, where, base_dir, label)
        else:
            check_inline_data(tensor, where, label)


def load_external_data(model: onnx.ModelProto, base_dir: Path, label: str) -> None:
    """Loads the external data of a model that :func:`check_tensors` accepted, then checks
    the loaded tensors again (the files may have changed in between)."""
    try:
        for tensor, _ in model_tensors(model.graph):
            if tensor.data_location == TensorProto.EXTERNAL:
                external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise ModelError(f"{label}: cannot read external data ({exc})") from None
    check_tensors(model, label, None)
