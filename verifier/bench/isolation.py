"""Running one instance of one tool in its own process, with a wall-clock and a memory limit.

The tool runs in a new session (its own process group) with ``RLIMIT_AS`` set to the memory
limit; when the wall-clock limit (the instance's timeout plus a grace period) expires, the whole
group gets SIGTERM, then SIGKILL. Whatever happens (a crash, a hang, an allocation refused,
a missing or garbled result file), the outcome is a record, never an exception: the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.bench.instances import Instance
from verifier.bench.outcome import ToolAnswer, read_result_file
from verifier.bench.tools import Tool


@dataclass(frozen=True)
class Limits:
    """Per-instance limits.

    Attributes:
        grace: seconds allowed past the instance's timeout before the process is killed.
        late: an answer that comes more than this many seconds after the timeout counts as
            ``timeout`` (as in VNN-COMP, a verdict after the limit scores nothing).
        memory_mb: address-space limit of the tool's process (None: none).
        threads: ``OMP_NUM_THREADS`` (and MKL's) for the tool (None: inherited).
    """

    grace: float = 15.0
    late: float = 2.0
    memory_mb: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one instance: the verdict (``sat``, ``unsat``, ``unknown``, ``timeout``,
    ``error``), the wall time, the parsed answer, the exit code, a note on errors, the tool's
    JSON stats (our CLI's) and the tail of its stderr."""

    status: str
    time: float
    answer: ToolAnswer
    exit_code: int | None
    note: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""


def _limit_memory(pid: int, megabytes: int | None) -> None:
    """Caps the address space of a freshly started process (set from outside with prlimit, as
    a pre-exec hook is unsafe in a threaded driver; the tool has not allocated much yet)."""
    if megabytes is not None:
        size = megabytes * 1024 * 1024
        with contextlib.suppress(ProcessLookupError, PermissionError):
            resource.prlimit(pid, resource.RLIMIT_AS, (size, size))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LiveProcesses:
    """The tool processes running now, so that a driver stopped by Ctrl-C can end them (they
    run in sessions of their own, which the terminal's SIGINT does not reach)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen[bytes]] = set()

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.procs.add(proc)

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.procs.discard(proc)

    def kill_all(self) -> None:
        """Kills every live tool process group (SIGKILL)."""
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def run_instance(tool: Tool, instance: Instance, limits: Limits, live: LiveProcesses | None = None) -> RunRecord:
    """Runs ``tool`` on ``instance`` (see the module docstring); ``live`` tracks the process
    while it runs."""
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as scratch:
        result = Path(scratch) / "result.txt"
        try:
            onnx, vnnlib = instance.path(instance.onnx), instance.path(instance.vnnlib)
        except OSError as exc:
            return RunRecord("error", 0.0, ToolAnswer("error"), None, f"cannot unpack an instance file: {exc}")
        command = tool.command(onnx, vnnlib, instance.timeout, result)
        env = dict(os.environ)
        if limits.threads is not None:
            env.update(OMP_NUM_THREADS=str(limits.threads), MKL_NUM_THREADS=str(limits.threads))
        out_path, err_path = Path(scratch) / "stdout", Path(scratch) / "stderr"
        start = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            try:
                proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
            except OSError as exc:
                return RunRecord("error", 0.0, ToolAnswer("error"), None, f"cannot start {command[0]!r}: {exc}")
            _limit_memory(proc.pid, limits.memory_mb)
            if live is not None:
                live.add(proc)
            try:
                code: int | None = proc.wait(instance.timeout + limits.grace)
                killed = False
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code, killed = proc.returncode, True
            except BaseException:  # the driver or the Ray task is being stopped: the tool goes too
                _kill_group(proc)
                raise
            finally:
                if live is not None:
                    live.discard(proc)
            # the tool's children (if any) go with it
            if not killed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        elapsed = time.monotonic() - start
        stderr_tail = err_path.read_bytes()[-2000:].decode(errors="replace")
        stats = _json_stats(out_path) if tool.json_stats else {}
        if killed:
            return RunRecord("timeout", elapsed, ToolAnswer("timeout"), code, "killed at the wall-clock limit",
                             stats, stderr_tail)
        answer = read_result_file(result)
        status, note = answer.status, answer.problem
        if status == "error" and code is not None and code < 0:
            note = f"killed by signal {-code}" + (f"; {note}" if note else "")
        elif status == "error" and "MemoryError" in stderr_tail:
            note = "out of memory" + (f"; {note}" if note else "")
        if status in ("sat", "unsat") and elapsed > instance.timeout + limits.late:
            status, note = "timeout", f"answered {status} after the timeout ({elapsed:.1f} s)"
        return RunRecord(status, elapsed, answer, code, note, stats, stderr_tail)


def _json_stats(path: Path) -> dict[str, Any]:
    """The ``stats`` of the JSON object on the last line of stdout (empty if there is none)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
        payload = json.loads(lines[-1]) if lines else {}
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(payload, dict):
        return {}
    stats = payload.get("stats")
    return stats if isinstance(stats, dict) else {}
