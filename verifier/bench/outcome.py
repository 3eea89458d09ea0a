"""Reading a tool's VNN-COMP result file and checking its counterexample the way the VNN-COMP
scorer does, with onnxruntime on the original ONNX file.

Result file: the first line is the verdict (``sat``, ``unsat``, ``unknown``, ``timeout``,
``error``; the older ``violated``/``holds`` and ``timed-out`` are accepted); after ``sat``
comes the assignment ``((X_0 v) (X_1 v) ... (Y_0 v) ...)`` in any layout.

Witness check (VNN-COMP tolerances): every ``X_i`` is given, and lies in the box of some region
of the property within ``1e-4`` absolute; onnxruntime's outputs at ``X`` agree with the
claimed ``Y`` (when given) within ``1e-3`` relative plus ``1e-4`` absolute; and some clause of
that region holds at onnxruntime's outputs within ``1e-4`` absolute. It is a scoring check (as
lenient as the competition's), not the strict re-check our verifier applies to itself before
it reports ``sat`` (:mod:`verifier.witness`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifier.spec.types import Spec
from verifier.witness import OnnxOracle

VERDICTS = ("sat", "unsat", "unknown", "timeout", "error")
_ALIASES = {"violated": "sat", "holds": "unsat", "timed-out": "timeout", "timed_out": "timeout"}
_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")
BOX_TOL, SPEC_TOL, Y_RTOL, Y_ATOL = 1e-4, 1e-4, 1e-3, 1e-4


@dataclass(frozen=True)
class ToolAnswer:
    """A parsed result file: the verdict, the assignment after ``sat`` (``None`` when absent or
    unreadable) and why the file was not usable (empty when it was)."""

    status: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    problem: str = ""


def parse_result_text(text: str) -> ToolAnswer:
    """Parses a result file's text; anything that is not one of the verdicts gives ``error``."""
    lines = text.strip().splitlines()
    if not lines:
        return ToolAnswer("error", problem="empty result file")
    word = lines[0].strip().lower()
    status = _ALIASES.get(word, word)
    if status not in VERDICTS:
        return ToolAnswer("error", problem=f"unreadable verdict {lines[0][:60]!r}")
    if status != "sat":
        return ToolAnswer(status)
    xs: dict[int, float] = {}
    ys: dict[int, float] = {}
    body = "\n".join(lines[1:])
    for kind, index, value in _PAIR.findall(body):
        try:
            number = float(value)
        except ValueError:
            return ToolAnswer("sat", problem=f"not a number: {value[:40]!r}")
        (xs if kind == "X" else ys)[int(index)] = number
    if not xs:
        return ToolAnswer("sat", problem="sat without an assignment")
    x = _dense(xs)
    y = _dense(ys) if ys else None
    if x is None or (ys and y is None):
        return ToolAnswer("sat", problem="the assignment skips indices")
    return ToolAnswer("sat", x, y)


def _dense(values: dict[int, float]) -> np.ndarray | None:
    n = max(values) + 1
    if len(values) != n:
        return None
    return np.array([values[i] for i in range(n)], dtype=np.float64)


def read_result_file(path: Path) -> ToolAnswer:
    """Parses the result file at ``path`` (``error`` when it is missing or unreadable)."""
    try:
        return parse_result_text(path.read_text(errors="replace"))
    except OSError as exc:
        return ToolAnswer("error", problem=f"no result file ({exc.strerror})")


def check_answer_witness(oracle: OnnxOracle, spec: Spec, answer: ToolAnswer) -> tuple[bool, str]:
    """Whether a ``sat`` answer's assignment is a counterexample (see the module docstring);
    returns the decision and the reason."""
    if answer.x is None:
        return False, answer.problem or "no assignment"
    x = answer.x
    size = sum(int(np.prod(shape)) for shape in oracle.shapes)
    if x.size != size:
        return False, f"{x.size} input values, the model takes {size}"
    if not np.all(np.isfinite(x)):
        return False, "non-finite input value"
    y = oracle.run(x)
    if answer.y is not None:
        if answer.y.size != y.size:
            return False, f"{answer.y.size} output values claimed, the model gives {y.size}"
        if not np.all(np.abs(answer.y - y) <= Y_RTOL * np.abs(y) + Y_ATOL):
            return False, "the claimed outputs differ from onnxruntime's"
    if not np.all(np.isfinite(y)):
        return False, "non-finite output"
    for region in spec.regions:
        if np.all(x >= region.lower - BOX_TOL) and np.all(x <= region.upper + BOX_TOL):
            for clause in region.clauses:
                value = clause.C @ y - clause.d
                if np.all(value <= SPEC_TOL):
                    return True, "ok"
    inside = any(np.all(x >= r.lower - BOX_TOL) and np.all(x <= r.upper + BOX_TOL) for r in spec.regions)
    return False, "no clause holds at onnxruntime's outputs" if inside else "the input is outside the property's box"
