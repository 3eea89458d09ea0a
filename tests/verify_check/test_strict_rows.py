"""Strict output rows at their exact threshold: ``y = relu(x)`` never satisfies ``y < 0`` (the
violation), with no margin at all. The verifier proves it; the checker must accept its
certificate (a strict row is refuted by a bound ``>= 0``, computed exactly for a row with one
power-of-two coefficient), and must reject it for ``y < 1e-300``, which ``x <= 0`` violates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from verifier.api import verify
from verify_check.cli import INVALID, VALID, check

PROPERTY = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"


def _relu(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_strict_row_at_its_threshold(tmp_path: Path) -> None:
    model = _relu(tmp_path / "relu.onnx")
    strict, proof = tmp_path / "strict.vnnlib", tmp_path / "proof.npz"
    strict.write_text(PROPERTY + "(assert (< Y_0 0))\n")
    assert verify(model, strict, timeout=30, certificate=proof).status.value == "unsat"
    assert check(str(model), str(strict), str(proof)) == (VALID, "valid (1 regions, 1 leaves)")
    loose = tmp_path / "loose.vnnlib"
    loose.write_text(PROPERTY + "(assert (<= Y_0 0))\n")
    assert verify(model, loose, timeout=30).status.value == "sat"  # x = 0
    violated = tmp_path / "violated.vnnlib"
    violated.write_text(PROPERTY + "(assert (< Y_0 1e-300))\n")
    with np.load(proof) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["spec_sha256"] = hashlib.sha256(violated.read_bytes()).hexdigest()
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(tmp_path / "relabelled.npz", "wb") as handle:
        np.savez(handle, **arrays)
    code, message = check(str(model), str(violated), str(tmp_path / "relabelled.npz"))
    assert code == INVALID and "not refuted" in message, message
