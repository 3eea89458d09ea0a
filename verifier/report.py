"""Writers for results: VNN-COMP result files and human-readable text.

This is the only place (with the CLI) where VNN-COMP strings appear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verifier.result import Result, Status


def _num(value: float) -> str:
    """Shortest repr that round-trips the float64 value."""
    return repr(float(value))


def vnncomp_text(result: Result | None, error: bool = False) -> str:
    """The VNN-COMP result-file text: the status line, then the counterexample after ``sat``."""
    if error or result is None:
        return "error\n"
    lines = [result.status.value]
    cex = result.counterexample
    if result.status is Status.SAT and cex is not None:
        parts = [f"(X_{i} {_num(v)})" for i, v in enumerate(np.asarray(cex.x).reshape(-1))]
        parts += [f"(Y_{j} {_num(v)})" for j, v in enumerate(np.asarray(cex.y).reshape(-1))]
        body = "\n ".join(parts)
        lines.append(f"({body})")
    return "\n".join(lines) + "\n"


def write_vnncomp(path: str | Path, result: Result | None, error: bool = False) -> None:
    """Writes the VNN-COMP result file: atomically (a temporary file, then a rename) when it is
    a regular file or does not exist yet; straight into it when it is something else
    (``/dev/stdout``, a named pipe), which a rename would replace."""
    target = Path(path)
    text = vnncomp_text(result, error)
    if target.exists() and not target.is_file():
        with target.open("w") as handle:
            handle.write(text)
        return
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)


def human_text(result: Result) -> str:
    """A short human-readable summary: the verdict first, then time and counterexample."""
    meaning = {
        Status.SAT: "property violated: counterexample found and re-checked with onnxruntime",
        Status.UNSAT: "property holds: proven for every input in the region",
        Status.UNKNOWN: "undecided by the methods that ran",
        Status.TIMEOUT: "time limit reached before a verdict",
    }[result.status]
    lines = [result.status.value, f"# {meaning}; {result.time:.3f} s"]
    if result.counterexample is not None:
        lines.append("# counterexample:")
        lines.append(vnncomp_text(result).split("\n", 1)[1].rstrip("\n"))
    return "\n".join(lines)
