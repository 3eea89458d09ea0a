"""Our verifier with a deliberately planted bug, to show that the soundness checker catches it.

    python -m verifier.soundness.faults --bug BUG MODEL SPEC [--timeout T] [--out RESULT] [--seed S]

answers like ``verify MODEL SPEC`` (the same result file and exit codes) with one fault built
in. Faults go in through the public API, never by patching modules: an op-table override
(:func:`verifier.api.verify_problem`'s ``ops``), a change to the loaded problem, or a change
to the result. The bugs imitate real mistakes:

* ``relu-intercept``: the ReLU upper line of an unstable neuron loses its intercept
  (``y <= u/(u-l) * x`` instead of ``u/(u-l) * (x - l)``), so CROWN's bounds are too tight;
* ``smooth-tight``: the Sigmoid/Tanh lines are each moved towards the curve by half their rise
  over the box (tangents taken at the wrong points), so the bounds are too tight;
* ``drop-clause``: the property keeps only the first clause of each region (a disjunction read
  as its first disjunct), so some violations are never looked for;
* ``unknown-as-sat``: a run that would end ``unknown`` or ``timeout`` reports ``sat`` with the
  centre of the box as its "counterexample", without the onnxruntime re-check.

The first three make the verifier claim ``unsat`` where a counterexample exists (the checker
reports *unsound claims*), the last one makes it give witnesses that onnxruntime refutes
(*invalid witnesses*). Use it as a checker tool, for example::

    verify soundness check benchmarks/soundness --tool \\
    "buggy=python -m verifier.soundness.faults --bug relu-intercept {onnx} {vnnlib} --timeout {timeout} --out {result}"
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from verifier.arguments import (
    EXIT_CODES,
    EXIT_USAGE,
    guarded,
    output_file,
    print_error,
    seed_value,
    timeout_seconds,
)

if TYPE_CHECKING:  # imported where used, after the arguments are checked
    from verifier.ops.base import Op
    from verifier.problem import Problem
    from verifier.result import Result


@dataclass(frozen=True)
class Fault:
    """One planted bug: op-table overrides, a problem change and a result change.

    Attributes:
        ops: builds the op-type -> op overrides passed to :func:`verifier.api.verify_problem`.
        problem: changes the loaded problem before it is verified.
        result: changes the result (given the problem and the run's result).
        time_share: the share of ``--timeout`` given to the run itself.
    """

    ops: Callable[[], Mapping[str, Op]] = dict
    problem: Callable[[Problem], Problem] | None = None
    result: Callable[[Problem, Result], Result] | None = None
    time_share: float = field(default=1.0)


def _with_relaxation(op_type: str, change: Callable[[Any, Any, Any], Any]) -> Op:
    """The registry's op for ``op_type`` with its relaxation's lines passed through ``change``
    (lines, lower, upper) -> lines: a new op object, the registry untouched."""
    from verifier.ops import REGISTRY
    from verifier.ops.relax import Relaxation

    op = REGISTRY[op_type]
    declared = op.relaxation
    assert declared is not None, op_type
    rule = declared.rule

    def wrong(node: Any, lo: Any, hi: Any, mode: str, constants: Any) -> Any:
        return change(rule(node, lo, hi, mode, constants), lo, hi)

    faulty = type(f"Faulty{type(op).__name__}", (type(op),), {"relaxation": Relaxation(wrong, declared.domain)})
    return faulty()


def _relu_intercept() -> Mapping[str, Op]:
    return {"Relu": _with_relaxation("Relu", lambda lines, lo, hi: replace(lines, upper_bias=lines.upper_bias * 0.0))}


def _smooth_tight() -> Mapping[str, Op]:
    def tighter(lines: Any, lo: Any, hi: Any) -> Any:
        return replace(lines, upper_bias=lines.upper_bias - 0.5 * lines.upper_slope.abs() * (hi - lo),
                       lower_bias=lines.lower_bias + 0.5 * lines.lower_slope.abs() * (hi - lo))

    return {name: _with_relaxation(name, tighter) for name in ("Sigmoid", "Tanh")}


def _first_clauses(problem: Problem) -> Problem:
    regions = tuple(replace(r, clauses=r.clauses[:1]) for r in problem.spec.regions)
    return replace(problem, spec=replace(problem.spec, regions=regions))


def _centre_as_witness(problem: Problem, result: Result) -> Result:
    import numpy as np

    from verifier.result import Counterexample, Status
    from verifier.witness import OnnxOracle

    if result.status not in (Status.UNKNOWN, Status.TIMEOUT):
        return result
    region = problem.spec.regions[0]
    x = ((region.lower + region.upper) / 2).astype(np.float32).astype(np.float64)
    y = OnnxOracle(problem.oracle_model).run(x)
    return replace(result, status=Status.SAT, counterexample=Counterexample(x, y, 0, 0))


FAULTS: dict[str, Fault] = {
    "relu-intercept": Fault(ops=_relu_intercept),
    "smooth-tight": Fault(ops=_smooth_tight),
    "drop-clause": Fault(problem=_first_clauses),
    "unknown-as-sat": Fault(result=_centre_as_witness, time_share=0.8),
}
BUGS = tuple(FAULTS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verifier.soundness.faults",
                                     description="verify with a planted bug (for the soundness checker)")
    parser.add_argument("--bug", required=True, choices=BUGS)
    parser.add_argument("model")
    parser.add_argument("spec")
    parser.add_argument("--timeout", type=timeout_seconds, default=None)
    parser.add_argument("--out", type=output_file, default=None)
    parser.add_argument("--seed", type=seed_value, default=0)
    return parser


def run_faulty(fault: Fault, model: str, spec: str, timeout: float | None, seed: int = 0) -> Result:
    """Verifies ``model`` against ``spec`` with ``fault`` built in (its answers are NOT sound)."""
    from verifier.api import verify_problem
    from verifier.config import default_config
    from verifier.problem import load_problem

    start = time.monotonic()
    problem = load_problem(model, spec)
    if fault.problem is not None:
        problem = fault.problem(problem)
    limit = None if timeout is None else fault.time_share * max(0.0, timeout - (time.monotonic() - start))
    result = verify_problem(problem, limit, default_config("cpu", seed), fault.ops())
    if fault.result is not None:
        result = fault.result(problem, result)
    return replace(result, time=time.monotonic() - start)


def main(argv: Sequence[str] | None = None) -> int:
    """``--bug BUG MODEL SPEC [--timeout T] [--out RESULT] [--seed S]``; returns ``verify``'s
    exit code for the faulty verdict (2 for bad usage)."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit:
        return EXIT_USAGE

    def work() -> int:
        from verifier.report import human_text, write_vnncomp

        result = run_faulty(FAULTS[args.bug], args.model, args.spec, args.timeout, args.seed)
        if args.out:
            write_vnncomp(args.out, result)
        print(human_text(result), flush=True)
        return EXIT_CODES[result.status.value]

    return guarded(work, print_error)


if __name__ == "__main__":
    sys.exit(main())
