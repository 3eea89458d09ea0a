"""``verify soundness generate|validate|check``.

    verify soundness generate --out DIR [--arch NAME]... [--activation A]... [--eps E]...
                              [--count N] [--planted K] [--unplanted K] [--seed S] [--epochs E]
    verify soundness validate DIR
    verify soundness check DIR [--tool NAME='CMD {onnx} {vnnlib} {timeout} {result}']...
                           [--results FILE.csv] [--jobs N] [--timeout-scale S] [--filter RE] [--limit N]

Exit codes: 0 done (check: no soundness bug found; validate: every planted point confirmed),
1 check: some tool made an unsound claim, gave an invalid witness or contradicted the ground
truth; validate: a planted point was not confirmed; 2 usage error (a bad option value such as
``--jobs 0``), 3 bad input, 4 internal error (a bug), 130 interrupted (check keeps its results;
the same command resumes). Each prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from verifier.errors import InputError

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
_GENERATE_ORDER = ("planted", "hidden", "unsat", "dropped")


def _generate(argv: Sequence[str]) -> int:
    from dataclasses import replace

    from verifier.bench.progress import Progress
    from verifier.soundness.architectures import ACTIVATIONS, PRESETS
    from verifier.soundness.generate import GenerateConfig, generate, plan_models

    parser = argparse.ArgumentParser(prog="verify soundness generate",
                                     description="Train networks with hidden planted counterexamples and write a "
                                                 "benchmark (VNN-COMP layout plus counterexamples.jsonl).")
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    parser.add_argument("--arch", action="append", default=None,
                        help=f"repeatable: mlp, cnn, all or one of {', '.join(PRESETS)} (default all)")
    parser.add_argument("--activation", action="append", default=None, choices=ACTIVATIONS,
                        help="repeatable (default all three)")
    parser.add_argument("--eps", action="append", type=float, default=None, help="repeatable ℓ∞ radius (default 0.05)")
    parser.add_argument("--count", type=int, default=None,
                        help="models to train (default: one per architecture and activation)")
    parser.add_argument("--planted", type=int, default=4, help="boxes with a planted counterexample per model")
    parser.add_argument("--unplanted", type=int, default=2, help="candidate unsat boxes per model (kept when proven)")
    parser.add_argument("--unplanted-scale", type=float, default=0.25,
                        help="radius of an unplanted box as a fraction of the model's eps (default 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 400)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-instance timeout in instances.csv")
    parser.add_argument("--verify-timeout", type=float, default=30.0,
                        help="seconds our verifier gets to prove an unplanted box")
    args = parser.parse_args(argv)
    config = GenerateConfig(tuple(args.arch or ["all"]), tuple(args.activation or ACTIVATIONS),
                            tuple(args.eps or [0.05]), args.count, args.planted, args.unplanted,
                            args.unplanted_scale, args.seed, args.timeout, args.verify_timeout)
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError("--epochs must be at least 1")
        config = replace(config, train=replace(config.train, epochs=args.epochs,
                                               check_every=min(config.train.check_every, args.epochs)))
    plans = plan_models(config)
    results = generate(args.out, config, Progress(len(plans), order=_GENERATE_ORDER))
    planted = sum(w.tally["planted"] for w in results)
    unsat = sum(w.tally["unsat"] for w in results)
    print(f"{planted + unsat} instances ({planted} with a planted counterexample, {unsat} proven unsat) in {args.out}")
    return 0


def _validate(argv: Sequence[str]) -> int:
    from verifier.soundness.validate import validate, validation_table

    parser = argparse.ArgumentParser(prog="verify soundness validate",
                                     description="Re-check every planted counterexample with onnxruntime and "
                                                 "measure how often our default PGD finds a counterexample.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    checks = validate(args.folder, args.seed)
    print(validation_table(checks))
    bad = [c for c in checks if not c.confirmed]
    for check in bad:
        print(f"NOT CONFIRMED: {check.onnx} {check.vnnlib}: {check.reason}", file=sys.stderr)
    return EXIT_FAILED if bad else 0


def _check(argv: Sequence[str]) -> int:
    import os

    from verifier.bench.cli import add_run_options, chosen_tools, warm_jobs
    from verifier.bench.instances import select_instances
    from verifier.bench.isolation import Limits
    from verifier.bench.progress import Progress
    from verifier.bench.results import ResultsFile
    from verifier.bench.run import BenchConfig, pending_jobs, run_bench
    from verifier.soundness.check import (
        planted_keys,
        soundness_table,
        tally_soundness,
        unsound_rows,
    )

    parser = argparse.ArgumentParser(prog="verify soundness check",
                                     description="Run verifiers on a soundness benchmark and report unsound claims "
                                                 "and invalid witnesses.")
    parser.add_argument("folder", type=Path, help="a benchmark made by 'verify soundness generate'")
    add_run_options(parser)
    parser.add_argument("--results", type=Path, default=None,
                        help="results CSV (default bench-results/soundness/<folder>.csv, an ignored folder); resumable")
    args = parser.parse_args(argv)
    tools = chosen_tools(args)
    planted = planted_keys(args.folder)
    instances = select_instances([args.folder], args.timeout_scale, args.filter, args.limit)
    limits = Limits(grace=args.grace, threads=max(1, (os.cpu_count() or 1) // args.jobs))
    path = args.results or (Path("bench-results") / "soundness"
                            / (re.sub(r"[^\w.+-]", "_", args.folder.resolve().name) + ".csv"))
    results = ResultsFile(path)
    jobs = pending_jobs(tools, instances, results)
    print(f"{len(instances)} instances x {len(tools)} tool(s); {len(jobs)} to run; results in {path}", file=sys.stderr)
    try:
        with warm_jobs(args, jobs, limits.threads or 1) as runnable:
            run_bench(runnable, BenchConfig(tools, limits, args.jobs), results,
                      None if args.quiet else Progress(len(jobs)))
    except KeyboardInterrupt:
        print(f"\ninterrupted: rows kept in {path}; run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    keys = {(t.name, *i.key) for t in tools for i in instances}
    rows = [r for r in results.done if r.key in keys]
    table = tally_soundness(rows, planted)
    print(soundness_table(table))
    for row in unsound_rows(rows, planted):
        what = "unsat on an instance with a planted counterexample" if row.status == "unsat" else (
            f"sat with an {row.witness or 'unchecked'} witness" if row.witness != "valid"
            else "valid witness on an instance the generator proved unsat")
        print(f"- {row.tool}: {row.onnx} {row.vnnlib}: {what}")
    return EXIT_FAILED if any(t.failed for t in table.values()) else 0


def main(argv: Sequence[str]) -> int:
    """``verify soundness ...``; returns the exit code (see the module docstring)."""
    from verifier.bench.cli import guarded

    commands = {"generate": _generate, "validate": _validate, "check": _check}
    if not argv or argv[0] not in commands:
        print("usage: verify soundness {generate,validate,check} ...", file=sys.stderr)
        return 2
    return guarded(commands[argv[0]], argv[1:])
