"""The package's layers point one way: every import of a ``verifier`` module (at module level or
inside a function) goes to the same or a lower layer, and the units of one layer import each
other without cycles. The test parses the sources; it fails on a new upward import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "verifier"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundation", frozenset({"errors", "interrupts", "allocator", "deadline", "config", "search_config",
                              "schedule_config", "result", "ir", "spec", "progress", "certificate"})),
    ("ops", frozenset({"ops"})),
    ("graph", frozenset({"graph", "query", "witness", "problem"})),
    ("bounds", frozenset({"bounds"})),
    ("engines", frozenset({"attack", "exact", "sdp"})),
    ("search", frozenset({"bab"})),
    ("api", frozenset({"api", "pipeline", "ladder", "region_proof", "output_bounds"})),
    ("front ends", frozenset({"report", "progress_line", "arguments", "bench", "soundness", "standard", "cli", "entry",
                              "warm", "__init__"})),
)
"""Lowest first. A unit is a subpackage or a top-level module of ``verifier``."""

KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


def _layer_of(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"verifier/{unit} is in no layer: add it to LAYERS in {Path(__file__).name}")


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """The ``verifier`` units imported by a source file, with the line of each import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "verifier" else [f"verifier.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "verifier" and len(parts) > 1:
                yield parts[1], node.lineno


def _edges() -> dict[tuple[str, str], str]:
    """(importer unit, imported unit) -> one place where it happens."""
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(path)
        for target, line in _imports(path):
            if target != source:
                edges.setdefault((source, target), f"{path.relative_to(PACKAGE.parent)}:{line}")
    return edges


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in PACKAGE.rglob("*.py")} | {t for _, t in _edges()}
    for unit in units:
        _layer_of(unit)


def test_imports_point_down() -> None:
    upward = [f"{where}: {source} ({LAYERS[_layer_of(source)][0]}) imports {target} ({LAYERS[_layer_of(target)][0]})"
              for (source, target), where in _edges().items()
              if _layer_of(target) > _layer_of(source) and (source, target) not in KNOWN_UPWARD]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_known_exceptions_still_exist() -> None:
    """An exception that no longer occurs must leave the list (so it cannot come back)."""
    edges = _edges()
    assert all(edge in edges for edge in KNOWN_UPWARD), sorted(KNOWN_UPWARD - set(edges))


def test_no_cycles_within_a_layer() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        if _layer_of(source) == _layer_of(target) and (source, target) not in KNOWN_UPWARD:
            graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(unit: str, path: list[str]) -> None:
        if state.get(unit) == 1:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(unit):], unit]))
        if state.get(unit) == 2:
            return
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            visit(nxt, [*path, unit])
        state[unit] = 2

    for unit in sorted(graph):
        visit(unit, [])


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser finds function-level imports too (the check can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from verifier.api import verify\n    import verifier.bab.common\n")
    assert list(_imports(sample)) == [("api", 2), ("bab", 3)]
