"""``verify --progress``: one status line on standard error, rewritten in place on a terminal
(at most every half second) and written as a new line elsewhere (at most every 5 s), e.g.
``verify: search | 1,204 domains left | best bound -0.0312 | 41 s left``."""

from __future__ import annotations

import time
from typing import TextIO

from verifier.progress import ProgressEvent

TERMINAL_INTERVAL = 0.5
LOG_INTERVAL = 5.0


class ProgressLine:
    """A :class:`verifier.progress.Progress` that writes to ``stream``; ``deadline_at`` is the
    run's ``time.monotonic()`` deadline (None: no limit, no time left shown). Call
    :meth:`close` before printing the answer (it erases the line on a terminal)."""

    def __init__(self, stream: TextIO, deadline_at: float | None) -> None:
        self.stream, self.deadline_at = stream, deadline_at
        self.terminal = stream.isatty()
        self.interval = TERMINAL_INTERVAL if self.terminal else LOG_INTERVAL
        self.next_at = 0.0
        self.stage = ""
        self.shown = False

    def due(self) -> bool:
        """True once the interval since the last line has passed."""
        return time.monotonic() >= self.next_at

    def show(self, event: ProgressEvent) -> None:
        """Writes the line for ``event`` (a new stage at once, else when :meth:`due`)."""
        if event.stage == self.stage and not self.due():
            return
        self.stage = event.stage
        self.next_at = time.monotonic() + self.interval
        self._write(format_event(event, self._left()))

    def close(self) -> None:
        """Erases the line on a terminal (elsewhere the lines stay)."""
        if self.terminal and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.shown = False

    def _left(self) -> float | None:
        return None if self.deadline_at is None else max(0.0, self.deadline_at - time.monotonic())

    def _write(self, text: str) -> None:
        self.stream.write(f"\r\033[K{text}" if self.terminal else text + "\n")
        self.stream.flush()
        self.shown = True


def format_event(event: ProgressEvent, seconds_left: float | None) -> str:
    """The status line of one report."""
    parts = [f"verify: {event.stage}"]
    if event.domains_left is not None:
        parts.append(f"{event.domains_left:,} domains left")
    if event.best_bound is not None:
        parts.append(f"best bound {event.best_bound:.4g}")
    if seconds_left is not None:
        parts.append(f"{seconds_left:.0f} s left")
    return " | ".join(parts)
