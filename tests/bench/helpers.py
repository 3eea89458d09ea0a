"""A tiny benchmark folder for the runner's tests: ``y = relu(x)`` on ``x in [0, 1]`` with
properties named by what the fake tool does on them."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

FAKE = Path(__file__).with_name("fake_tool.py")
SAT = ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
       "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= Y_0 0.5))\n")
UNSAT = SAT.replace("(>= Y_0 0.5)", "(>= Y_0 2.0)")


def fake_template() -> str:
    return f"fake={sys.executable} {FAKE} {{onnx}} {{vnnlib}} {{timeout}} {{result}}"


def make_benchmark(folder: Path, behaviours: list[str], timeout: float = 5.0) -> Path:
    """A benchmark folder with one instance per behaviour (expected: ``unsat`` for the
    unsat-like ones, ``sat`` for the others) and the model ``y = relu(x)``."""
    (folder / "onnx").mkdir(parents=True)
    (folder / "vnnlib").mkdir()
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), folder / "onnx" / "relu.onnx")
    rows, expected = [], ["onnx,vnnlib,expected"]
    for b in behaviours:
        unsat_like = b in ("unsat", "unknown", "hang", "crash", "garbage", "memory") or b.startswith("slow")
        (folder / "vnnlib" / f"{b}.vnnlib").write_text(UNSAT if unsat_like else SAT)
        rows.append(f"onnx/relu.onnx,vnnlib/{b}.vnnlib,{timeout}")
        expected.append(f"onnx/relu.onnx,vnnlib/{b}.vnnlib,{'unsat' if unsat_like else 'sat'}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    (folder / "expected.csv").write_text("\n".join(expected) + "\n")
    return folder
