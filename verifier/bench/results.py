"""The results of a run: a CSV file with one row per finished instance, appended (and flushed
to disk) as soon as the instance ends, and a JSON-lines file beside it with the details.

Resume: rows already in the CSV file are skipped when the same command runs again. A driver
killed while writing leaves at most one partial last line, which is dropped on the next start,
so the file stays consistent: every complete row is a finished instance, none appears twice.
Each row's details record a digest of the instance's files (``files_sha256``); resuming over
rows recorded for other file contents (a regenerated benchmark under the same names) is refused
rather than mixing old answers into the new run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verifier.bench.instances import Instance
from verifier.errors import InputError

COLUMNS = ("tool", "benchmark", "onnx", "vnnlib", "status", "time", "expected", "correct", "timeout", "witness", "note")


@dataclass(frozen=True)
class ResultRow:
    """One finished instance.

    Attributes:
        tool, benchmark, onnx, vnnlib: which run (paths as written in ``instances.csv``).
        status: ``sat``, ``unsat``, ``unknown``, ``timeout`` or ``error``.
        time: wall seconds.
        expected: the verdict of ``expected.csv`` (``unknown`` when none).
        correct: ``yes`` (agrees with expected, or a valid witness), ``no`` (disagrees, or an
            invalid witness) or empty (nothing to score).
        timeout: the instance's limit in seconds.
        witness: for ``sat``: ``valid`` or ``invalid``; else empty.
        note: why an answer was an error, a witness invalid, etc.
    """

    tool: str
    benchmark: str
    onnx: str
    vnnlib: str
    status: str
    time: float
    expected: str
    correct: str
    timeout: float
    witness: str = ""
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.tool, self.benchmark, self.onnx, self.vnnlib


def _from_csv(row: dict[str, str]) -> ResultRow:
    return ResultRow(row["tool"], row["benchmark"], row["onnx"], row["vnnlib"], row["status"], float(row["time"]),
                     row.get("expected", "unknown") or "unknown", row.get("correct", ""),
                     float(row.get("timeout") or "nan"), row.get("witness", ""), row.get("note", ""))


def read_results(path: Path) -> list[ResultRow]:
    """The complete rows of a results file (a partial last line is ignored).

    Raises:
        InputError: the file lacks the required columns or holds a malformed row.
    """
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a row cut short by a killed driver
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    missing = set(COLUMNS[:8]) - set(reader.fieldnames or ())
    if text and missing:
        raise InputError(f"{path}: not a results file (missing columns {sorted(missing)})")
    for line, row in enumerate(reader, start=2):
        try:
            rows.append(_from_csv(row))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}:{line}: malformed row") from None
    return rows


class ResultsFile:
    """Appends rows to the results CSV and details to the JSON-lines file (``.jsonl`` beside
    it). Opening it drops a partial last line left by a killed driver."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.details = path.with_suffix(".jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.done: list[ResultRow] = read_results(path) if path.exists() else []
        for target in (path, self.details):
            _drop_partial_line(target)
        self.digests: dict[tuple[str, str, str], str] = {}  # instance key -> files_sha256 recorded
        if self.details.exists():
            for line in self.details.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    key = (entry["benchmark"], entry["onnx"], entry["vnnlib"])
                except (ValueError, KeyError, TypeError):
                    continue
                if entry.get("files_sha256"):
                    self.digests[key] = entry["files_sha256"]
        if not path.exists() or path.stat().st_size == 0:
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS)
                _sync(handle)

    def finished(self) -> set[tuple[str, str, str, str]]:
        """Keys of the rows already recorded."""
        return {row.key for row in self.done}

    def changed(self, instances: Sequence[Instance]) -> list[Instance]:
        """The instances whose files differ from the ones their recorded rows were run on."""
        return [i for i in instances
                if self.digests.get(i.key) not in (None, "") and self.digests[i.key] != i.files_digest()]

    def append(self, row: ResultRow, details: dict[str, Any]) -> None:
        """Records one finished instance (the CSV row last: a row means complete details)."""
        with self.details.open("a") as handle:
            handle.write(json.dumps({**asdict(row), **details}, default=str) + "\n")
            _sync(handle)
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([getattr(row, c) if c != "time" else f"{row.time:.3f}" for c in COLUMNS])
            _sync(handle)
        self.done.append(row)
        if details.get("files_sha256"):
            self.digests[(row.benchmark, row.onnx, row.vnnlib)] = details["files_sha256"]


def _sync(handle: io.TextIOBase) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _drop_partial_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
