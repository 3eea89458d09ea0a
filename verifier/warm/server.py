"""``verify worker SOCKET``: import everything once, then fork a process per request.

Per connection the server forks a *session*, which reads the request (:mod:`.protocol`) and
forks the *worker* that runs it: the worker takes over the client's standard streams, working
directory, environment (and ``OMP_NUM_THREADS`` as torch's thread count) and address-space
limit, then runs the command line's entry point (:func:`verifier.cli.main`, passed in) on the
client's arguments with the client's start time, and exits with its exit code. The session
passes on signals the client forwards, kills the worker (SIGKILL) when the client hangs up (a
client killed by a benchmark runner), and sends the worker's exit status back.

Fork safety: the server only imports modules; it never runs a torch operation, so no OpenMP
or MKL thread pool exists in it, and each worker starts its own as a fresh process would.
Only connections from the same user are served; the socket file is made owner-only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verifier.errors import InputError
from verifier.warm.protocol import STREAMS, LineReader, send_message

PRELOAD = ("verifier.api", "verifier.problem", "verifier.graph.loader", "verifier.witness",
           "verifier.output_bounds", "verifier.exact.check", "verifier.bab.input_split", "verifier.bab.relu_split")
"""Modules the server imports before serving: everything a verification run may import (the
command line itself is the caller's)."""


def preload() -> None:
    """Imports :data:`PRELOAD` (and with them torch, onnx, onnxruntime and the solvers), and
    builds onnx's operator-schema registry, which its first lookup builds (about 20 ms that
    every forked run would otherwise pay again); no thread is started."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import onnx.defs

    onnx.defs.get_schema("Relu", onnx.defs.onnx_opset_version())


def _listen(path: Path) -> socket.socket:
    """A listening socket at ``path``; a stale file there (no server answers) is replaced.

    Raises:
        InputError: another worker serves ``path``, or the path cannot be bound.
    """
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            raise InputError(f"{path}: a worker already serves this socket")
        except OSError:
            path.unlink()
        finally:
            probe.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
    except OSError as exc:
        server.close()
        raise InputError(f"{path}: cannot create the worker socket: {exc.strerror or exc}") from None
    os.chmod(path, 0o600)
    server.listen(64)
    return server


Command = Callable[[list[str], float], int]
"""A command line's entry point: ``(argv, started) -> exit code`` (:func:`verifier.cli.main`)."""


def serve(path: Path, command: Command) -> int:
    """Serves requests on the Unix socket ``path`` until SIGTERM or SIGINT (exit code 0): each
    runs ``command(argv, started)`` in a forked process. Prints ``ready`` on stdout once it
    accepts requests."""
    preload()
    server = _listen(path)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sessions are reaped by the kernel
    print("ready", flush=True)
    sys.stderr.flush()
    try:
        while True:
            conn, _ = server.accept()
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                conn.close()
                continue
            if os.fork() == 0:
                server.close()
                os._exit(_session(conn, command))
            conn.close()
    except SystemExit:
        return 0
    finally:
        server.close()
        with contextlib.suppress(OSError):
            path.unlink()


def _session(conn: socket.socket, command: Command) -> int:
    """Runs one request in a forked worker; returns the session's own exit code."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    reader = LineReader(conn)
    try:
        request = reader.read()
    except (OSError, ValueError):
        request = None
    if request is None or len(reader.fds) != STREAMS:
        return 1
    worker = os.fork()
    if worker == 0:
        conn.close()
        _run_worker(request, reader.fds, command)
    for fd in reader.fds:
        os.close(fd)
    code = _wait(worker, conn, reader)
    if code is not None:
        with contextlib.suppress(OSError):
            send_message(conn, {"exit": code})
    return 0


def _wait(worker: int, conn: socket.socket, reader: LineReader) -> int | None:
    """Waits for the worker, passing on forwarded signals; kills it when the client hangs up.
    Returns its exit status (negative: the signal that ended it), or None after a hang-up."""
    pidfd = os.pidfd_open(worker)
    try:
        while True:
            ready, _, _ = select.select([pidfd, conn.fileno()], [], [])
            if pidfd in ready:
                _, status = os.waitpid(worker, 0)
                return os.waitstatus_to_exitcode(status)
            try:
                message = reader.read()
            except (OSError, ValueError):
                message = None
            if message is None:  # the client is gone: so is its instance
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signal.SIGKILL)
                os.waitpid(worker, 0)
                return None
            signum = message.get("signal")
            if isinstance(signum, int) and signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signum)
    finally:
        os.close(pidfd)


def _run_worker(request: dict[str, Any], fds: list[int], command: Command) -> None:
    """Becomes the client's command (never returns): its streams, directory, environment and
    memory limit, then ``command`` on its arguments."""
    code = 4
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        _apply_threads(os.environ.get("OMP_NUM_THREADS"))
        memory = request.get("memory")
        if isinstance(memory, list) and len(memory) == 2:
            resource.setrlimit(resource.RLIMIT_AS, (int(memory[0]), int(memory[1])))
        code = command([str(a) for a in request["argv"]], float(request["started"]))
    except BaseException as exc:  # the worker must always exit here, never return to the server loop
        with contextlib.suppress(Exception):
            print(f"error: warm worker: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _apply_threads(value: str | None) -> None:
    """torch's intra-op thread count from ``OMP_NUM_THREADS``, as a fresh process reads it."""
    if value is None or not value.isdigit() or int(value) < 1:
        return
    import torch

    torch.set_num_threads(int(value))
