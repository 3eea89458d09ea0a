"""Stand-in verifiers for the checker tests: ``python fake_tools.py MODE ONNX VNNLIB RESULT``.

Modes: ``unsat`` (claims unsat everywhere), ``forged`` (claims sat with the box's lower corner
and made-up outputs), ``oracle`` (reads the benchmark's counterexamples.jsonl and answers sat
with the planted point and onnxruntime's outputs, unknown elsewhere).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime


def _assignment(x: np.ndarray, y: np.ndarray) -> str:
    pairs = [f"(X_{i} {v!r})" for i, v in enumerate(x.tolist())] + [f"(Y_{j} {v!r})" for j, v in enumerate(y.tolist())]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def main() -> None:
    mode, onnx_path, vnnlib_path, result = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    if mode == "unsat":
        result.write_text("unsat\n")
        return
    if mode == "forged":
        result.write_text(_assignment(np.zeros(3), np.array([0.0, 1.0, 2.0])).replace("X_2", "X_0"))
        return
    folder = vnnlib_path.parent.parent
    for line in (folder / "counterexamples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if (folder / entry["vnnlib"]).resolve() == vnnlib_path.resolve():
            session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            meta = session.get_inputs()[0]
            x = np.asarray(entry["x"], dtype=np.float32)
            y = session.run(None, {meta.name: x.reshape(meta.shape)})[0].ravel()
            result.write_text(_assignment(x.astype(np.float64), y.astype(np.float64)))
            return
    result.write_text("unknown\n")


if __name__ == "__main__":
    main()
