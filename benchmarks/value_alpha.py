"""Intermediate bounds optimised value by value (verifier/bounds/value_alpha.py) against
alpha-CROWN with intermediate slopes optimised for the final rows, on one instance.

For each open clause of the first region: CROWN's best row; alpha-CROWN with intermediate slopes
(``--joint-steps`` Adam steps on all open clauses at once, as the pipeline did before); and the
value-by-value bounds (``--value-steps`` per value), CROWN from them, then alpha-CROWN on the
final rows only. Prints one JSON line with the rows, the seconds of each method and the mean
width of the refined intermediate values.

Usage (one core, as in the results files):
    OMP_NUM_THREADS=1 python benchmarks/value_alpha.py MODEL SPEC [--joint-steps 40] [--value-steps 30]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from verifier.bounds.crown import Crown
from verifier.bounds.objective import crown_rows, joint_alpha_rows
from verifier.bounds.value_alpha import value_alpha_bounds
from verifier.config import AlphaConfig
from verifier.graph.torch_graph import TorchGraph, numerical_hygiene
from verifier.problem import load_problem
from verifier.region_proof import RegionProof


def _best(rows: list[torch.Tensor]) -> list[float]:
    return [round(float(r.max()), 4) for r in rows]


def main() -> None:
    """Runs the three bound methods on the instance and prints the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("spec")
    parser.add_argument("--joint-steps", type=int, default=40)
    parser.add_argument("--value-steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    numerical_hygiene(0)
    problem = load_problem(args.model, args.spec)
    tgraph = TorchGraph(problem.graph, "cpu", torch.float64)
    proof = RegionProof(tgraph, problem.spec.regions[0])
    assert proof.crown is not None, "intervals decide this instance"
    clauses = proof.open
    crown = proof.crown
    out: dict[str, object] = {"spec": args.spec, "crown": _best([crown_rows(crown, c)[0] for c in clauses])}
    began = time.monotonic()
    joint = joint_alpha_rows(crown, clauses, None, AlphaConfig(iterations=args.joint_steps, patience=10**6,
                                                                free_patience=10**6))
    out["joint_alpha"] = {"rows": _best([r[0] for r in joint]), "seconds": round(time.monotonic() - began, 2)}
    fresh = proof.ladder.tighten({})  # CROWN again, without what the joint run tightened
    began = time.monotonic()
    bounds, stats = value_alpha_bounds(fresh, AlphaConfig(iterations=args.value_steps, learning_rate=0.2,
                                                          patience=10**6, free_patience=10**6))
    info = tgraph.graph.inputs[0]
    lower, upper = fresh.input_bounds[info.name]
    again = Crown(tgraph, [lower], [upper], fresh.config, prior={k: b for k, b in bounds.items() if k in fresh.refined})
    seconds = time.monotonic() - began
    final = joint_alpha_rows(again, clauses, None, AlphaConfig(iterations=100, intermediate=False))
    out["value_alpha"] = {"crown_rows": _best([crown_rows(again, c)[0] for c in clauses]),
                          "rows": _best([r[0] for r in final]), "seconds": round(seconds, 2),
                          "final_seconds": round(time.monotonic() - began - seconds, 2), **stats.as_dict()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
