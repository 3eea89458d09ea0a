"""VNN-LIB text of a local-robustness property (the usual VNN-COMP form).

The property states the violation: ``X`` in the box and some other class's logit at least the
true class's: ``(or (and (>= Y_j Y_y)) ...)`` over ``j != y``. Box ends are written with 17
significant digits, so the float32 values the generator computed come back exactly when read
as float64 (and a float32 corner of the box lies exactly on its boundary).
"""

from __future__ import annotations

import numpy as np


def _number(value: float) -> str:
    return repr(float(value))


def robustness_property(lower: np.ndarray, upper: np.ndarray, label: int, classes: int, comment: str) -> str:
    """The VNN-LIB text for the box ``[lower, upper]`` (flattened in C order) and true label
    ``label`` among ``classes`` outputs; ``comment`` goes on the first lines (one ``;`` each)."""
    lower, upper = np.asarray(lower, dtype=np.float64).ravel(), np.asarray(upper, dtype=np.float64).ravel()
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(classes)]
    lines.append("")
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        lines.append(f"(assert (<= X_{i} {_number(hi)}))")
        lines.append(f"(assert (>= X_{i} {_number(lo)}))")
    lines.append("")
    clauses = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(classes) if j != label)
    lines.append(f"(assert (or {clauses}))")
    return "\n".join(lines) + "\n"
