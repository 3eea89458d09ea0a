"""Ctrl-C that never lands inside an import.

Native extension modules call back into Python while they initialise: onnx (nanobind) builds
its enums through ``enum.EnumMeta.__call__``, numpy imports ``datetime`` through a capsule. A
``KeyboardInterrupt`` raised in such a callback cannot cross the native frames: the process
aborts (``std::terminate``), crashes, or the import fails with an ``ImportError`` that reads
like a broken install. A command line that promises "Ctrl-C -> exit 130" therefore holds
SIGINT while any module is being imported and raises it as soon as the import is over.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")

EXIT_INTERRUPTED = 130
"""The exit code of a command ended by Ctrl-C (128 + SIGINT, what a shell reports)."""

RETRY_SECONDS = 0.02
"""How often a held Ctrl-C looks again whether the import it waits for is over."""


def inside_import(frame: FrameType | None) -> bool:
    """Whether ``frame`` or any frame that called it belongs to Python's import machinery,
    i.e. a module is being imported (its code, or native code it called, is running)."""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


@contextmanager
def interrupts_outside_imports(retry: float = RETRY_SECONDS) -> Iterator[None]:
    """Within the block SIGINT raises ``KeyboardInterrupt`` as usual, except while a module is
    being imported: then it is held, looked at again every ``retry`` seconds (a timer thread
    sends SIGINT to this process once more) and raised at the first moment no import runs.

    A no-op outside the main thread, or when SIGINT does not have Python's default handler
    (someone else, e.g. a test runner or an outer block, owns it). The previous handler is
    restored when the block ends. Never swallows an interrupt: one held when the block ends
    is raised there.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    held: list[threading.Timer] = []

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        for timer in held:
            timer.cancel()
        held.clear()
        if not inside_import(frame):
            raise KeyboardInterrupt
        timer = threading.Timer(retry, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        held.append(timer)
        timer.start()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pending = bool(held)
        for timer in held:
            timer.cancel()
    if pending:
        raise KeyboardInterrupt
