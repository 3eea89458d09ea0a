"""The warm worker's client as a script, for launchers that pay each process's start-up:
``python -S PATH/TO/verifier/warm/client_script.py SOCKET ARGS...`` runs ``verify ARGS`` in the
worker at ``SOCKET`` like ``verify --worker SOCKET ARGS...`` does, but starts faster.

``-S`` skips the interpreter's site set-up (site-packages and their ``.pth`` hooks: editable
installs, certificate bundles), which the client does not need: it uses the standard library
and this package, found from this file's own path, and imports nothing else (no argument
parsing, no configuration). Its clock starts at its first line, as ``verify --worker`` does.
When no worker answers, the whole command runs instead in a fresh interpreter with the normal
set-up (``python -m verifier.cli ARGS...``), so the answer is the same, only slower.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    """Forwards ``sys.argv[2:]`` to the worker at ``sys.argv[1]``; returns its exit code (or
    replaces this process by a cold run when none answers)."""
    started = time.monotonic()
    if len(sys.argv) < 2:
        print("usage: python -S client_script.py SOCKET MODEL SPEC [verify options]", file=sys.stderr)
        return 2
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path[0] = package_root  # not this file's folder: its modules are not top-level ones
    from verifier.warm.client import forward

    socket_path, argv = sys.argv[1], sys.argv[2:]
    code = forward(socket_path, argv, started)
    if code is None:
        print(f"# no warm worker answers at {socket_path}: running in a fresh process", file=sys.stderr)
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-P", "-m", "verifier.cli", *argv])  # -P: see warm.launch
    return code


if __name__ == "__main__":
    sys.exit(main())
