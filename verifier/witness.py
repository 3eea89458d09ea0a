"""Independent re-checking of counterexamples with onnxruntime on the original ONNX file.

A candidate input becomes a reported counterexample only if all of this holds:

1. it is cast to the model's input precision and every component lies inside the region's
   box as written in the VNN-LIB file (no tolerance: the cast value itself must satisfy
   ``lower <= x <= upper``; :func:`snap_into_box` moves a float just outside the box to the
   nearest representable value inside it). The one exception is an interval that holds no
   value of the input type at all (``X_0 = 0.1`` for a float32 model): there the nearest
   value of the type is used, since it is what the model receives for that input;
2. onnxruntime, running the *original* ONNX file (not our IR), computes outputs ``y``;
3. some clause of the region holds for ``y`` with a safety margin that covers the float64
   rounding of the check itself: ``C_r y - d_r <= -gamma * (|C_r| |y| + |d_r|)`` for every
   row (strictly below for strict rows).
The check is thus at least as strict as the VNN-COMP scorer's (which allows 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from verifier.errors import ModelError
from verifier.spec.types import Clause, Region

_CHECK_UNIT = 2.0**-52


class OnnxOracle:
    """Runs the original ONNX model with onnxruntime, one sample at a time."""

    def __init__(self, model: str | Path | onnx.ModelProto) -> None:
        """Builds the session from the model, or from the file's bytes (its external data, if
        any, checked and embedded: :func:`~verifier.graph.onnx_file.model_file_bytes`).

        Raises:
            ModelError: the file is unreadable, its external data invalid, or onnxruntime
                refuses the model.
        """
        from verifier.graph.onnx_file import model_file_bytes

        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model_file_bytes(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about initializers listed as inputs
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load the model: {exc}") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.shapes = [tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape) for i in self.inputs]
        self.dtypes = [np.dtype(onnx.helper.tensor_dtype_to_np_dtype(_elem(i.type))) for i in self.inputs]

    @property
    def input_dtype(self) -> np.dtype:
        """Numpy dtype of the (first) model input."""
        return self.dtypes[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Evaluates one flattened input (all graph inputs concatenated, C order).

        Returns the flattened, concatenated outputs as float64.
        """
        feeds, start = {}, 0
        for info, shape, dtype in zip(self.inputs, self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape))
            feeds[info.name] = x[start : start + size].astype(dtype).reshape(shape)
            start += size
        if start != x.size:
            raise ValueError(f"input has {x.size} values, the model takes {start}")
        outs = self.session.run(self.outputs, feeds)
        return np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outs])


def _elem(type_string: str) -> int:
    """ONNX element type from an onnxruntime type string such as ``tensor(float)``."""
    names = {"float": 1, "double": 11, "float16": 10, "bfloat16": 16}
    inner = type_string[type_string.find("(") + 1 : type_string.rfind(")")]
    if inner not in names:
        raise ModelError(f"unsupported model input type {type_string}")
    return names[inner]


def snap_into_box(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Casts ``x`` to ``dtype`` keeping every value inside ``[lower, upper]`` where possible.

    Values are clipped to the box, cast, and any cast value that fell outside is moved one
    representable step inwards. Where an interval holds no value of ``dtype`` at all (a
    degenerate bound such as ``X_0 = 0.1`` for a float32 model), the value of ``dtype``
    nearest to it is kept: it is the input the model actually receives for that bound.
    """
    clipped = np.clip(x, lower, upper)
    cast = clipped.astype(dtype)
    for _ in range(2):
        low = cast.astype(np.float64) < lower
        high = cast.astype(np.float64) > upper
        if not (low.any() or high.any()):
            break
        cast = np.where(low, np.nextafter(cast, np.array(np.inf, dtype)), cast)
        cast = np.where(high, np.nextafter(cast, np.array(-np.inf, dtype)), cast)
    outside = (cast.astype(np.float64) < lower) | (cast.astype(np.float64) > upper)
    return np.where(outside, clipped.astype(dtype), cast)


def grid_box(lower: np.ndarray, upper: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The smallest box with corners of ``dtype`` that contains ``[lower, upper]`` (float64).

    Every value :func:`snap_into_box` can return lies in it, as does the ``dtype`` rounding of
    every real point of the box; proofs are made over this box.
    """
    lo, hi = lower.astype(dtype), upper.astype(dtype)
    lo = np.where(lo.astype(np.float64) > lower, np.nextafter(lo, np.array(-np.inf, dtype)), lo)
    hi = np.where(hi.astype(np.float64) < upper, np.nextafter(hi, np.array(np.inf, dtype)), hi)
    return lo.astype(np.float64), hi.astype(np.float64)


def clause_holds(clause: Clause, y: np.ndarray) -> bool:
    """True when every row of the property's clause holds at ``y``.

    A clause that carries the property's real rows (:attr:`Clause.real`: its float rows are
    rounded, from a decimal or a folded constant that float64 cannot hold) is evaluated on
    them, in rational arithmetic. Otherwise the float rows are the property's: they are
    evaluated in float64 with the rounding-safe margin, and for an exact clause the rows that
    miss the margin in rationals: this accepts a counterexample on the boundary (``Y_0 <= 1``
    at ``Y_0 = 1``), rigorously, because onnxruntime's outputs and the clause's numbers are
    exact binary values."""
    if clause.num_rows == 0:
        return True
    if clause.real:
        return all(row.holds(y) for row in clause.real)
    value = clause.C @ y - clause.d
    scale = np.abs(clause.C) @ np.abs(y) + np.abs(clause.d)
    margin = (clause.C.shape[1] + 2) * _CHECK_UNIT * scale
    ok = np.where(clause.strict, value < -margin, value <= -margin)
    if bool(np.all(ok)):
        return True
    return clause.exact and all(ok[r] or _row_holds_exactly(clause, r, y) for r in range(clause.num_rows))


def _row_holds_exactly(clause: Clause, r: int, y: np.ndarray) -> bool:
    """Row ``r`` of the clause at ``y``, evaluated in rationals (no rounding at all)."""
    columns = np.flatnonzero(clause.C[r])
    total = sum((Fraction(float(clause.C[r, j])) * Fraction(float(y[j])) for j in columns), Fraction(0))
    slack = total - Fraction(float(clause.d[r]))
    return slack < 0 if clause.strict[r] else slack <= 0


@dataclass(frozen=True)
class WitnessCheck:
    """Outcome of :func:`check_witness`: the cast input, onnxruntime's output, the clause."""

    valid: bool
    x: np.ndarray | None
    y: np.ndarray | None
    clause: int | None
    reason: str


def check_witness(oracle: OnnxOracle, region: Region, x: np.ndarray) -> WitnessCheck:
    """Re-checks a candidate counterexample against ``region`` (see the module docstring);
    the candidate is snapped into the region's :attr:`~Region.witness_box`, whose float
    points all lie in the property's real box."""
    lower, upper = region.witness_box
    cast = snap_into_box(np.asarray(x, np.float64), lower, upper, oracle.input_dtype)
    y = oracle.run(cast)
    if not np.all(np.isfinite(y)):
        return WitnessCheck(False, cast.astype(np.float64), y, None, "non-finite output")
    for index, clause in enumerate(region.clauses):
        if clause_holds(clause, y):
            return WitnessCheck(True, cast.astype(np.float64), y, index, "ok")
    return WitnessCheck(False, cast.astype(np.float64), y, None, "no clause holds at onnxruntime's output")
