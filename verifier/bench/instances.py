"""Finding benchmark instances: VNN-COMP folders (``instances.csv`` with ``onnx,vnnlib,timeout``
rows), several of them, or a tree of them, with the verdicts of ``expected.csv`` when present."""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import math
import os
import re
import shutil
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from verifier.errors import InputError


@dataclass(frozen=True)
class Instance:
    """One benchmark instance.

    Attributes:
        benchmark: the benchmark's name (its folder's name).
        folder: the benchmark folder (paths in ``instances.csv`` are relative to it).
        onnx, vnnlib: the paths exactly as written in ``instances.csv``.
        timeout: the wall-clock limit in seconds (``instances.csv`` times the scale).
        expected: ``sat``, ``unsat`` or ``unknown`` from ``expected.csv`` (``unknown`` when absent).
    """

    benchmark: str
    folder: Path
    onnx: str
    vnnlib: str
    timeout: float
    expected: str = "unknown"

    @property
    def key(self) -> tuple[str, str, str]:
        """Identifies the instance inside a results file (with the tool's name)."""
        return self.benchmark, self.onnx, self.vnnlib

    def path(self, relative: str) -> Path:
        """The file ``relative`` of this instance; a VNN-COMP ``.gz`` file stored next to a
        missing path is unpacked beside it first.

        Raises:
            OSError: the ``.gz`` file cannot be read or is not valid gzip data (the message
                names it; nothing is left behind). The runner records this as an ``error`` row.
        """
        target = self.folder / relative
        packed = target.with_name(target.name + ".gz")
        if not target.exists() and packed.exists():
            partial = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.unpacking")
            try:
                with gzip.open(packed, "rb") as source, partial.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                partial.replace(target)
            except (OSError, EOFError, zlib.error) as exc:
                partial.unlink(missing_ok=True)
                raise OSError(f"{packed}: cannot unpack it: {exc}") from None
        return target

    def files_digest(self) -> str:
        """SHA-256 over the contents of the instance's ONNX and VNN-LIB files (empty when one is
        missing): a results row recorded under another digest is for other files."""
        try:
            parts = []
            for relative in (self.onnx, self.vnnlib):
                stat = self.path(relative).stat()
                parts.append(_file_sha256(str(self.path(relative).resolve()), stat.st_mtime_ns, stat.st_size))
        except OSError:
            return ""
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a file; cached per (path, modification time, size), as many instances of a
    benchmark share one network."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def benchmark_folders(paths: Sequence[Path]) -> list[Path]:
    """The benchmark folders under ``paths``: each path that holds ``instances.csv`` itself, or
    else its subfolders (any depth) that do, in sorted order.

    Raises:
        InputError: a path is missing or holds no benchmark.
    """
    folders: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise InputError(f"{path}: not a folder")
        if (path / "instances.csv").is_file():
            folders.append(path)
            continue
        found = sorted(p.parent for p in path.rglob("instances.csv"))
        if not found:
            raise InputError(f"{path}: no instances.csv in it or below it")
        folders.extend(found)
    return list(dict.fromkeys(folders))


def utf8_error(path: Path, exc: UnicodeDecodeError, advice: str = "save it as UTF-8") -> InputError:
    """The :class:`InputError` for a file that is not UTF-8: names the file, the line and
    column (counted in bytes) and the offending byte, then ``advice``."""
    data = exc.object if isinstance(exc.object, bytes) else bytes(exc.object)
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return InputError(f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); {advice}")


def decode_utf8(path: Path, data: bytes, advice: str = "save it as UTF-8") -> str:
    """``data`` (the contents of ``path``) as text; a leading byte-order mark is dropped.

    Raises:
        InputError: the bytes are not UTF-8 (see :func:`utf8_error`).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise utf8_error(path, exc, advice) from None
    return text.removeprefix("\ufeff")


def read_utf8(path: Path) -> str:
    """The text of the UTF-8 file ``path``.

    Raises:
        InputError: the file cannot be read or is not UTF-8 (names the file and line).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return decode_utf8(path, data)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each record of the CSV file ``path`` (the line where it ends).

    Raises:
        InputError: unreadable, not UTF-8, or not CSV (names the file and line).
    """
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None


def read_expected(folder: Path) -> dict[tuple[str, str], str]:
    """``(onnx, vnnlib) -> verdict`` from ``folder/expected.csv`` (a header line naming the
    columns ``onnx``, ``vnnlib``, ``expected``); empty when there is no such file.

    Raises:
        InputError: unreadable, not UTF-8, not CSV, or lacking a column (names the file and line).
    """
    path = folder / "expected.csv"
    if not path.is_file():
        return {}
    out: dict[tuple[str, str], str] = {}
    rows = _csv_rows(path)
    header = next((fields for _, fields in rows if fields), None)
    if header is None:
        return {}
    names = [name.strip() for name in header]
    if not {"onnx", "vnnlib", "expected"} <= set(names):
        raise InputError(f"{path}: needs the columns onnx, vnnlib, expected (a header line naming them)")
    where = [names.index(name) for name in ("onnx", "vnnlib", "expected")]
    for line, fields in rows:
        if not "".join(fields).strip():
            continue
        if len(fields) <= max(where):
            raise InputError(f"{path}:{line}: expected {len(names)} fields, got {fields!r}")
        onnx, vnnlib, verdict = (fields[i].strip() for i in where)
        out[(onnx, vnnlib)] = verdict.lower()
    return out


def check_inside(folder: Path, relative: str, where: str) -> None:
    """Refuses an instance file that lies outside ``folder`` once ``..``, an absolute path or
    a symbolic link is resolved (also for the ``.gz`` file stored in its place).

    Raises:
        InputError: an empty path, or one outside the folder (``where``: ``FILE:LINE``).
    """
    if not relative:
        raise InputError(f"{where}: an empty file path")
    target = folder / relative
    try:
        root = folder.resolve()
        outside = [p for p in (target, target.with_name(target.name + ".gz"))
                   if (p == target or p.exists()) and not p.resolve().is_relative_to(root)]
    except (OSError, RuntimeError, ValueError) as exc:  # a loop of links, a NUL in the path
        raise InputError(f"{where}: {relative!r}: {exc}") from None
    if outside:
        raise InputError(f"{where}: {relative!r} leads to {outside[0].resolve()}, outside the benchmark folder "
                         f"{root}; instance files must lie inside the benchmark folder")


def _timeout(text: str, scale: float, where: str) -> float:
    """The timeout field ``text`` times ``scale``; ``where``: ``FILE:LINE`` for errors."""
    try:
        timeout = float(text) * scale
    except ValueError:
        raise InputError(f"{where}: the timeout {text!r} is not a number") from None
    if not (timeout > 0 and math.isfinite(timeout)):
        raise InputError(f"{where}: the timeout must be positive and finite, got {text.strip()!r}")
    return timeout


def read_instances(folder: Path, timeout_scale: float = 1.0) -> list[Instance]:
    """The instances of one benchmark folder, in ``instances.csv`` order.

    Raises:
        InputError: an unreadable or non-UTF-8 file, a malformed row, or an instance file
            outside the folder (the message names the file and line).
    """
    path = folder / "instances.csv"
    expected = read_expected(folder)
    instances: list[Instance] = []
    for line, row in _csv_rows(path):
        if not row or not "".join(row).strip():
            continue
        where = f"{path}:{line}"
        if len(row) < 3:
            raise InputError(f"{where}: expected onnx,vnnlib,timeout, got {row!r}")
        onnx, vnnlib = row[0].strip(), row[1].strip()
        for relative in (onnx, vnnlib):
            check_inside(folder, relative, where)
        timeout = _timeout(row[2], timeout_scale, where)
        instances.append(Instance(folder.name, folder, onnx, vnnlib, timeout,
                                  expected.get((onnx, vnnlib), "unknown")))
    return instances


def select_instances(paths: Sequence[Path], timeout_scale: float = 1.0, pattern: str | None = None,
                     limit: int | None = None) -> list[Instance]:
    """Every instance of the benchmark folders under ``paths`` whose ``benchmark/onnx/vnnlib``
    matches the regular expression ``pattern`` (searched, not anchored), at most ``limit``
    of them, in folder then file order."""
    if not (timeout_scale > 0 and math.isfinite(timeout_scale)):
        raise InputError(f"--timeout-scale must be positive and finite, got {timeout_scale}")
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise InputError(f"--filter {pattern!r}: {exc}") from None
    chosen: list[Instance] = []
    for folder in benchmark_folders(paths):
        for instance in read_instances(folder, timeout_scale):
            if regex is None or regex.search(f"{instance.benchmark}/{instance.onnx}/{instance.vnnlib}"):
                chosen.append(instance)
    return chosen if limit is None else chosen[:limit]
