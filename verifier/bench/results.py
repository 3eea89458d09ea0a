"""The results of a run: a CSV file with one row per finished instance, appended (and flushed
to disk) as soon as the instance ends, and a JSON-lines file beside it with the details.

Resume: rows already in the CSV file are skipped when the same command runs again. A driver
killed while writing leaves at most one partial last line, which is dropped on the next start,
so the file stays consistent: every complete row is a finished instance, none appears twice.
Each row's details record a digest of the instance's files (``files_sha256``); resuming over
rows recorded for other file contents (a regenerated benchmark under the same names) is refused
rather than mixing old answers into the new run.

Bad input: a results path that cannot be written (a folder, a file in the way of its folder)
is refused before any instance runs; a results or details file that is not UTF-8 or holds a
malformed complete line is refused (delete it or give another ``--results``).
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

from verifier.bench.instances import Instance, decode_utf8
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
    if any(row.get(c) is None for c in COLUMNS[:8]):  # a short row
        raise ValueError("too few fields")
    return ResultRow(row["tool"], row["benchmark"], row["onnx"], row["vnnlib"], row["status"], float(row["time"]),
                     row.get("expected", "unknown") or "unknown", row.get("correct", ""),
                     float(row.get("timeout") or "nan"), row.get("witness") or "", row.get("note") or "")


def _complete_lines(path: Path) -> bytes:
    """The bytes of ``path`` up to its last newline (a line cut short by a killed driver is
    left out).

    Raises:
        InputError: the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return data[: data.rfind(b"\n") + 1]


def read_results(path: Path) -> list[ResultRow]:
    """The complete rows of a results file (a partial last line is ignored).

    Raises:
        InputError: the file cannot be read, is not UTF-8 or CSV, lacks the required columns
            or holds a malformed row (the message names the file and line).
    """
    text = decode_utf8(path, _complete_lines(path), "not a results file written by 'verify bench'")
    rows = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = set(COLUMNS[:8]) - set(reader.fieldnames or ())
        if text and missing:
            raise InputError(f"{path}: not a results file (missing columns {sorted(missing)})")
        for row in reader:
            try:
                rows.append(_from_csv(row))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{path}:{reader.line_num}: malformed row ({exc})") from None
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    return rows


def read_digests(path: Path) -> dict[tuple[str, str, str], str]:
    """``instance key -> files_sha256`` from a details (JSON-lines) file; missing: empty. A
    partial last line is ignored; rows without a digest are left out.

    Raises:
        InputError: the file cannot be read, is not UTF-8 or holds a line that is not a JSON
            object with ``benchmark``, ``onnx`` and ``vnnlib`` (names the file and line).
    """
    if not path.exists():
        return {}
    text = decode_utf8(path, _complete_lines(path), "not a details file written by 'verify bench'")
    digests: dict[tuple[str, str, str], str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key = (str(entry["benchmark"]), str(entry["onnx"]), str(entry["vnnlib"]))
            digest = entry.get("files_sha256")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}:{number}: not a details line written by 'verify bench' "
                             f"({type(exc).__name__}: {exc})") from None
        if digest:
            digests[key] = str(digest)
    return digests


def check_results_path(path: Path) -> None:
    """Refuses a results path that cannot be a results file, before anything runs: one ending
    in ``.jsonl`` (the details file's suffix), a folder (or other non-file) at it or at its
    details file, or a file in the way of its folder; creates the folder.

    Raises:
        InputError: naming the path and what to do.
    """
    if path.suffix == ".jsonl":
        raise InputError(f"{path}: a results file must not end in .jsonl (its details go to a .jsonl file "
                         f"beside it); give e.g. --results {path.with_suffix('.csv')}")
    for target in (path, path.with_suffix(".jsonl")):
        if target.exists() and not target.is_file():
            raise InputError(f"{target}: is a folder or special file, not a results file; give another --results")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: cannot create the results file: {ancestor} is a file, not a folder; "
                         "give another --results")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create its folder {path.parent}: {exc.strerror or exc}; "
                         "give another --results") from None


class ResultsFile:
    """Appends rows to the results CSV and details to the JSON-lines file (``.jsonl`` beside
    it). Opening it drops a partial last line left by a killed driver."""

    def __init__(self, path: Path) -> None:
        """Opens (creating) ``path`` and the details file beside it, and reads the rows there.

        Raises:
            InputError: the path cannot be written (see :func:`check_results_path`), or a file
                there is corrupt: the message says to delete it or give another ``--results``.
        """
        self.path = path
        self.details = path.with_suffix(".jsonl")
        check_results_path(path)
        try:
            self.done: list[ResultRow] = read_results(path) if path.exists() else []
            # instance key -> files_sha256 recorded
            self.digests: dict[tuple[str, str, str], str] = read_digests(self.details)
        except InputError as exc:
            raise InputError(f"{exc}; delete the file or give another --results") from None
        try:
            for target in (path, self.details):
                _drop_partial_line(target)
            if not path.exists() or path.stat().st_size == 0:
                with path.open("w", newline="") as handle:
                    csv.writer(handle).writerow(COLUMNS)
                    _sync(handle)
            self.details.open("a").close()
        except OSError as exc:
            raise InputError(f"{exc.filename or path}: cannot write it: {exc.strerror or exc}; "
                             "give another --results") from None

    def finished(self) -> set[tuple[str, str, str, str]]:
        """Keys of the rows already recorded."""
        return {row.key for row in self.done}

    def changed(self, instances: Sequence[Instance]) -> list[Instance]:
        """The instances whose files differ from the ones their recorded rows were run on."""
        return [i for i in instances
                if self.digests.get(i.key) not in (None, "") and self.digests[i.key] != i.files_digest()]

    def append(self, row: ResultRow, details: dict[str, Any]) -> None:
        """Records one finished instance (the CSV row last: a row means complete details).

        Raises:
            InputError: a file cannot be written (a full disk): the rows so far stay.
        """
        try:
            with self.details.open("a") as handle:
                handle.write(json.dumps({**asdict(row), **details}, default=str) + "\n")
                _sync(handle)
            with self.path.open("a", newline="") as handle:
                csv.writer(handle).writerow([getattr(row, c) if c != "time" else f"{row.time:.3f}" for c in COLUMNS])
                _sync(handle)
        except OSError as exc:
            raise InputError(f"{exc.filename or self.path}: cannot write the result of {row.tool} {row.onnx} "
                             f"{row.vnnlib}: {exc.strerror or exc}; the rows written so far are kept") from None
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
