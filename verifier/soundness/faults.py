"""Our verifier with a deliberately planted bug, to show that the soundness checker catches it.

    python -m verifier.soundness.faults --bug BUG MODEL SPEC [verify options...]

runs ``verify MODEL SPEC ...`` (the same options and result file) after patching one part of
the verifier in this process only. The bugs imitate real mistakes:

* ``relu-intercept``: the ReLU upper line of an unstable neuron loses its intercept
  (``y <= u/(u-l) * x`` instead of ``u/(u-l) * (x - l)``), so CROWN's bounds are too tight;
* ``smooth-tight``: the Sigmoid/Tanh lines are each moved towards the curve by half their rise
  over the box (tangents taken at the wrong points), so the bounds are too tight;
* ``drop-clause``: the property loader keeps only the first clause of each region (a
  disjunction read as its first disjunct), so some violations are never looked for;
* ``unknown-as-sat``: a run that would end ``unknown`` or ``timeout`` reports ``sat`` with the
  centre of the box as its "counterexample", without the onnxruntime re-check.

The first three make the verifier claim ``unsat`` where a counterexample exists (the checker
reports *unsound claims*), the last one makes it give witnesses that onnxruntime refutes
(*invalid witnesses*). Use it as a checker tool, for example::

    verify soundness check benchmarks/soundness --tool \\
        "buggy=python -m verifier.soundness.faults --bug relu-intercept {onnx} {vnnlib} --timeout {timeout} --out {result}"

Nothing outside this module's own process is changed; the normal ``verify`` command never
imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

BUGS = ("relu-intercept", "smooth-tight", "drop-clause", "unknown-as-sat")


def _relu_intercept() -> None:
    from verifier.ops import REGISTRY
    from verifier.ops.relax import LinearBounds, Relaxation

    relu = type(REGISTRY["Relu"])
    assert relu.relaxation is not None
    rule = relu.relaxation.rule

    def wrong(node: Any, lo: Any, hi: Any, mode: str, constants: Any) -> LinearBounds:
        lines = rule(node, lo, hi, mode, constants)
        return replace(lines, upper_bias=lines.upper_bias * 0.0)

    relu.relaxation = Relaxation(wrong)


def _smooth_tight() -> None:
    from verifier.ops import REGISTRY
    from verifier.ops.relax import LinearBounds, Relaxation

    for name in ("Sigmoid", "Tanh"):
        op = type(REGISTRY[name])
        assert op.relaxation is not None
        rule = op.relaxation.rule

        def wrong(node: Any, lo: Any, hi: Any, mode: str, constants: Any,
                  rule: Callable[..., Any] = rule) -> LinearBounds:
            lines = rule(node, lo, hi, mode, constants)
            return replace(lines, upper_bias=lines.upper_bias - 0.5 * lines.upper_slope.abs() * (hi - lo),
                           lower_bias=lines.lower_bias + 0.5 * lines.lower_slope.abs() * (hi - lo))

        op.relaxation = Relaxation(wrong)


def _drop_clause() -> None:
    from verifier import api
    from verifier import problem as problems

    load = problems.load_problem

    def first_clauses(model: Any, spec: Any) -> Any:
        problem = load(model, spec)
        regions = tuple(replace(r, clauses=r.clauses[:1]) for r in problem.spec.regions)
        return replace(problem, spec=replace(problem.spec, regions=regions))

    problems.load_problem = first_clauses  # what the command line calls
    api.load_problem = first_clauses  # what verify() calls


def _unknown_as_sat() -> None:
    from verifier import api
    from verifier.result import Counterexample, Result, Status
    from verifier.witness import OnnxOracle

    decide = api.verify_problem

    def guess(problem: Any, timeout: float | None = None, config: Any = None) -> Result:
        result = decide(problem, None if timeout is None else 0.8 * timeout, config)
        if result.status not in (Status.UNKNOWN, Status.TIMEOUT):
            return result
        region = problem.spec.regions[0]
        x = ((region.lower + region.upper) / 2).astype(np.float32).astype(np.float64)
        y = OnnxOracle(problem.oracle_model).run(x)
        return Result(Status.SAT, result.time, Counterexample(x, y, 0, 0), result.stats)

    api.verify_problem = guess


_PATCHES: dict[str, Callable[[], None]] = {
    "relu-intercept": _relu_intercept,
    "smooth-tight": _smooth_tight,
    "drop-clause": _drop_clause,
    "unknown-as-sat": _unknown_as_sat,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``--bug BUG`` then the arguments of ``verify``; returns ``verify``'s exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--bug" or args[1] not in BUGS:
        print(f"usage: python -m verifier.soundness.faults --bug {{{','.join(BUGS)}}} MODEL SPEC [verify options]",
              file=sys.stderr)
        return 2
    _PATCHES[args[1]]()
    from verifier.cli import main as verify_main

    return verify_main(args[2:])


if __name__ == "__main__":
    sys.exit(main())
