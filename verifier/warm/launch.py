"""Starting and stopping a warm worker from a driver (``verify bench``, ``verify soundness check``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from verifier.errors import InputError

READY_SECONDS = 300.0


def _command(path: Path) -> list[str]:
    """The worker's command line, in the interpreter running this. ``-P``: the current
    directory is not put first on ``sys.path`` (``-m`` would), so the worker imports the
    ``verifier`` package the driver imported (``PYTHONPATH``, then site), never a folder of
    that name where the run was started (an older checkout: its code would answer)."""
    return [sys.executable, "-P", "-m", "verifier.cli", "worker", str(path)]


@contextlib.contextmanager
def running_worker(env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """A worker (``python -m verifier.cli worker SOCKET`` in this interpreter) serving a socket
    in a fresh owner-only folder, for the duration of the ``with`` block; yields the socket's
    path once the worker is ready, and stops it (SIGTERM, then SIGKILL) afterwards.

    Raises:
        InputError: the worker did not become ready within :data:`READY_SECONDS`.
    """
    with tempfile.TemporaryDirectory(prefix="verify-worker-") as folder:
        path, log = Path(folder) / "worker.sock", Path(folder) / "worker.log"
        with log.open("w") as errors:
            proc = subprocess.Popen(_command(path), stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ if env is None else env), text=True)
        try:
            _await_ready(proc, log)
            yield path
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _await_ready(proc: subprocess.Popen[str], log: Path) -> None:
    """Blocks until the worker prints ``ready`` (raises InputError when it dies or stalls)."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(READY_SECONDS)
    if not line or line[0].strip() != "ready":
        proc.kill()
        proc.wait()
        error = log.read_text(errors="replace")[-500:]
        raise InputError(f"the warm worker did not start: {error.strip() or 'no ready line'}")


def start_detached(path: Path) -> None:
    """Starts a worker on ``path`` that outlives this process: its own session, no inherited
    descriptors, stderr appended to ``path`` + ``.log``; returns once it is ready.

    Raises:
        InputError: it did not become ready within :data:`READY_SECONDS`.
    """
    log = Path(f"{path}.log")
    with log.open("a") as errors:
        proc = subprocess.Popen(_command(path), stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, text=True)
    try:
        _await_ready(proc, log)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()

