"""Builds benchmarks/binarised: a small binarised CNN (Conv -> BatchNormalization -> Sign ->
MaxPool -> Gemm -> BatchNormalization -> Sign -> Gemm, 1x6x6 inputs, 3 outputs) and three
properties whose verdicts an independent model decides:

- ``robust_eps0.05``: the label at the box centre stays the largest (``sat``: a counterexample
  exists, the attack's straight-through gradients find it);
- ``y0_floor``: output 0 stays above a floor under its sampled minimum (``unsat``: interval
  bounds through Sign cannot show it, the exact engines can);
- ``y1_floor``: output 1 stays above a floor 0.3 under its minimum over 20,000 sampled points
  (``sat``: the counterexample hides from sampling and the attack; the MILP finds it).

The expected verdicts come from :func:`z3_verdict`, written here from the weights alone (real
arithmetic with If-terms for Sign and max; nothing of ``verifier`` is imported), and the
``sat`` ones are confirmed by the counterexample z3 gives, re-run through onnxruntime.

    python benchmarks/make_binarised.py        # rewrites benchmarks/binarised
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import z3
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OUT = HERE / "binarised"
SIDE, CLASSES, EPS_BN = 6, 3, 1e-5


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    """The network's float32 parameters (the first convolution's bias centres its inputs of 0.5)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(2, 1, 3, 3))
    raw = {"W1": w1, "B1": -0.5 * w1.sum(axis=(1, 2, 3)),
           "g1": rng.uniform(0.5, 1.5, 2), "b1": rng.normal(size=2) * 0.1, "m1": rng.normal(size=2) * 0.1,
           "v1": rng.uniform(0.5, 1.5, 2), "W2": rng.normal(size=(6, 8)), "B2": rng.normal(size=6) * 0.1,
           "g2": rng.uniform(0.5, 1.5, 6), "b2": rng.normal(size=6) * 0.1, "m2": rng.normal(size=6) * 0.1,
           "v2": rng.uniform(0.5, 1.5, 6), "W3": rng.normal(size=(3, 6)), "B3": rng.normal(size=3) * 0.1}
    return {k: v.astype(np.float32) for k, v in raw.items()}


def model(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g1", "b1", "m1", "v1"], ["n1"], epsilon=EPS_BN),
             helper.make_node("Sign", ["n1"], ["s1"]),
             helper.make_node("MaxPool", ["s1"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W2", "B2"], ["h"], transB=1),
             helper.make_node("BatchNormalization", ["h", "g2", "b2", "m2", "v2"], ["n2"], epsilon=EPS_BN),
             helper.make_node("Sign", ["n2"], ["s2"]),
             helper.make_node("Gemm", ["s2", "W3", "B3"], ["y"], transB=1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, SIDE, SIDE])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CLASSES])
    graph = helper.make_graph(nodes, "binarised", [x], [y],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _sign(e: z3.ArithRef, inputs: list[z3.ArithRef]) -> z3.ArithRef:
    inputs.append(e)
    return z3.If(e > 0, 1, z3.If(e < 0, -1, 0))


def _max(terms: list[z3.ArithRef]) -> z3.ArithRef:
    top = terms[0]
    for t in terms[1:]:
        top = z3.If(t > top, t, top)
    return top


def z3_outputs(w: dict[str, np.ndarray], x: list[z3.ArithRef], signs: list[z3.ArithRef]
               ) -> list[z3.ArithRef]:
    """The network over the reals (BatchNormalization's scale taken as its float64 value);
    ``signs`` receives the input of every Sign."""
    q = lambda v: z3.RealVal(repr(float(v)))  # noqa: E731
    scale1 = w["g1"].astype(np.float64) / np.sqrt(w["v1"].astype(np.float64) + EPS_BN)
    signs1 = {}
    for k in range(2):
        for i in range(SIDE - 2):
            for j in range(SIDE - 2):
                conv = z3.Sum([q(w["W1"][k, 0, a, b]) * x[(i + a) * SIDE + j + b] for a in range(3) for b in range(3)])
                conv = conv + q(w["B1"][k])
                signs1[k, i, j] = _sign(q(scale1[k]) * (conv - q(w["m1"][k])) + q(w["b1"][k]), signs)
    pooled = [_max([signs1[k, 2 * i + a, 2 * j + b] for a in range(2) for b in range(2)])
              for k in range(2) for i in range(2) for j in range(2)]
    scale2 = w["g2"].astype(np.float64) / np.sqrt(w["v2"].astype(np.float64) + EPS_BN)
    hidden = [_sign(q(scale2[r]) * (z3.Sum([q(w["W2"][r, c]) * pooled[c] for c in range(8)]) + q(w["B2"][r])
                                     - q(w["m2"][r])) + q(w["b2"][r]), signs) for r in range(6)]
    return [z3.Sum([q(w["W3"][o, r]) * hidden[r] for r in range(6)]) + q(w["B3"][o]) for o in range(CLASSES)]


def z3_verdict(w: dict[str, np.ndarray], lower: np.ndarray, upper: np.ndarray, violated: object,
               gap: float = 1e-5) -> tuple[str, np.ndarray | None]:
    """``unsat``, or ``sat`` with a point: whether some input of the box makes ``violated(y)``
    (a z3 formula of the outputs) true, over the reals. A ``sat`` point keeps every Sign input
    at least ``gap`` away from 0, so that float32 evaluation takes the same signs; a property
    violated only where some Sign input is (nearly) 0 raises ValueError (pick another)."""
    x = [z3.Real(f"x{i}") for i in range(SIDE * SIDE)]
    signs: list[z3.ArithRef] = []
    solver = z3.Solver()
    solver.add([z3.And(xi >= q, xi <= r) for xi, q, r in zip(x, map(float, lower), map(float, upper), strict=True)])
    solver.add(violated(z3_outputs(w, x, signs)))  # type: ignore[operator]
    if solver.check() == z3.unsat:
        return "unsat", None
    solver.add([z3.Or(e >= gap, e <= -gap) for e in signs])
    if solver.check() != z3.sat:
        raise ValueError("violated only where a Sign input is within the gap of 0")
    m = solver.model()
    return "sat", np.array([float(m.eval(xi, model_completion=True).as_fraction()) for xi in x])


def _vnnlib(lower: np.ndarray, upper: np.ndarray, violation: str) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(CLASSES)]
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    return "\n".join([*lines, violation]) + "\n"


def main() -> None:
    w = weights()
    (OUT / "onnx").mkdir(parents=True, exist_ok=True)
    (OUT / "vnnlib").mkdir(exist_ok=True)
    onnx.save(model(w), OUT / "onnx" / "bnn_conv.onnx")
    session = onnxruntime.InferenceSession(str(OUT / "onnx" / "bnn_conv.onnx"), providers=["CPUExecutionProvider"])
    run = lambda p: session.run(None, {"x": p.reshape(-1, 1, SIDE, SIDE).astype(np.float32)})[0]  # noqa: E731
    rng = np.random.default_rng(1)
    centre = rng.uniform(0.2, 0.8, SIDE * SIDE)
    label = int(np.argmax(run(centre)[0]))
    box = lambda eps: (np.clip(centre - eps, 0, 1), np.clip(centre + eps, 0, 1))  # noqa: E731
    low6, high6 = box(0.06)
    sampled = np.concatenate([run(p) for p in low6 + rng.random((20_000, SIDE * SIDE)) * (high6 - low6)])
    floors = [round(float(sampled[:, j].min()) - d, 4) for j, d in ((0, 0.05), (1, 0.3))]
    others = " ".join(f"(>= Y_{j} Y_{label})" for j in range(CLASSES) if j != label)
    cases = {"robust_eps0.05": (*box(0.05), f"(assert (or {others}))",
                                lambda y: z3.Or([y[j] >= y[label] for j in range(CLASSES) if j != label])),
             "y0_floor": (low6, high6, f"(assert (<= Y_0 {floors[0]!r}))", lambda y: y[0] <= floors[0]),
             "y1_floor": (low6, high6, f"(assert (<= Y_1 {floors[1]!r}))", lambda y: y[1] <= floors[1])}
    instances, expected = [], [["onnx", "vnnlib", "expected"]]
    for name, (lower, upper, text, violated) in cases.items():
        (OUT / "vnnlib" / f"{name}.vnnlib").write_text(_vnnlib(lower, upper, text))
        verdict, point = z3_verdict(w, lower, upper, violated)
        if point is not None:  # z3's point, through onnxruntime (float32): the verdict is real
            y = run(point)[0]
            print(f"{name}: onnxruntime at z3's point: {y}")
            if not z3.is_true(z3.simplify(violated([z3.RealVal(repr(float(v))) for v in y]))):  # type: ignore[operator]
                raise SystemExit(f"{name}: z3's counterexample is not one in float32")
        print(f"{name}: {verdict}")
        instances.append(["onnx/bnn_conv.onnx", f"vnnlib/{name}.vnnlib", "60"])
        expected.append(["onnx/bnn_conv.onnx", f"vnnlib/{name}.vnnlib", verdict])
    with (OUT / "instances.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(instances)
    with (OUT / "expected.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(expected)


if __name__ == "__main__":
    main()
