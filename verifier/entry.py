"""The console scripts ``verify`` (:func:`verifier.cli.main`) and ``verifier``
(:func:`verifier.standard.cli.main`).

They hold Ctrl-C during imports (:mod:`verifier.interrupts`) from the first statement on, before
the command-line modules and the native libraries they pull in are imported, so that Ctrl-C at
any moment of start-up ends with ``error: interrupted`` and exit 130: never a traceback, an
abort in a native module or an "internal error".

Once a command has answered, they end the process at once (:func:`_finish`): the interpreter's
own shutdown (freeing every module, torch's and onnxruntime's native state) takes about 0.8 s on
this project's 2-core machine after a bound run, time that a ``--timeout`` (measured from the
launch, as VNN-COMP does) would otherwise overrun.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import NoReturn

from verifier.interrupts import EXIT_INTERRUPTED, interrupts_outside_imports


def _run(module: str) -> int:
    try:
        with interrupts_outside_imports():
            return int(importlib.import_module(module).main())
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _finish(code: int) -> NoReturn:
    """Flushes the standard streams and ends the process with ``code``, skipping the
    interpreter's shutdown. Every file a command writes is closed before it returns; the
    streams are the only buffered output left."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code)


def verify() -> int:
    """The ``verify`` command: runs it and ends the process with its exit code."""
    return _finish(_run("verifier.cli"))


def verifier() -> int:
    """The ``verifier`` command (the standard verifier interface): runs it and ends the
    process with its exit code."""
    return _finish(_run("verifier.standard.cli"))
