"""The size budget of the package, kept by CI: every module of ``verifier/`` has at most
:data:`MAX_FILE_LINES` lines and every function or method at most :data:`MAX_FUNCTION_LINES`
(from its ``def`` line to its last line, decorators excluded). Line length is ruff's E501."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "verifier"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def long_files(root: Path, limit: int) -> list[str]:
    """``path: lines`` of the Python files under ``root`` longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(root.parent)}: {lines} lines")
    return found


def long_functions(root: Path, limit: int) -> list[str]:
    """``path:line name: lines`` of the functions under ``root`` longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_files_fit_the_budget() -> None:
    too_long = long_files(PACKAGE, MAX_FILE_LINES)
    assert not too_long, "split these modules (one job each):\n" + "\n".join(too_long)


def test_functions_fit_the_budget() -> None:
    too_long = long_functions(PACKAGE, MAX_FUNCTION_LINES)
    assert not too_long, "split these functions:\n" + "\n".join(too_long)


def test_the_checks_find_a_long_file_and_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (package / "big.py").write_text("def f():\n" + body + "\n" + "\n" * 500)
    (package / "small.py").write_text("def g():\n    return 1\n")
    assert long_files(package, MAX_FILE_LINES) == ["pkg/big.py: 562 lines"]
    assert long_functions(package, MAX_FUNCTION_LINES) == ["pkg/big.py:1 f: 62 lines"]
