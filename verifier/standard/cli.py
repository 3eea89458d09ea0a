"""The VNN-LIB 2.0 standard solver command line: the ``verifier`` command.

    verifier --name | --version
    verifier supports --CAPABILITY
    verifier verify QUERY.vnnlib --network NAME=MODEL.onnx [--network ...] [--timeout N]
                    [--serialise-assignments DIR] [--device D] [--seed S]

``verify`` prints one first line on stdout: ``sat``, ``unsat``, ``unknown`` or ``timed-out``;
after ``sat`` the satisfying assignment follows in the standard's command-line format (or is
written to DIR, one ``NAME.pb`` per variable, with ``--serialise-assignments``). Errors go to
stderr, never a verdict. Exit codes: 0 a verdict was printed (whatever it is), 2 usage error,
3 bad input (query, model, mismatch, missing file), 4 internal error, 130 interrupted.

A VNN-LIB 1.0 file is accepted too, with exactly one ``--network`` (its name is free).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from verifier.allocator import keep_freed_memory
from verifier.arguments import (
    EXIT_INTERRUPTED,
    WATCHDOG_GRACE,
    guarded,
    output_file,
    output_folder,
    print_error,
    seed_value,
    timeout_seconds,
)
from verifier.errors import InputError
from verifier.interrupts import interrupts_outside_imports
from verifier.result import Result, Status

if TYPE_CHECKING:
    from verifier.problem import Problem

EXIT_VERDICT, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 2, 3, 4
NAME = "verifier: sound and complete neural-network verifier (bounds, branch and bound, MILP/SMT)"
VERDICTS = {Status.SAT: "sat", Status.UNSAT: "unsat", Status.UNKNOWN: "unknown", Status.TIMEOUT: "timed-out"}


_FLOAT_ONLY = ("Cast", "CastLike", "Where")  # casts between float types; Where choosing between floats


def operators() -> list[str]:
    """The ONNX op types with bounds on input-dependent values, one per line.

    ``Cast``/``CastLike``/``Where`` carry the element types they are supported for (casts
    between float types; ``Where`` choosing between floats, on a condition that may depend on
    the input).
    """
    from verifier.ops import REGISTRY

    names = {name for name, op in REGISTRY.items() if not op.internal} | {"Constant", "Shape", "Size"}
    return [f"{op} float32 float64" if op in _FLOAT_ONLY else op for op in sorted(names)]


def proof_checked_operators() -> list[str]:
    """The ops whose ``unsat`` answers ``--certificate`` certifies for ``verify-check`` (the
    registry's :attr:`~verifier.ops.base.Op.proof_checked` ops; float32 chains with constant
    weights, see the README, "Checking an unsat answer")."""
    from verifier.ops import REGISTRY

    return sorted(name for name, op in REGISTRY.items() if op.proof_checked)


def capabilities() -> dict[str, list[str]]:
    """The answer to every ``supports --CAPABILITY``, one list entry per output line.

    The theories are those of the VNN-LIB 2.0 standard: hidden nodes (NH, H), multiple inputs
    and outputs (SIO, MIO), multiple networks (SNET, MNET, MENET, MINET), multi-node comparisons
    (SNC, MNC) and arithmetic complexity (BND, OUTC, LIN; not POLY: products of variables are
    refused). Element types: float32 and float64 are analysed soundly, rounding included;
    ``real`` queries are accepted too.
    """
    from verifier.graph.validate import MAX_OPSET, MIN_OPSET

    return {
        "--vnnlib-versions": ["1.0", "2.0"],
        "--onnx-opset-versions": [str(MIN_OPSET), str(MAX_OPSET)],
        "--onnx-element-types": ["float32", "float64", "real"],
        "--onnx-operators": operators(),
        "--onnx-operators-unsat-proofs": proof_checked_operators(),
        "--hidden-node-theories": ["NH", "H"],
        "--multiple-input-output-theories": ["SIO", "MIO"],
        "--multiple-network-theories": ["SNET", "MNET", "MENET", "MINET"],
        "--multiple-node-comparison-theories": ["SNC", "MNC"],
        "--arithmetic-complexity-theories": ["BND", "OUTC", "LIN"],
        "--optimised-disjunctive-reasoning": ["false"],
        "--serialise-assignments": ["true"],
        "--unsat-proofs": ["true"],
        # the boolean forms of an earlier draft of the standard
        "--hidden-nodes": ["true"],
        "--multiple-input-outputs": ["true"],
        "--multiple-networks": ["true"],
        "--multiple-node-comparisons": ["true"],
    }


def _verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verifier verify", description="Decide a VNN-LIB query.")
    parser.add_argument("query", help="VNN-LIB 2.0 (or 1.0) query file")
    parser.add_argument("--network", action="append", default=[], metavar="NAME=MODEL",
                        help="the ONNX model of a declared network (once per network not equal-to another)")
    parser.add_argument("--timeout", type=timeout_seconds, default=None,
                        help="seconds (positive, finite); the verdict is timed-out after")
    parser.add_argument("--serialise-assignments", type=output_folder, default=None, metavar="DIR",
                        help="write a satisfying assignment as DIR/NAME.pb (ONNX TensorProto) files")
    parser.add_argument("--device", default="cpu", help="torch device for bound computation (cpu, cuda)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed of the attacks (0 .. 2**32-1)")
    parser.add_argument("--certificate", type=output_file, default=None, metavar="FILE",
                        help="on unsat, write a proof certificate here (verify-check MODEL QUERY FILE checks "
                             "VNN-LIB 1.0 queries over one network)")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")
    return parser


class _Answer:
    """Prints the verdict exactly once (the main thread or the timeout watchdog)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False

    def verdict(self, status: Status, body: str = "") -> int:
        with self.lock:
            if not self.done:
                self.done = True
                print(VERDICTS[status] + (f"\n{body}" if body else ""), flush=True)
        return EXIT_VERDICT

    def error(self, message: str, code: int) -> int:
        with self.lock:
            if not self.done:
                self.done = True
                print(f"error: {message}", file=sys.stderr, flush=True)
        return code


def _networks(pairs: list[str]) -> dict[str, str]:
    models: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--network {pair}: expected NAME=MODEL.onnx")
        if name in models:
            raise InputError(f"--network {name} given twice")
        models[name] = path
    return models


def _load(query_path: str, models: dict[str, str]) -> Problem:
    from verifier.problem import load_problem, load_query_problem
    from verifier.spec.vnnlib import read_vnnlib_text
    from verifier.spec.vnnlib2 import parse_query_text, vnnlib_version

    text = read_vnnlib_text(Path(query_path))
    if vnnlib_version(text) is None:
        if len(models) != 1:
            raise InputError(f"{query_path} is a VNN-LIB 1.0 file: give exactly one --network NAME=MODEL")
        return load_problem(next(iter(models.values())), query_path)
    return load_query_problem(parse_query_text(text, query_path), models)


def _run_verify(argv: Sequence[str]) -> int:
    start = time.monotonic()
    args = _verify_parser().parse_args(argv)
    answer = _Answer()
    watchdog: threading.Timer | None = None

    def work() -> int:
        nonlocal watchdog
        models = _networks(args.network)
        if args.timeout is not None:
            def fire() -> None:
                answer.verdict(Status.TIMEOUT)
                os._exit(EXIT_VERDICT)
            watchdog = threading.Timer(args.timeout + WATCHDOG_GRACE, fire)
            watchdog.daemon = True
            watchdog.start()
        problem = _load(args.query, models)  # bad input is found before the costly imports
        from verifier.api import verify_problem
        from verifier.config import default_config

        remaining = None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - start))
        config = replace(default_config(args.device, args.seed))
        proof = None if args.certificate is None else (Path(args.certificate), Path(args.query))
        result = verify_problem(problem, remaining, config, certificate=proof)
        return answer.verdict(result.status, _sat_body(problem, result, args.serialise_assignments))

    try:
        return guarded(work, answer.error, args.debug)
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _sat_body(problem: Problem, result: Result, folder: str | None) -> str:
    """The assignment printed after ``sat`` (empty when it is serialised to ``folder``)."""
    from verifier.query.assignment import (
        assignments,
        flat_assignments,
        format_assignments,
        serialise_assignments,
    )

    if result.status is not Status.SAT or result.counterexample is None:
        return ""
    cex = result.counterexample
    values = assignments(problem.composition, cex) if problem.composition is not None else flat_assignments(cex)
    if folder is not None:
        serialise_assignments(values, folder)
        return ""
    return format_assignments(values)


def _run_supports(argv: Sequence[str]) -> int:
    table = capabilities()
    if len(argv) != 1 or argv[0] not in table:
        known = ", ".join(table)
        print(f"error: usage: verifier supports CAPABILITY (one of: {known})", file=sys.stderr)
        return EXIT_USAGE
    try:
        for line in table[argv[0]]:
            print(line, flush=True)
    except BrokenPipeError:  # the reader stopped reading (``| head``): the answer was not wanted whole
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
    return EXIT_VERDICT


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``verifier`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--name"], ["-name"]):
        print(NAME)
        return EXIT_VERDICT
    if args == ["--version"]:
        print(metadata.version("verifier"))
        return EXIT_VERDICT
    if args and args[0] == "supports":
        return _run_supports(args[1:])
    if args and args[0] == "verify":
        keep_freed_memory()
        try:
            with interrupts_outside_imports():  # from here on, Ctrl-C never lands inside an import
                return _run_verify(args[1:])
        except SystemExit as exc:  # argparse: usage errors
            return EXIT_USAGE if exc.code else EXIT_VERDICT
        except KeyboardInterrupt:  # outside the command's own boundary (argument parsing)
            return print_error("interrupted", EXIT_INTERRUPTED)
    print("usage: verifier --name | --version | supports --CAPABILITY | "
          "verify QUERY --network NAME=MODEL [--timeout N] [--serialise-assignments DIR] [--certificate FILE]",
          file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
