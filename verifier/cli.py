"""Command line: ``verify MODEL SPEC``, ``verify bounds MODEL SPEC``, ``verify bench ...``
(:mod:`verifier.bench.cli`) and ``verify soundness ...`` (:mod:`verifier.soundness.cli`); the
last two have exit codes of their own.

Exit codes (documented in the README):
    0 unsat, 10 sat, 20 unknown, 30 timeout, 2 usage error, 3 bad input (model, property,
    mismatch, missing file), 4 internal error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verifier.allocator import keep_freed_memory
from verifier.arguments import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    MAX_TIMEOUT,
    WATCHDOG_GRACE,
    guarded,
    output_file,
    print_error,
    seed_value,
    timeout_seconds,
)
from verifier.config import BAB_MODES, BOUND_METHODS, METHODS  # choices only: no torch import
from verifier.errors import InputError
from verifier.interrupts import interrupts_outside_imports

if TYPE_CHECKING:  # imported where used: Ctrl-C during start-up must reach main()'s boundary
    from verifier.progress_line import ProgressLine
    from verifier.result import Result

__all__ = ["EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_INTERNAL", "EXIT_USAGE", "main"]


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="verify",
        description="Verify a VNN-LIB property of an ONNX model. Subcommands: 'verify bounds ...', "
                    "'verify bench ...' (benchmark suites), 'verify soundness ...' (hidden-counterexample "
                    "benchmarks).",
        epilog="exit codes: 0 unsat, 10 sat, 20 unknown, 30 timeout, 2 usage, 3 bad input, 4 internal error, "
               "130 interrupted",
    )
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("spec", help="VNN-LIB property file (states the violation)")
    parser.add_argument("--timeout", type=timeout_seconds, default=None,
                        help=f"wall-clock limit in seconds (positive, finite, at most {int(MAX_TIMEOUT)})")
    parser.add_argument("--out", type=output_file, default=None,
                        help="write the VNN-COMP result file here (its folder must exist)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--certificate", type=output_file, default=None,
                        help="on unsat, write a proof certificate here (check it with verify-check "
                             "MODEL SPEC FILE; see the README, 'Checking an unsat answer')")
    parser.add_argument("--bab", default="auto", choices=BAB_MODES,
                        help="branch and bound after the incomplete methods: auto (input splitting for "
                             "at most 16 free input dimensions, else ReLU splitting), input, relu "
                             "(beta-CROWN; on a network without ReLU-like neurons, splitting its "
                             "Sigmoid, Tanh... neurons), none")
    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="auto: the full pipeline (default); milp (HiGHS) or smt (z3): an exact engine "
                             "after intervals and CROWN, for small networks; sdp: bounds, attacks, "
                             "alpha-CROWN, then the certified low-rank SDP bound, no branch and bound "
                             "(ReLU-like networks)")
    parser.add_argument("--sdp-before-bab", action="store_true",
                        help="with --method auto: try the low-rank SDP bound on the clauses alpha-CROWN "
                             "left open before branch and bound")
    _common(parser)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when torch sees a GPU; "
                        "default cpu)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed, 0 .. 2**32-1 (default 0)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="one status line on standard error: the step, the domains left, the best bound, "
                             "the time left (default: on when standard error is a terminal)")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")


def _bounds_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verify bounds", description="Print certified output bounds.")
    parser.add_argument("model")
    parser.add_argument("spec")
    parser.add_argument("--method", default="crown", choices=BOUND_METHODS,
                        help="bound method (default crown; sdp: low-rank SDP relaxation for the spec rows)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--refine-seconds", type=timeout_seconds, default=None,
                        help="seconds CROWN's backward refinement of intermediate bounds may take (default: no "
                             "limit); the neurons left keep forward-mode or interval bounds, as certified")
    _common(parser)
    return parser


class _Emitter:
    """Prints the final answer exactly once (the main thread or the timeout watchdog)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.done = False

    def result(self, result: Result) -> int:
        from verifier.report import human_text, write_vnncomp

        with self.lock:
            if self.done:
                return EXIT_CODES[result.status.value]
            self.done = True
            if self.args.out:
                write_vnncomp(self.args.out, result)
            try:
                print(json.dumps(result.to_json()) if self.args.json else human_text(result), flush=True)
            except BrokenPipeError:  # the reader went away (``verify ... | head -1``): the verdict stands
                _silence_stdout()
            return EXIT_CODES[result.status.value]

    def error(self, message: str, code: int, elapsed: float) -> int:
        """Prints the error (never a verdict); the result file says ``error`` unless the run
        was interrupted. Imports nothing on that path: Ctrl-C may have stopped an import
        halfway (numpy's, say), and importing it again would fail."""
        with self.lock:
            if self.done:
                return code
            self.done = True
            if getattr(self.args, "out", None) and code != EXIT_INTERRUPTED:
                from verifier.report import write_vnncomp

                try:
                    write_vnncomp(self.args.out, None, error=True)
                except OSError as exc:
                    message += f" (and the result file could not be written: {exc})"
            if getattr(self.args, "json", False):
                payload = {"status": "error", "time": round(elapsed, 6), "counterexample": None,
                           "stats": {}, "error": message}
                print(json.dumps(payload), flush=True)
            print(f"error: {message}", file=sys.stderr, flush=True)
            return code


def _silence_stdout() -> None:
    """Points standard output at the null device, so that the interpreter's final flush of a
    closed pipe raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _check_device(device: str) -> str:
    """The torch device of ``--device`` (``auto``: ``cuda`` when torch sees a GPU, else ``cpu``).

    Raises:
        InputError: CUDA asked for but absent, or not a device name.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    try:
        torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device}: not a torch device name") from None
    return device


def _start_watchdog(emitter: _Emitter, timeout: float, start: float) -> threading.Timer:
    """Emits ``timeout`` and exits if the run overshoots its limit by more than the grace.

    The caller cancels the returned timer once it has answered; a watchdog that fires after
    the answer was printed does nothing.
    """

    from verifier.result import Result, Status

    def fire() -> None:
        with emitter.lock:
            if emitter.done:
                return
        code = emitter.result(Result(Status.TIMEOUT, time.monotonic() - start, None, {"watchdog": True}))
        os._exit(code)

    timer = threading.Timer(max(0.0, timeout + WATCHDOG_GRACE - (time.monotonic() - start)), fire)
    timer.daemon = True
    timer.start()
    return timer


def _progress_line(args: argparse.Namespace, deadline_at: float | None) -> ProgressLine | None:
    """The status line of ``--progress`` (by default: when standard error is a terminal)."""
    from verifier.progress_line import ProgressLine

    wanted = sys.stderr.isatty() if args.progress is None else args.progress
    return ProgressLine(sys.stderr, deadline_at) if wanted else None


def _run_verify(argv: Sequence[str], start: float) -> int:
    args = _main_parser().parse_args(argv)
    emitter = _Emitter(args)
    watchdog: threading.Timer | None = None

    def work() -> int:
        nonlocal watchdog
        if args.timeout is not None:
            watchdog = _start_watchdog(emitter, args.timeout, start)
        from verifier.problem import load_problem

        problem = load_problem(args.model, args.spec)  # bad input is found before the costly imports
        loaded = time.monotonic()
        device = _check_device(args.device)
        from verifier.api import verify_problem
        from verifier.config import default_config
        from verifier.result import Result

        imported = time.monotonic()
        remaining = None if args.timeout is None else max(0.0, args.timeout - (imported - start))
        config = replace(default_config(device, args.seed), bab=args.bab, method=args.method,
                         sdp_before_bab=args.sdp_before_bab)
        line = _progress_line(args, None if remaining is None else time.monotonic() + remaining)
        try:
            proof = None if args.certificate is None else (Path(args.certificate), Path(args.spec))
            result = verify_problem(problem, remaining, config, progress=line, certificate=proof)
        finally:
            if line is not None:
                line.close()
        seconds = result.stats.setdefault("seconds", {})
        seconds.update(load=round(loaded - start, 6), imports=round(imported - loaded, 6))
        result = Result(result.status, time.monotonic() - start, result.counterexample, result.stats)
        return emitter.result(result)

    try:
        return guarded(work, lambda message, code: emitter.error(message, code, time.monotonic() - start),
                       args.debug)
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _bounds_payload(args: argparse.Namespace, device: str) -> dict[str, Any]:
    from verifier.api import numerical_hygiene
    from verifier.config import default_config
    from verifier.output_bounds import spec_bounds
    from verifier.problem import load_problem

    start = time.monotonic()
    numerical_hygiene(args.seed)
    problem = load_problem(args.model, args.spec)
    config = default_config(device, args.seed)
    config = replace(config, crown=replace(config.crown, refine_seconds=args.refine_seconds))
    regions = spec_bounds(problem, args.method, config)
    return {"method": args.method, "regions": regions, "time": round(time.monotonic() - start, 6)}


def _run_bounds(argv: Sequence[str], start: float) -> int:
    args = _bounds_parser().parse_args(argv)
    emitter = _Emitter(args)

    def work() -> int:
        payload = _bounds_payload(args, _check_device(args.device))
        if args.json:
            print(json.dumps(payload))
            return 0
        for index, region in enumerate(payload["regions"]):
            print(f"region {index}:")
            for j, (lo, hi) in enumerate(zip(region["output_lower"], region["output_upper"], strict=True)):
                print(f"  Y_{j} in [{lo:.9g}, {hi:.9g}]")
            for k, rows in enumerate(region["clause_lower"]):
                print(f"  clause {k} row lower bounds: {', '.join(f'{v:.6g}' for v in rows)}")
            if region.get("refinement_cut"):
                print("  (--refine-seconds left some intermediate neurons with forward-mode or interval bounds)")
        return 0

    return guarded(work, lambda message, code: emitter.error(message, code, time.monotonic() - start), args.debug)


def _run_worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="verify worker", description="A warm worker: imports the verifier once "
                                     "and runs each 'verify --worker SOCKET ...' command in a forked process.")
    parser.add_argument("socket", help="the Unix socket to serve (created owner-only; removed on exit)")
    parser.add_argument("--detach", action="store_true",
                        help="start the worker in a session of its own (stderr to SOCKET.log), wait until it is "
                             "ready, print 'ready' and exit")
    args = parser.parse_args(argv)
    from pathlib import Path

    from verifier.warm.launch import start_detached
    from verifier.warm.server import serve

    def work() -> int:
        if not args.detach:
            return serve(Path(args.socket), main)
        start_detached(Path(args.socket))
        print("ready")
        return 0

    return guarded(work, print_error)


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """Entry point of the ``verify`` command; returns the process exit code. ``started``: the
    ``time.monotonic()`` the run's clock starts from (a warm worker passes its client's)."""
    start = time.monotonic() if started is None else started
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    try:
        with interrupts_outside_imports():  # from here on, Ctrl-C never lands inside an import
            from verifier.warm.client import forward, worker_option

            worker, argv = worker_option(argv)
            if worker is not None:
                code = forward(worker, argv, start)
                if code is not None:
                    return code
                print(f"# no warm worker answers at {worker}: running in this process", file=sys.stderr)
            if argv and argv[0] == "worker":
                return _run_worker(argv[1:])
            if argv and argv[0] == "bounds":
                return _run_bounds(argv[1:], start)
            if argv and argv[0] == "bench":
                from verifier.bench.cli import main as bench_main

                return bench_main(argv[1:])
            if argv and argv[0] == "soundness":
                from verifier.soundness.cli import main as soundness_main

                return soundness_main(argv[1:])
            return _run_verify(argv, start)
    except KeyboardInterrupt:  # outside a command's own boundary (argument parsing, imports)
        return print_error("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
