"""A live progress line on stderr: a bar, done/total, ETA and the running tally of verdicts."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

_ORDER = ("sat", "unsat", "unknown", "timeout", "error")


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Redraws one line per finished instance (in place on a terminal, one line each
    otherwise). The ETA assumes the remaining instances take as long as the finished ones did,
    spread over ``jobs`` workers: it is wall-clock based, so it reflects the parallelism."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30,
                 order: tuple[str, ...] = _ORDER) -> None:
        self.total, self.width, self.order = total, width, order
        self.stream = stream or sys.stderr
        self.done = 0
        self.tally: Counter[str] = Counter()
        self.wrong = 0
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        """The current progress line."""
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        counts = " ".join(f"{k} {self.tally[k]}" for k in self.order)
        wrong = f" WRONG {self.wrong}" if self.wrong else ""
        return f"[{bar}] {self.done}/{self.total} elapsed {_clock(elapsed)} ETA {_clock(eta)} | {counts}{wrong}"

    def update(self, status: str | dict[str, int], wrong: bool = False, label: str = "") -> None:
        """Counts one finished item (a status, or counts to add per status) and redraws."""
        self.done += 1
        self.tally.update([status] if isinstance(status, str) else status)
        self.wrong += wrong
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(self.line() + (f"  {label}" if label else "") + "\n")
        self.stream.flush()
