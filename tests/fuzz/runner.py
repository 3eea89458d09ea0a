"""Runs the real ``verify`` command line on one fuzz case and checks what every run must obey.

Speed: Python with torch takes seconds to start, so a case is not one ``python`` process.
A :class:`ForkServer` starts one fresh interpreter (``python -m tests.fuzz.runner --serve``,
BLAS/OpenMP pools at one thread) that imports :mod:`verifier.cli` and the modules it loads
lazily (:mod:`torch`, :mod:`onnxruntime`, and those a throwaway warm-up child reports, such as
sympy behind ``torch.autograd``), sets ``torch.set_num_threads(1)`` and runs no torch
computation. For each case it ``os.fork()``s; the child moves fds 0/1/2 to ``/dev/null``
and two files, calls ``verifier.cli.main(argv)`` and ``os._exit``\\ s with its return value
(``SystemExit`` is honoured, an escaping exception prints its traceback and exits 1, as
Python would). The server waits for the child with a hard limit and kills its process group
past it.

What is measured: :attr:`Outcome.wall` is the wall-clock time from just before ``fork`` to
reaping the child. It excludes Python and torch start-up (paid once by the server) but
includes everything the CLI does, the loading of the model and property, and its exit. In
:func:`run_subprocess` mode (the real ``python -m verifier.cli``, for a few end-to-end cases)
it is the whole process life, start-up included. With ``--json`` the CLI's own ``time``
(counted from its ``main``) is checked against the limit too, in both modes.

A separate interpreter keeps the fork clean whatever the calling process has done (pytest
runs other tests that use torch's thread pools and onnxruntime sessions before this one).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
VERDICT_CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}
DOCUMENTED_EXITS = frozenset({0, 10, 20, 30, 2, 3})
EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERNAL = 2, 3, 4
TIME_SLACK = 1.0
"""The CLI must end within ``--timeout`` plus this many seconds (README: "honoured within 1 s")."""
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""The server's environment: no idle BLAS/OpenMP worker threads exist when it forks."""
MAX_CAPTURE = 200_000
"""Characters kept of stdout and of stderr (head and tail)."""


class Expect(StrEnum):
    """What a case's construction says the answer must be, beyond the common invariants."""

    VALID = "valid"  # a well-formed, supported input: a verdict (exit 0/10/20/30)
    BAD = "bad"  # invalid by construction: exit 3, no verdict
    USAGE = "usage"  # a bad command-line value: exit 2 or 3, no verdict
    ANY = "any"  # validity unknown: any documented exit


@dataclass(frozen=True)
class Outcome:
    """One run of the CLI: exit status, time and output."""

    argv: tuple[str, ...]
    code: int | None  # exit status; None when the process died of a signal
    signal: int | None  # the signal that ended it, if any
    wall: float  # seconds; see the module docstring for what is measured
    stdout: str
    stderr: str
    killed: bool  # the harness killed it past its hard limit
    mode: str  # "fork" or "subprocess"

    def verdict(self) -> str | None:
        """The verdict printed (first stdout line, or the JSON status), or None."""
        lines = self.stdout.splitlines()
        if not lines:
            return None
        first = lines[0].strip()
        if first in VERDICT_CODES:
            return first
        payload = self.payload()
        status = payload.get("status") if payload else None
        return status if status in VERDICT_CODES else None

    def payload(self) -> dict[str, Any] | None:
        """The ``--json`` object printed on the first stdout line, if it is one."""
        lines = self.stdout.splitlines()
        if not lines or not lines[0].lstrip().startswith("{"):
            return None
        try:
            value = json.loads(lines[0])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def to_json(self) -> dict[str, Any]:
        """A plain dictionary (for failure records)."""
        return asdict(self)


def check_invariants(outcome: Outcome, expect: Expect, timeout: float | None,
                     startup: float = 0.0, interrupted: bool = False) -> list[str]:
    """The violations of the documented CLI contract by one run (empty when it obeys).

    Args:
        outcome: the run.
        expect: what the case's construction requires (see :class:`Expect`).
        timeout: the ``--timeout`` given, when it is a finite positive number, else None
            (then no time limit is checked).
        startup: extra seconds allowed for interpreter start-up (subprocess mode).
        interrupted: the harness sent SIGINT (a Ctrl-C): exit 130 or death by SIGINT is
            then allowed too, a traceback still is not.
    """
    if outcome.killed:
        return [f"hung: killed by the harness after {outcome.wall:.1f} s"]
    problems: list[str] = []
    code = outcome.code
    if interrupted and (code == 128 + signal.SIGINT or outcome.signal == signal.SIGINT):
        pass
    elif code is None:
        problems.append(f"died of signal {outcome.signal}")
    elif code == EXIT_INTERNAL:
        problems.append("exit 4 (internal error)")
    elif code not in DOCUMENTED_EXITS:
        problems.append(f"undocumented exit code {code}")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        problems.append("traceback printed")
    problems += _verdict_problems(outcome)
    if timeout is not None and outcome.wall > timeout + TIME_SLACK + startup:
        problems.append(f"ran {outcome.wall:.2f} s, past --timeout {timeout:g} + {TIME_SLACK:g} s")
    reported = (outcome.payload() or {}).get("time")
    if timeout is not None and isinstance(reported, int | float) and reported > timeout + TIME_SLACK:
        problems.append(f"reported time {reported:.2f} s, past --timeout {timeout:g} + {TIME_SLACK:g} s")
    problems += _expectation_problems(outcome, expect)
    return problems


def _verdict_problems(outcome: Outcome) -> list[str]:
    """A verdict exactly with exits 0/10/20/30 (and the matching one); ``error:`` with exit 3."""
    problems: list[str] = []
    verdict, code = outcome.verdict(), outcome.code
    if verdict is not None and code not in VERDICT_CODES.values():
        problems.append(f"verdict {verdict!r} printed with exit {code}")
    if verdict is not None and code in VERDICT_CODES.values() and VERDICT_CODES[verdict] != code:
        problems.append(f"verdict {verdict!r} printed with exit {code}")
    if verdict is None and code in VERDICT_CODES.values():
        problems.append(f"exit {code} without a verdict on the first stdout line")
    if code == EXIT_BAD_INPUT and not any(line.startswith("error: ") for line in outcome.stderr.splitlines()):
        problems.append("exit 3 without an 'error: ...' line on stderr")
    return problems


def _expectation_problems(outcome: Outcome, expect: Expect) -> list[str]:
    """What the case's construction demands of the exit code."""
    code = outcome.code
    if expect is Expect.BAD and code != EXIT_BAD_INPUT and code in DOCUMENTED_EXITS:
        return [f"input invalid by construction gave exit {code}, not 3"]
    if expect is Expect.USAGE and code not in (EXIT_USAGE, EXIT_BAD_INPUT) and code in DOCUMENTED_EXITS:
        return [f"bad command-line value gave exit {code}, not 2 or 3"]
    if expect is Expect.VALID and code in (EXIT_USAGE, EXIT_BAD_INPUT):
        return [f"valid input rejected with exit {code}"]
    return []


def _read_capture(path: Path) -> str:
    """A captured stream, keeping its head and tail when it is long."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if len(text) <= MAX_CAPTURE:
        return text
    half = MAX_CAPTURE // 2
    return text[:half] + f"\n[... {len(text) - MAX_CAPTURE} characters cut ...]\n" + text[-half:]


class ForkServer:
    """A fresh interpreter that imported the verifier once and forks one child per case.

    The constructor returns at once; the server starts in the background and the first
    :meth:`run` waits for it (so a caller can do other work, a subprocess case say, meanwhile).

    ``warmups``: argument lists of ``verify`` runs that the server first runs in throwaway
    children, only to learn which modules they import lazily (sympy through torch.fx, for
    one); it then imports those and builds ONNX's schema registry, so the children of real
    cases start warm. No torch computation runs in the server, and preloading may start no
    thread (a thread is not copied into a fork).
    """

    def __init__(self, warmups: list[list[str]] | None = None, python: str = sys.executable) -> None:
        """Starts the server process (without waiting for it)."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   **SINGLE_THREADED)
        self.process = subprocess.Popen([python, "-m", "tests.fuzz.runner", "--serve"], cwd=ROOT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pending = ["ready"]
        self.preloaded: dict[str, Any] = {}
        if warmups:
            self._send({"preload": warmups})
            self.pending.append("preload")

    def _send(self, request: dict[str, Any]) -> None:
        """Writes one request line."""
        assert self.process.stdin
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def _reply(self) -> str:
        """Reads one reply line (raises if the server died)."""
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError(f"fork server died (exit {self.process.poll()})")
        return line

    def wait_ready(self) -> None:
        """Waits until the server has started (and preloaded)."""
        while self.pending:
            kind, line = self.pending.pop(0), self._reply()
            if kind == "ready" and line.strip() != "ready":
                raise RuntimeError(f"fork server did not start (said {line!r})")
            if kind == "preload":
                self.preloaded = json.loads(line)
                before, after = self.preloaded["threads"]
                if after > before:
                    raise RuntimeError(f"preloading started threads in the fork server ({before} -> {after})")

    def run(self, argv: list[str], limit: float, sigint_after: float | None = None) -> Outcome:
        """Runs ``verify ARGV`` in a forked child, killed after ``limit`` seconds.

        ``sigint_after``: send SIGINT (a Ctrl-C) to the child's process group after so many
        seconds.
        """
        self.wait_ready()
        self._send({"argv": list(argv), "limit": limit, "sigint_after": sigint_after})
        return Outcome(**{**json.loads(self._reply()), "argv": tuple(argv), "mode": "fork"})

    def close(self) -> None:
        """Stops the server."""
        if self.process.poll() is None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_subprocess(argv: list[str], limit: float, sigint_after: float | None = None) -> Outcome:
    """Runs ``python -m verifier.cli ARGV`` as a real process (start-up included in ``wall``)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-sub-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "verifier.cli", *argv], cwd=ROOT,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            killed = _wait_subprocess(proc, start, limit, sigint_after)
            wall = time.monotonic() - start
        status = proc.returncode
        return Outcome(tuple(argv), status if status >= 0 else None, -status if status < 0 else None, wall,
                       _read_capture(out_path), _read_capture(err_path), killed, "subprocess")


def _wait_subprocess(proc: subprocess.Popen[bytes], start: float, limit: float,
                     sigint_after: float | None) -> bool:
    """Waits for ``proc``; sends SIGINT when asked, kills its group past ``limit``."""
    if sigint_after is not None:
        try:
            proc.wait(timeout=sigint_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=max(0.0, limit - (time.monotonic() - start)))
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


# --------------------------------------------------------------------------- the server side


def _child(argv: list[str], out_path: Path, err_path: Path, protocol: list[int]) -> None:
    """In the forked child: redirect fds, run the CLI, exit with its code (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)
        for fd in protocol:
            os.close(fd)
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out_path, os.O_WRONLY | os.O_CREAT),
                                (2, err_path, os.O_WRONLY | os.O_CREAT)):
            new = os.open(path, flags, 0o600)
            os.dup2(new, fd)
            os.close(new)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["verify", *argv]
        from verifier.cli import main

        code = _exit_status(main, argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # nothing left to report to
                stream.flush()
        os._exit(code)


def _exit_status(main: Any, argv: list[str]) -> int:
    """``main(argv)``'s exit status as the interpreter would make it."""
    import traceback

    try:
        return int(main(argv) or 0)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1


def _wait_child(pid: int, limit: float, sigint_after: float | None, start: float) -> tuple[int, bool]:
    """Waits for the child; SIGINT to its group when asked, SIGKILL past ``limit``."""
    pidfd = os.pidfd_open(pid)
    killed = False
    try:
        pending_sigint = sigint_after
        while True:
            elapsed = time.monotonic() - start
            wake = limit if pending_sigint is None else min(limit, pending_sigint)
            ready, _, _ = select.select([pidfd], [], [], max(0.0, wake - elapsed))
            if ready:
                break
            if pending_sigint is not None and time.monotonic() - start >= pending_sigint:
                _signal_group(pid, signal.SIGINT)
                pending_sigint = None
            elif time.monotonic() - start >= limit:
                _signal_group(pid, signal.SIGKILL)
                killed = True
                break
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return status, killed


def _signal_group(pid: int, sig: int) -> None:
    """Signals the child's process group (the child itself if the group is gone)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _serve_one(request: dict[str, Any], scratch: Path, protocol: list[int], out: TextIO) -> None:
    """Forks, runs one request, writes one JSON line of results."""
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    for path in (out_path, err_path):
        path.write_bytes(b"")
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(request["argv"], out_path, err_path, protocol)
    status, killed = _wait_child(pid, float(request["limit"]), request.get("sigint_after"), start)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    result = {"code": code if code >= 0 else None, "signal": -code if code < 0 else None, "wall": wall,
              "stdout": _read_capture(out_path), "stderr": _read_capture(err_path), "killed": killed}
    out.write(json.dumps(result) + "\n")
    out.flush()


def _lazy_modules(argv: list[str], protocol: list[int]) -> list[str]:
    """The modules a throwaway child running ``verify ARGV`` imports beyond the server's."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        before = set(sys.modules)
        code = 1
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                os.dup2(null.fileno(), 2)
                _exit_status(__import__("verifier.cli", fromlist=["main"]).main, argv)
            with os.fdopen(write_end, "w") as pipe:
                json.dump(sorted(set(sys.modules) - before), pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else []


def _preload(warmups: list[list[str]], protocol: list[int]) -> dict[str, Any]:
    """Imports what the warm-up runs imported lazily; reports the server's native threads."""
    import importlib

    threads = len(os.listdir("/proc/self/task"))
    names: list[str] = []
    for argv in warmups:
        names += [n for n in _lazy_modules(argv, protocol) if n not in names]
    imported = 0
    for name in names:
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:
            continue
    import gc

    import onnx.defs

    onnx.defs.get_all_schemas_with_history()  # ONNX builds its schema registry on first use (C++, no torch)
    gc.freeze()  # the children's garbage collector leaves the server's objects (and pages) alone
    return {"modules": imported, "threads": [threads, len(os.listdir("/proc/self/task"))]}


def serve() -> None:
    """The server loop: one JSON request per stdin line, one JSON result per stdout line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the client's
    protocol_in, protocol_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    import torch

    torch.set_num_threads(1)
    import verifier.api
    import verifier.cli
    import verifier.report  # noqa: F401

    with os.fdopen(protocol_in, "r") as requests, os.fdopen(protocol_out, "w") as out, \
            tempfile.TemporaryDirectory(prefix="fuzz-fork-") as scratch:
        out.write("ready\n")
        out.flush()
        for line in requests:
            request = json.loads(line)
            if "preload" in request:
                out.write(json.dumps(_preload(request["preload"], [protocol_in, protocol_out, null])) + "\n")
                out.flush()
                continue
            _serve_one(request, Path(scratch), [protocol_in, protocol_out, null], out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit("usage: python -m tests.fuzz.runner --serve   (started by ForkServer)")
