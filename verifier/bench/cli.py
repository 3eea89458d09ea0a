"""``verify bench``: run suites, then ``verify bench plot`` and ``verify bench report``.

    verify bench PATH... [--tool NAME='CMD {onnx} {vnnlib} {timeout} {result}']... [--results FILE.csv]
                 [--jobs N | --ray auto|ADDRESS] [--timeout-scale S] [--filter REGEX] [--limit N]
                 [--memory-mb M] [--grace S] [--threads T]
    verify bench plot RESULTS.csv... --out PLOT.png
    verify bench report RESULTS.csv... [--out REPORT.md]

Exit codes: 0 done with no wrong answer, 1 some answer was wrong (a disagreement with
expected.csv or an invalid witness), 2 usage error (argparse: a bad option value such as
``--jobs 0``), 3 bad input (an unreadable, non-UTF-8 or malformed file, an instance file outside
its benchmark folder, a results path that cannot be written), 4 internal error (a bug), 130
interrupted (the results so far are kept; the same command resumes). Each prints one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from verifier.arguments import (
    EXIT_INTERRUPTED,
    non_negative_finite_float,
    non_negative_int,
    positive_finite_float,
    positive_int,
    print_error,
)
from verifier.arguments import guarded as run_guarded
from verifier.bench.instances import benchmark_folders, select_instances
from verifier.bench.isolation import Limits
from verifier.bench.progress import Progress
from verifier.bench.results import ResultRow, ResultsFile, read_results
from verifier.bench.run import BenchConfig, Job, pending_jobs, run_bench
from verifier.bench.score import rescore, score_table
from verifier.bench.tools import Tool, default_tool, parse_tool
from verifier.errors import InputError

EXIT_WRONG = 1


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of running tools on instances, shared by ``verify bench`` and ``verify
    soundness check``: tools, jobs, instance selection, grace period, progress."""
    parser.add_argument("--tool", action="append", default=[], metavar="NAME='COMMAND'",
                        help="a verifier as a command template with {onnx} {vnnlib} {timeout} {result}; "
                             "repeatable; 'verifier' is ours (the default when no --tool is given)")
    parser.add_argument("--verifier-options", default="", help="extra options for our verifier (e.g. '--bab relu')")
    parser.add_argument("--jobs", type=positive_int, default=1, help="instances at once on this machine (default 1)")
    parser.add_argument("--timeout-scale", type=positive_finite_float, default=1.0,
                        help="multiply every instances.csv timeout (positive)")
    parser.add_argument("--filter", default=None, metavar="REGEX",
                        help="only instances whose benchmark/onnx/vnnlib matches")
    parser.add_argument("--limit", type=non_negative_int, default=None, help="at most this many instances")
    parser.add_argument("--grace", type=non_negative_finite_float, default=15.0,
                        help="seconds past the timeout before a tool is killed")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--cold", action="store_true",
                        help="run our verifier as a fresh process per instance (default: a warm worker that has "
                             "imported everything forks one per instance; times still run from launch to exit)")


def chosen_tools(args: argparse.Namespace) -> tuple[Tool, ...]:
    """The tools of :func:`add_run_options`'s ``--tool`` options (ours when none is given).

    Raises:
        InputError: a malformed template or repeated names.
    """
    tools = tuple(parse_tool(t, args.verifier_options) for t in args.tool) or (default_tool(args.verifier_options),)
    if len({t.name for t in tools}) != len(tools):
        raise InputError("--tool names must differ")
    return tools


@contextlib.contextmanager
def warm_jobs(args: argparse.Namespace, jobs: list[Job], threads: int) -> Iterator[list[Job]]:
    """``jobs``, with our verifier served by a warm worker (:mod:`verifier.warm`) for the
    duration of the ``with`` block, unless ``--cold``, ``--ray`` (other machines) or none of
    the jobs is ours."""
    ours = default_tool(args.verifier_options)
    if args.cold or getattr(args, "ray", None) or not any(tool == ours for tool, _ in jobs):
        yield jobs
        return
    from verifier.warm.launch import running_worker

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with running_worker(env) as socket:
        warm = default_tool(args.verifier_options, socket)
        yield [(warm if tool == ours else tool, instance) for tool, instance in jobs]


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verify bench", description="Run benchmark suites (VNN-COMP layout), "
                                     "check and score the answers. Also: 'verify bench plot', 'verify bench report'.")
    parser.add_argument("paths", nargs="+", type=Path, help="benchmark folders (with instances.csv) or trees of them")
    add_run_options(parser)
    parser.add_argument("--results", type=Path, default=None,
                        help="results CSV (default bench-results/<benchmarks>.csv); "
                             "a .jsonl file beside it gets details")
    parser.add_argument("--ray", default=None, metavar="auto|ADDRESS", help="run the instances on a Ray cluster")
    parser.add_argument("--memory-mb", type=positive_int, default=None, help="address-space limit per instance")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="OMP_NUM_THREADS per instance (default: cores / jobs)")
    return parser


def default_results_path(paths: Sequence[Path]) -> Path:
    """``bench-results/<benchmark names>.csv``: the same arguments give the same file (resume)."""
    names = [f.name for f in benchmark_folders(paths)]
    stem = "+".join(names) if len(names) <= 3 else f"{'+'.join(names[:3])}+{len(names) - 3}more"
    return Path("bench-results") / (re.sub(r"[^\w.+-]", "_", stem) + ".csv")


def _run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    tools = chosen_tools(args)
    instances = select_instances(args.paths, args.timeout_scale, args.filter, args.limit)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    limits = Limits(grace=args.grace, memory_mb=args.memory_mb, threads=threads)
    path = args.results or default_results_path(args.paths)
    results = ResultsFile(path)
    jobs = pending_jobs(tools, instances, results)
    skipped = len(tools) * len(instances) - len(jobs)
    print(f"{len(instances)} instances x {len(tools)} tool(s); {skipped} already in {path}, {len(jobs)} to run",
          file=sys.stderr)
    try:
        with warm_jobs(args, jobs, threads) as runnable:
            run_bench(runnable, BenchConfig(tools, limits, args.jobs, args.ray), results,
                      None if args.quiet else Progress(len(jobs)))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(results.done)} rows kept in {path}; run the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    keys = {(t.name, *i.key) for t in tools for i in instances}
    rows = [r for r in results.done if r.key in keys]
    print(score_table(rows))
    print(f"results: {path}", file=sys.stderr)
    return EXIT_WRONG if "no" in rescore(rows) else 0


def _plot(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="verify bench plot", description="Cactus plot: instances solved vs time.")
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the PNG (or PDF/SVG) file to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    from matplotlib.backend_bases import FigureCanvasBase

    from verifier.bench.plot import cactus_plot

    formats = FigureCanvasBase.get_supported_filetypes()
    if args.out.suffix.lstrip(".").lower() not in formats:
        raise InputError(f"--out {args.out}: unknown image format {args.out.suffix!r}; use one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    rows = [r for p in args.results for r in _read(p)]
    try:
        cactus_plot(rows, args.out, args.title)
    except OSError as exc:
        raise InputError(f"--out {args.out}: cannot write it: {exc.strerror or exc}") from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _report(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="verify bench report", description="Markdown summary of results files.")
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    args = parser.parse_args(argv)
    from verifier.bench.report import markdown_report

    rows = [r for p in args.results for r in _read(p)]
    text = markdown_report(rows, [str(p) for p in args.results])
    if args.out:
        try:
            args.out.write_text(text)
        except OSError as exc:
            raise InputError(f"--out {args.out}: cannot write it: {exc.strerror or exc}") from None
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def _read(path: Path) -> list[ResultRow]:
    if not path.is_file():
        raise InputError(f"{path}: no such results file")
    return read_results(path)


def guarded(command: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Runs ``command(argv)`` inside the error boundary of a subcommand
    (:func:`verifier.arguments.guarded`): its exit code, or :class:`InputError` -> 3, Ctrl-C
    -> 130, any other exception -> 4, each with one ``error:`` line on stderr and no traceback.
    Usage errors stay argparse's ``SystemExit(2)``."""
    return run_guarded(lambda: command(argv), print_error)


def main(argv: Sequence[str]) -> int:
    """``verify bench ...``; returns the exit code (see the module docstring)."""
    if argv and argv[0] == "plot":
        return guarded(_plot, argv[1:])
    if argv and argv[0] == "report":
        return guarded(_report, argv[1:])
    return guarded(_run, argv)
