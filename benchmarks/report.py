"""Writing a benchmark script's Markdown report: the helpers the scripts under ``benchmarks/``
share (they run as ``python benchmarks/NAME.py``, so this module is importable beside them)."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
"""The shared VNN-COMP benchmarks beside the checkout (``../shared/benchmarks``)."""


def instance_parser(doc: str, timeout: float) -> argparse.ArgumentParser:
    """The argument parser of a script that runs shared-benchmark instances: described by the
    first paragraph of ``doc``, with ``--root`` (the benchmarks' folder, default
    :data:`SHARED_BENCHMARKS`), ``--timeout`` (seconds per run, default ``timeout``) and ``--out``
    (the Markdown report to write); the script adds its own options."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHARED_BENCHMARKS)
    parser.add_argument("--timeout", type=float, default=timeout)
    parser.add_argument("--out", type=Path)
    return parser


def header(title: str, setting: str = "", columns: list[str] | None = None, threads: int = 1) -> list[str]:
    """A report's first lines: ``# title``, the machine (host, Python, torch, the torch
    ``threads``, then ``setting`` such as ``", 120 s per run"``), the exact command that ran it,
    and with ``columns`` the head of its table."""
    import torch  # the scripts that call this have it loaded already

    command = shlex.join(["python", *sys.argv])
    lines = [f"# {title}", "",
             f"Machine: {platform.node()}, Python {platform.python_version()}, torch {torch.__version__}, "
             f"{'one thread' if threads == 1 else f'{threads} threads'}{setting}. Command: `{command}`", ""]
    if columns:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines


def add_row(lines: list[str], *cells: object) -> None:
    """Appends the table row ``| cell | cell | ... |`` to ``lines`` and prints it at once (long
    runs show their progress)."""
    lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    print(lines[-1], flush=True)


def emit(lines: list[str], out: Path | None) -> None:
    """Prints the report ``lines`` and, with ``out``, writes them there (one trailing newline)."""
    text = "\n".join(lines) + "\n"
    if out:
        out.write_text(text)
    print(text)
