"""Algorithms ask ops for traits and rules, never for op-type names: no string literal in
``bounds/``, ``bab/``, ``exact/`` or ``sdp/`` may equal a registered ONNX op type."""

from __future__ import annotations

import ast
from pathlib import Path

from verifier.ops import REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "verifier"
ALGORITHMS = ("bounds", "bab", "exact", "sdp")
KNOWN: frozenset[str] = frozenset()


def _op_names(path: Path) -> list[tuple[int, str]]:
    """The string constants of a source file that name a registered op type, with their line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in REGISTRY]


def _algorithm_files() -> list[Path]:
    return sorted(p for package in ALGORITHMS for p in (PACKAGE / package).rglob("*.py"))


def test_algorithms_do_not_name_op_types() -> None:
    found = [f"{path.relative_to(PACKAGE)}:{line}: {name!r}" for path in _algorithm_files()
             if str(path.relative_to(PACKAGE)) not in KNOWN for line, name in _op_names(path)]
    assert not found, "op-type names in algorithm code (ask the op for a trait instead):\n" + "\n".join(found)


def test_known_files_still_name_ops() -> None:
    """A file that no longer names op types leaves :data:`KNOWN` (so it stays clean)."""
    for relative in KNOWN:
        assert _op_names(PACKAGE / relative), relative


def test_the_check_finds_a_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Relu docs."""\nif node.op in ("Relu", "x"):\n    pass\n')
    assert _op_names(sample) == [(2, "Relu")]
