"""What a run reports about its progress, for a one-line display (``verify --progress``).

The pipeline and the branch-and-bound searches take an optional :class:`Progress` and tell it
the stage they enter and, between search rounds, the domains left and the best certified bound
of the open part. They ask :meth:`Progress.due` first, so that the numbers are only computed
when the display wants them; nothing here is global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProgressEvent:
    """One report: the stage (a pipeline step's name), the branch-and-bound domains still open
    (None outside a search) and the lowest certified bound over them of the hardest clause's
    best row (the search ends ``unsat`` once it is above 0; None when unknown)."""

    stage: str
    domains_left: int | None = None
    best_bound: float | None = None


class Progress(Protocol):
    """A receiver of progress reports."""

    def due(self) -> bool:
        """True when a report now would be shown (the receiver limits its rate)."""

    def show(self, event: ProgressEvent) -> None:
        """Takes one report (a stage change is always passed on, whatever :meth:`due` says)."""
