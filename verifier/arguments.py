"""Command-line value checks and the top-level error boundary shared by the commands.

Every value is checked by argparse (``type=``) before any work starts, so a bad value is a
usage error (exit code 2, argparse's message) and never a traceback or a verdict. Every
command runs its work through :func:`guarded`, which maps every expected failure to its
documented exit code and prints one ``error:`` line instead of a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from verifier.errors import InputError
from verifier.interrupts import EXIT_INTERRUPTED

EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERNAL = 2, 3, 4
EXIT_CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}
"""Exit code per verdict (``Status.value``) of the commands that give one."""

MAX_TIMEOUT = 1e8
"""Largest ``--timeout`` in seconds (about three years); leave the option out for no limit."""

WATCHDOG_GRACE = 0.5
"""Seconds past ``--timeout`` before a command's watchdog answers ``timeout`` itself (the
stages check the deadline; this is the safety net for one that overruns it)."""


def _number(text: str, kind: type[int] | type[float], allow_zero: bool) -> int | float:
    """``text`` as a finite ``kind`` above zero (or at least zero when ``allow_zero``).

    Raises:
        argparse.ArgumentTypeError: anything else; argparse turns it into a usage error.
    """
    what = ("a non-negative " if allow_zero else "a positive ") + ("integer" if kind is int else "finite number")
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer of at least 1."""
    return int(_number(text, int, allow_zero=False))


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer of at least 0."""
    return int(_number(text, int, allow_zero=True))


def positive_finite_float(text: str) -> float:
    """argparse ``type=``: a finite number above 0 (not NaN)."""
    return float(_number(text, float, allow_zero=False))


def non_negative_finite_float(text: str) -> float:
    """argparse ``type=``: a finite number of at least 0 (not NaN)."""
    return float(_number(text, float, allow_zero=True))


def timeout_seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds, ``0 < t <= MAX_TIMEOUT``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a positive, finite number of seconds up to {MAX_TIMEOUT:g} (leave the option out "
            "for no limit)")
    return value


def seed_value(text: str) -> int:
    """``--seed``: an integer ``0 <= s < 2**32``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must lie in 0 .. 2**32 - 1")
    return value


def output_file(text: str) -> str:
    """A file the command will write (``--out``): its folder must exist and be writable, and
    the path must not be a folder. Checked before any work, so a long run never ends in an
    unwritable result."""
    path = Path(text)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: not writable")
    return text


def output_folder(text: str) -> str:
    """A folder the command will write files into: it exists and is writable, or it can be
    created (its nearest existing parent is a writable folder)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write there ({existing} is not a writable folder)")
    return text


Report = Callable[[str, int], int]
"""Prints an error message (and whatever the command writes with it); returns the exit code."""


def guarded(body: Callable[[], int], report: Report, debug: bool = False) -> int:
    """Runs a command's work; every failure becomes one error message and its exit code.

    ``InputError`` -> :data:`EXIT_BAD_INPUT`; ``KeyboardInterrupt`` (Ctrl-C) ->
    :data:`EXIT_INTERRUPTED`; any other exception is a bug -> :data:`EXIT_INTERNAL`, with
    the traceback only when ``debug``. Never a verdict: the caller's ``report`` prints the
    message only.
    """
    try:
        return body()
    except InputError as exc:
        return report(str(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return report("interrupted", EXIT_INTERRUPTED)
    except MemoryError:
        return report("internal error: out of memory", EXIT_INTERNAL)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        return report(f"internal error: {type(exc).__name__}: {exc} (a bug: please report it)", EXIT_INTERNAL)


def print_error(message: str, code: int) -> int:
    """The plain :data:`Report`: ``error: MESSAGE`` on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
