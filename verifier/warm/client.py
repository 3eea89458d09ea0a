"""``verify --worker SOCKET ...``: hand this command to a warm worker and wait for its exit code.

Standard library only (no torch, numpy or onnx), so the client process starts in tens of
milliseconds; see :mod:`verifier.warm` for what the worker does with the request.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

from verifier.warm.protocol import LineReader, send_message


def worker_option(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The value of ``--worker SOCKET`` (or ``--worker=SOCKET``) and the other arguments."""
    rest = list(argv)
    for i, arg in enumerate(rest):
        if arg == "--worker" and i + 1 < len(rest):
            return rest[i + 1], rest[:i] + rest[i + 2:]
        if arg.startswith("--worker="):
            return arg.split("=", 1)[1], rest[:i] + rest[i + 1:]
    return None, rest


def forward(path: str, argv: Sequence[str], started: float) -> int | None:
    """Runs ``verify ARGV`` in the worker at ``path``; returns its exit code (128 + N when a
    signal N ended it), or None when no worker answers there (nothing was run)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "started": started,
               "memory": list(resource.getrlimit(resource.RLIMIT_AS))}
    sys.stdout.flush()
    sys.stderr.flush()
    send_message(conn, request, [0, 1, 2])

    def pass_on(signum: int, frame: FrameType | None) -> None:
        send_message(conn, {"signal": signum})

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, pass_on)
    try:
        reply = LineReader(conn).read()
    except (OSError, ValueError):
        reply = None
    finally:
        conn.close()
    if reply is None or not isinstance(reply.get("exit"), int):
        print("error: the warm worker ended without an exit status (internal error)", file=sys.stderr)
        return 4
    code = int(reply["exit"])
    return code if code >= 0 else 128 - code
