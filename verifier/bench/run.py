"""Running a suite: every (tool, instance) pair not yet in the results file, on local worker
threads (each instance in its own process) or on a Ray cluster; the driver alone writes the
results, one row as each instance finishes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from verifier.bench.instances import Instance
from verifier.bench.jobs import BenchConfig, Finished, Job, evaluate, local_backend
from verifier.bench.progress import Progress
from verifier.bench.results import ResultRow, ResultsFile
from verifier.bench.tools import Tool
from verifier.errors import InputError

__all__ = ["BenchConfig", "Finished", "Job", "evaluate", "pending_jobs", "run_bench"]


def pending_jobs(tools: Sequence[Tool], instances: Sequence[Instance], results: ResultsFile) -> list[Job]:
    """The (tool, instance) pairs the results file does not hold yet, tool by tool.

    Raises:
        InputError: the file holds rows for instance files that have changed since.
    """
    changed = results.changed(instances)
    if changed:
        first = changed[0]
        raise InputError(f"{results.path}: holds results for other contents of {first.benchmark} {first.onnx} "
                         f"{first.vnnlib} ({len(changed)} changed instance(s)); delete it or give --results NEW.csv")
    done = results.finished()
    return [(tool, inst) for tool in tools for inst in instances if (tool.name, *inst.key) not in done]


def run_bench(jobs: Sequence[Job], config: BenchConfig, results: ResultsFile,
              progress: Progress | None = None) -> list[ResultRow]:
    """Runs ``jobs`` and appends each result as it arrives; returns the new rows. On Ctrl-C
    the running tools are killed and the rows written so far stay (a later run resumes)."""
    backend: Callable[[Sequence[Job], BenchConfig], Iterator[Finished]]
    if config.ray is None:
        backend = local_backend
    else:
        from verifier.bench.ray_backend import run_on_ray

        backend = run_on_ray
    rows = []
    by_key = {(tool.name, *inst.key): inst for tool, inst in jobs}
    for row, details in backend(jobs, config):
        results.append(row, {**details, "files_sha256": by_key[row.key].files_digest()})
        rows.append(row)
        if progress is not None:
            progress.update(row.status, row.correct == "no",
                            f"{row.tool} {row.benchmark} {row.onnx} {row.vnnlib}: {row.status} ({row.time:.1f} s)")
    return rows
