"""The console scripts ``verify`` (:func:`verifier.cli.main`) and ``verifier``
(:func:`verifier.standard.cli.main`).

They hold Ctrl-C during imports (:mod:`verifier.interrupts`) from the first statement on, before
the command-line modules and the native libraries they pull in are imported, so that Ctrl-C at
any moment of start-up ends with ``error: interrupted`` and exit 130: never a traceback, an
abort in a native module or an "internal error".
"""

from __future__ import annotations

import importlib
import sys

from verifier.interrupts import EXIT_INTERRUPTED, interrupts_outside_imports


def _run(module: str) -> int:
    try:
        with interrupts_outside_imports():
            return int(importlib.import_module(module).main())
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def verify() -> int:
    """The ``verify`` command; returns its exit code."""
    return _run("verifier.cli")


def verifier() -> int:
    """The ``verifier`` command (the standard verifier interface); returns its exit code."""
    return _run("verifier.standard.cli")
