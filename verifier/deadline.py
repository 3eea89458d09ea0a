"""A wall-clock deadline passed explicitly to every stage of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    """Raised by :meth:`Deadline.check` once the time limit has passed."""


@dataclass(frozen=True)
class Deadline:
    """An absolute ``time.monotonic()`` instant; ``None`` means no limit."""

    at: float | None

    @staticmethod
    def after(seconds: float | None) -> Deadline:
        """A deadline ``seconds`` from now (no limit when ``seconds`` is None)."""
        return Deadline(None if seconds is None else time.monotonic() + seconds)

    def sooner(self, seconds: float) -> Deadline:
        """This deadline or one ``seconds`` from now, whichever comes first."""
        other = time.monotonic() + seconds
        return Deadline(other if self.at is None else min(self.at, other))

    def remaining(self) -> float:
        """Seconds left (infinity without a limit, never negative)."""
        return float("inf") if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.at is not None and time.monotonic() >= self.at

    def earlier_than(self, other: Deadline) -> bool:
        """True when this deadline comes strictly before ``other`` (a slice of it)."""
        return self.at is not None and (other.at is None or self.at < other.at)

    def check(self) -> None:
        """Raises :class:`DeadlineExceeded` once the deadline has passed."""
        if self.expired():
            raise DeadlineExceeded()
