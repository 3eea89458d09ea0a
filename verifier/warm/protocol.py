"""The warm worker's wire format: newline-terminated JSON messages on a Unix stream socket.

Client to worker: one request ``{"argv", "cwd", "env", "started", "memory"}`` sent together with
the client's stdin, stdout and stderr as ``SCM_RIGHTS`` descriptors; later, zero or more
``{"signal": N}`` lines (a signal the client received, to pass on). Worker to client: one
``{"exit": CODE}`` line once the forked process has ended (``CODE`` negative: killed by that
signal). A client that hangs up ends its forked process (SIGKILL).

Standard library only: the client imports this module and must start fast.
"""

from __future__ import annotations

import json
import socket

TYPE_CHECKING = False  # typing is not imported: the client must start fast
if TYPE_CHECKING:
    from typing import Any

STREAMS = 3  # stdin, stdout, stderr
MAX_LINE = 1 << 20


def send_message(conn: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Sends one JSON line (with ``fds`` attached to its first byte, if given)."""
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], fds)
    else:
        conn.sendall(data)


class LineReader:
    """Reads newline-terminated JSON messages (and descriptors sent with them) from a socket."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.fds: list[int] = []

    def read(self) -> dict[str, Any] | None:
        """The next message, or None when the peer hung up first.

        Raises:
            ValueError: a line that is not a JSON object, or longer than ``MAX_LINE``.
        """
        while b"\n" not in self.buffer:
            data, fds, _, _ = socket.recv_fds(self.conn, 65536, STREAMS)
            self.fds.extend(fds)
            if not data:
                return None
            self.buffer += data
            if len(self.buffer) > MAX_LINE:
                raise ValueError("message too long")
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("message is not a JSON object")
        return message
