"""The Ray backend: each instance is a Ray task that runs :func:`verifier.bench.run.evaluate`
on some node (the tool in its own process there, with the same limits) and returns the row to
the driver, which writes it. A task whose worker dies is retried (``BenchConfig.retries``) and
then recorded as ``error``. The instance files must be at the same paths on every node (a
shared file system, or a single machine)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from verifier.bench.jobs import BenchConfig, Finished, Job, evaluate
from verifier.bench.results import ResultRow
from verifier.errors import InputError


def _connect(address: str) -> bool:
    """Connects this process to Ray (a local instance when ``auto`` finds no cluster); True when
    this call connected it (the caller then disconnects it: the console scripts end the
    process without the interpreter's shutdown, so Ray's exit hook would not run)."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs the ray package: pip install 'ray>=2.9'") from None
    if ray.is_initialized():
        return False
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:  # no cluster running: a local Ray instance on this machine
            ray.init(log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            raise InputError(f"--ray {address}: cannot connect ({exc})") from None
    return True


def _evaluate_task(job: Job, config: BenchConfig) -> Finished:
    return evaluate(job[0], job[1], config.limits)


def run_on_ray(jobs: Sequence[Job], config: BenchConfig) -> Iterator[Finished]:
    """Yields each job's result as its task ends (see the module docstring)."""
    import ray

    connected = _connect(config.ray or "auto")
    cpus = float(config.limits.threads or 1)
    remote = ray.remote(num_cpus=cpus, max_retries=config.retries, retry_exceptions=False)(_evaluate_task)
    refs: dict[Any, Job] = {remote.remote(job, config): job for job in jobs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                job = refs.pop(ref)
                try:
                    yield ray.get(ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    tool, inst = job
                    yield (ResultRow(tool.name, inst.benchmark, inst.onnx, inst.vnnlib, "error", 0.0, inst.expected, "",
                                     inst.timeout, "", f"ray task failed: {type(exc).__name__}"),
                           {"error": str(exc)[-500:]})
    finally:  # interrupted: the tasks stop, and their tools with them (see isolation.run_instance)
        for ref in refs:
            ray.cancel(ref)
        if connected:
            ray.shutdown()
