"""One benchmark job (a tool on an instance), the suite's run options, and the local backend
that runs jobs in parallel processes. Shared by :mod:`.run` and :mod:`.ray_backend`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from verifier.bench.instances import Instance
from verifier.bench.isolation import Limits, LiveProcesses, run_instance
from verifier.bench.outcome import check_answer_witness
from verifier.bench.results import ResultRow
from verifier.bench.score import judge
from verifier.bench.tools import Tool

Job = tuple[Tool, Instance]
Finished = tuple[ResultRow, dict[str, Any]]


@dataclass(frozen=True)
class BenchConfig:
    """How to run a suite.

    Attributes:
        tools: the verifiers to run (each on every instance).
        limits: per-instance limits (:class:`verifier.bench.isolation.Limits`).
        jobs: instances at once on this machine (local backend).
        ray: None for local processes, else the Ray cluster: ``auto`` (the running cluster, or
            a local Ray instance when none runs) or an address ``HOST:PORT``.
        retries: how often Ray runs an instance again after its worker died.
    """

    tools: tuple[Tool, ...]
    limits: Limits = field(default_factory=Limits)
    jobs: int = 1
    ray: str | None = None
    retries: int = 1


def evaluate(tool: Tool, instance: Instance, limits: Limits, live: LiveProcesses | None = None) -> Finished:
    """Runs one instance and checks the answer: the results row and its details. Never raises
    for anything the tool does (see :mod:`verifier.bench.isolation`)."""
    record = run_instance(tool, instance, limits, live)
    status, note, witness = record.status, record.note, ""
    if status == "sat":
        try:
            from verifier.spec import parse_vnnlib
            from verifier.witness import OnnxOracle

            ok, why = check_answer_witness(OnnxOracle(instance.path(instance.onnx)),
                                           parse_vnnlib(instance.path(instance.vnnlib)), record.answer)
        except Exception as exc:  # an instance our own parsers reject cannot confirm a witness
            ok, why = False, f"witness not checkable: {type(exc).__name__}: {exc}"
        witness = "valid" if ok else "invalid"
        if not ok:
            note = f"invalid witness: {why}"
        elif instance.expected == "unsat":
            note = "valid witness on an instance expected unsat"
    row = ResultRow(tool.name, instance.benchmark, instance.onnx, instance.vnnlib, status, round(record.time, 3),
                    instance.expected, judge(status, instance.expected, witness), instance.timeout, witness, note)
    details = {"exit_code": record.exit_code, "stats": record.stats, "stderr_tail": record.stderr_tail[-500:],
               "finished_at": time.time()}
    return row, details


def local_backend(jobs: Sequence[Job], config: BenchConfig) -> Iterator[Finished]:
    """Runs the jobs ``config.jobs`` at a time on this machine; yields each as it finishes. On
    Ctrl-C (or a failing consumer) the running tools are killed and the queue dropped."""
    live = LiveProcesses()
    queue = list(jobs)
    with ThreadPoolExecutor(max(1, config.jobs)) as pool:
        running: set[Future[Finished]] = set()
        try:
            while queue or running:
                while queue and len(running) < max(1, config.jobs):
                    tool, inst = queue.pop(0)
                    running.add(pool.submit(evaluate, tool, inst, config.limits, live))
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BaseException:  # Ctrl-C or a failing consumer: stop the tools, drop the queue
            queue.clear()
            live.kill_all()
            for future in running:
                future.cancel()
            raise
