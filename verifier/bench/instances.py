"""Finding benchmark instances: VNN-COMP folders (``instances.csv`` with ``onnx,vnnlib,timeout``
rows), several of them, or a tree of them, with the verdicts of ``expected.csv`` when present."""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Sequence
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
        missing path is unpacked beside it first."""
        target = self.folder / relative
        packed = target.with_name(target.name + ".gz")
        if not target.exists() and packed.exists():
            partial = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.unpacking")
            with gzip.open(packed, "rb") as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            partial.replace(target)
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


def read_expected(folder: Path) -> dict[tuple[str, str], str]:
    """``(onnx, vnnlib) -> verdict`` from ``folder/expected.csv`` (columns ``onnx``, ``vnnlib``,
    ``expected``); empty when there is no such file."""
    path = folder / "expected.csv"
    if not path.is_file():
        return {}
    out: dict[tuple[str, str], str] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                out[(row["onnx"].strip(), row["vnnlib"].strip())] = row["expected"].strip().lower()
            except (KeyError, AttributeError):
                raise InputError(f"{path}: needs the columns onnx, vnnlib, expected") from None
    return out


def read_instances(folder: Path, timeout_scale: float = 1.0) -> list[Instance]:
    """The instances of one benchmark folder, in ``instances.csv`` order.

    Raises:
        InputError: a malformed row (the message names the file and line).
    """
    path = folder / "instances.csv"
    expected = read_expected(folder)
    instances: list[Instance] = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise InputError(f"{path}:{line}: expected onnx,vnnlib,timeout, got {row!r}")
            onnx, vnnlib = row[0].strip(), row[1].strip()
            try:
                timeout = float(row[2]) * timeout_scale
            except ValueError:
                raise InputError(f"{path}:{line}: the timeout {row[2]!r} is not a number") from None
            if not timeout > 0:
                raise InputError(f"{path}:{line}: the timeout must be positive")
            instances.append(Instance(folder.name, folder, onnx, vnnlib, timeout,
                                      expected.get((onnx, vnnlib), "unknown")))
    return instances


def select_instances(paths: Sequence[Path], timeout_scale: float = 1.0, pattern: str | None = None,
                     limit: int | None = None) -> list[Instance]:
    """Every instance of the benchmark folders under ``paths`` whose ``benchmark/onnx/vnnlib``
    matches the regular expression ``pattern`` (searched, not anchored), at most ``limit``
    of them, in folder then file order."""
    if timeout_scale <= 0:
        raise InputError("--timeout-scale must be positive")
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
