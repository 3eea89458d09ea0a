"""Every op in the registry has a case in the op case tables, so it is checked against
onnxruntime (and, with a dynamic input, by sampling and for its float error) and a newly
registered op without one fails here by name.

The tables: the elementwise ``CASES`` (activations, arithmetic, reductions), the structural
``CASES`` (affine, convolution, pooling, resizing, shape ops) and ``FP_ONLY``, and the
all-constant ``FOLDING`` cases (ops whose outputs are computed at load time, such as
ConstantOfShape and Range). ``tests/ops/test_relax.py`` has a table too, but it checks
relaxations only, not the op against onnxruntime, so it does not count here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import pytest
from folding_cases import FOLDING
from structural_cases import CASES as STRUCTURAL
from structural_cases import FP_ONLY

from tests.ops.test_elementwise_ops import CASES as ELEMENTWISE
from verifier.ops import REGISTRY, Op


class HasOp(Protocol):
    """A case of any table: all of them name their op type as ``op``."""

    @property
    def op(self) -> str:
        """The ONNX op type the case exercises."""
        ...


TABLES: dict[str, list[HasOp]] = {
    "tests/ops/test_elementwise_ops.py CASES": list(ELEMENTWISE),
    "tests/ops/structural_cases.py CASES": list(STRUCTURAL),
    "tests/ops/structural_cases.py FP_ONLY": list(FP_ONLY),
    "tests/ops/folding_cases.py FOLDING": list(FOLDING),
}


def uncovered(registered: Iterable[str], tables: Mapping[str, Iterable[HasOp]]) -> list[str]:
    """The registered op types that no case of ``tables`` exercises, sorted."""
    covered = {case.op for cases in tables.values() for case in cases}
    return sorted(set(registered) - covered)


def test_every_registered_op_has_a_case() -> None:
    missing = uncovered(REGISTRY, TABLES)
    assert not missing, f"ops without a test case: {missing}; add one to a table of {sorted(TABLES)}"


def test_every_table_case_names_a_registered_op() -> None:
    """A case whose op is not registered (a typo, a renamed op) would cover nothing."""
    unknown = sorted({case.op for cases in TABLES.values() for case in cases} - set(REGISTRY))
    assert not unknown, f"cases of unregistered ops: {unknown}"


class _Unseen(Op):
    """An op no table has a case for."""


def test_an_op_registered_without_a_case_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "UnseenOp", _Unseen())
    assert uncovered(REGISTRY, TABLES) == ["UnseenOp"]
    with pytest.raises(AssertionError, match="UnseenOp"):
        test_every_registered_op_has_a_case()


def test_uncovered_on_a_fake_registry() -> None:
    class Case:
        def __init__(self, op: str) -> None:
            self.op = op

    tables = {"a": [Case("Relu"), Case("Add")], "b": [Case("Conv")], "empty": []}
    assert uncovered(["Relu", "Conv", "Add"], tables) == []
    assert uncovered(["Zeta", "Relu", "Alpha", "Conv"], tables) == ["Alpha", "Zeta"]
    assert uncovered(["Relu"], {}) == ["Relu"]
