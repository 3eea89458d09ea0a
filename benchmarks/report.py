"""Writing a benchmark script's Markdown table: the one helper the scripts under ``benchmarks/``
share (they run as ``python benchmarks/NAME.py``, so this module is importable beside them)."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], out: Path | None) -> None:
    """Prints the report ``lines`` and, with ``out``, writes them there (one trailing newline)."""
    text = "\n".join(lines) + "\n"
    if out:
        out.write_text(text)
    print(text)
