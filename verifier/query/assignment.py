"""The satisfying assignment of a ``sat`` verdict, in the VNN-LIB 2.0 formats.

The command-line format prints, for every declared variable in declaration order (network by
network: inputs, hidden values, outputs), a header ``NAME TYPE [d0,d1,...]`` and then one value
per line in row-major order. The serialised format writes ``DIR/NAME.pb``, one ONNX
``TensorProto`` per variable with the model's element type and the declared shape.

Values come from the re-checked counterexample: inputs as the model received them, hidden
values and outputs as onnxruntime computed them on the composed model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from verifier.query.compose import Composition, Placement
from verifier.result import Counterexample
from verifier.spec.query import REAL


@dataclass(frozen=True)
class Assignment:
    """One variable's value: its name, declared type and shape, and the values (row-major)."""

    name: str
    element_type: str
    shape: tuple[int, ...]
    values: np.ndarray  # in the model's element type

    def lines(self) -> list[str]:
        """The command-line format of this variable."""
        dims = ",".join(str(d) for d in self.shape)
        header = f"{self.name} {'Real' if self.element_type == REAL else self.element_type} [{dims}]"
        return [header, *(_number(v) for v in self.values.reshape(-1))]


def _number(value: np.generic) -> str:
    """Shortest text that reads back to the same value of its type."""
    if isinstance(value, np.floating):
        return str(value) if value.dtype != np.float64 else repr(float(value))
    if isinstance(value, np.bool_):
        return "1" if value else "0"
    return str(int(value))


def assignments(composition: Composition, counterexample: Counterexample) -> list[Assignment]:
    """The value of every declared variable at a re-checked counterexample."""
    result = []
    for placement in composition.placements:
        result.append(Assignment(placement.decl.name, placement.decl.element_type, placement.decl.shape,
                                 _values(placement, counterexample)))
    return result


def _values(placement: Placement, counterexample: Counterexample) -> np.ndarray:
    dtype = helper.tensor_dtype_to_np_dtype(placement.onnx_type)
    size = placement.decl.size
    if placement.constant is not None:
        flat = placement.constant
    elif placement.input_offset is not None:
        flat = counterexample.x[placement.input_offset : placement.input_offset + size]
    else:
        assert placement.output_offset is not None
        flat = counterexample.y[placement.output_offset : placement.output_offset + size]
    return np.asarray(flat).astype(dtype)


def flat_assignments(counterexample: Counterexample) -> list[Assignment]:
    """A VNN-LIB 1.0 counterexample: scalars ``X_i`` then ``Y_j``."""
    xs = [Assignment(f"X_{i}", REAL, (), np.array([v])) for i, v in enumerate(counterexample.x)]
    ys = [Assignment(f"Y_{j}", REAL, (), np.array([v])) for j, v in enumerate(counterexample.y)]
    return xs + ys


def format_assignments(values: list[Assignment]) -> str:
    """The command-line format of a whole assignment (no trailing newline)."""
    return "\n".join(line for a in values for line in a.lines())


def serialise_assignments(values: list[Assignment], folder: str | Path) -> list[Path]:
    """Writes ``folder/NAME.pb`` (an ONNX TensorProto) per variable; returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for a in values:
        tensor = numpy_helper.from_array(a.values.reshape(a.shape), name=a.name)
        path = out / f"{a.name}.pb"
        path.write_bytes(tensor.SerializeToString())
        paths.append(path)
    return paths


def read_assignment(path: str | Path) -> np.ndarray:
    """Reads back one serialised variable (for checks and tests)."""
    tensor = onnx.TensorProto()
    tensor.ParseFromString(Path(path).read_bytes())
    return numpy_helper.to_array(tensor)
