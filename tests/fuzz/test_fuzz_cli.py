"""The fast CI slice of the fuzzing harness: a fixed (derandomised) handful of cases per
category through the real ``verify`` command line, one test per category.

Every case must obey the documented contract (``runner.check_invariants``: a documented exit
code, never exit 4, no traceback, a verdict only with exits 0/10/20/30, ``error:`` with exit
3, the answer within ``--timeout`` + 1 s, exit 3 for input that is invalid by construction),
and every ``sat``/``unsat`` verdict is checked by the z3/onnxruntime oracles (``oracle.py``).
A failing case is saved (files, command, outputs) in the folder its message names. The long
campaign is ``benchmarks/fuzz_campaign.py``; ``pytest -m slow tests/fuzz`` runs a larger slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .cases import CATEGORIES, TINY_BASE_SPECS, Case, describe
from .harness import Harness, Record
from .oracle import SpecOracle, _nearest_float_exception, check_sat, check_unsat, smt_text
from .runner import Expect, Outcome, check_invariants
from .vnnlib_mutations import balance

SPECS = Path(__file__).resolve().parents[2] / "specs"
BUDGET = {
    "e2e-subprocess": 1, "vnnlib-grammar-acas": 6, "vnnlib-grammar-tiny": 8, "vnnlib-numeric-edge": 6,
    "vnnlib-invalid": 10, "vnnlib-mutate-real": 10, "vnnlib-comments": 3, "vnnlib-deep-nesting": 3,
    "onnx-mutate-acas": 8, "onnx-mutate-tiny": 8, "cli-values": 8, "sigint": 3,
}
"""Cases per category: 74 in all, about 40 s on two busy cores. The subprocess case runs
first, while the fork server starts in the background."""
SLOW_FACTOR = 10


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One harness (fork server) for the module; failing cases are saved under its folder."""
    work = tmp_path_factory.mktemp("fuzz")
    with Harness(work / "cases", failures=work / "failures") as h:
        yield h


def _settings(examples: int) -> settings:
    """Derandomised, no deadline, no shrinking (each example is a real CLI run)."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _run_and_check(harness: Harness, case: Case) -> Record:
    """Runs one case; fails with its violations and where it was saved."""
    record = harness.run(case)
    assert not record.violations, (
        f"{describe(case)}\n  exit {record.code}, {record.wall:.2f} s, verdict {record.verdict}\n  "
        + "\n  ".join(record.violations) + f"\n  saved in {record.saved}")
    return record


def _category_test(category: str, examples: int) -> object:
    """A test running ``examples`` derandomised cases of ``category``."""
    @_settings(examples)
    @given(case=CATEGORIES[category])
    def test(harness: Harness, case: Case) -> None:
        _run_and_check(harness, case)

    test.__doc__ = f"{examples} derandomised cases of category {category}."
    return test


test_e2e_subprocess = _category_test("e2e-subprocess", BUDGET["e2e-subprocess"])
test_vnnlib_grammar_acas = _category_test("vnnlib-grammar-acas", BUDGET["vnnlib-grammar-acas"])
test_vnnlib_grammar_tiny = _category_test("vnnlib-grammar-tiny", BUDGET["vnnlib-grammar-tiny"])
test_vnnlib_numeric_edge = _category_test("vnnlib-numeric-edge", BUDGET["vnnlib-numeric-edge"])
test_vnnlib_invalid = _category_test("vnnlib-invalid", BUDGET["vnnlib-invalid"])
test_vnnlib_mutate_real = _category_test("vnnlib-mutate-real", BUDGET["vnnlib-mutate-real"])
test_vnnlib_comments = _category_test("vnnlib-comments", BUDGET["vnnlib-comments"])
test_vnnlib_deep_nesting = _category_test("vnnlib-deep-nesting", BUDGET["vnnlib-deep-nesting"])
test_onnx_mutate_acas = _category_test("onnx-mutate-acas", BUDGET["onnx-mutate-acas"])
test_onnx_mutate_tiny = _category_test("onnx-mutate-tiny", BUDGET["onnx-mutate-tiny"])
test_cli_values = _category_test("cli-values", BUDGET["cli-values"])
test_sigint = _category_test("sigint", BUDGET["sigint"])


@pytest.mark.slow
@_settings(sum(BUDGET.values()) * SLOW_FACTOR)
@given(case=st.sampled_from(sorted(CATEGORIES)).flatmap(lambda name: CATEGORIES[name]))
def test_all_categories_larger_slice(harness: Harness, case: Case) -> None:
    """Ten times the CI budget, categories mixed (subprocess cases included)."""
    _run_and_check(harness, case)


# --------------------------------------------------------------------------- the harness itself


def test_invariants_flag_each_broken_rule() -> None:
    """The checker against hand-made outcomes with a known defect each."""
    ok = Outcome(("m", "s"), 0, None, 0.5, "unsat\n", "", False, "fork")
    assert check_invariants(ok, Expect.VALID, 1.0) == []
    broken = {
        "exit 4": Outcome(("m", "s"), 4, None, 0.1, "", "error: internal error: X\n", False, "fork"),
        "traceback": Outcome(("m", "s"), 3, None, 0.1, "", "Traceback (most recent call last):\nerror: x\n",
                             False, "fork"),
        "verdict with exit 3": Outcome(("m", "s"), 3, None, 0.1, "sat\n", "error: x\n", False, "fork"),
        "late": Outcome(("m", "s"), 30, None, 2.2, "timeout\n", "", False, "fork"),
        "hung": Outcome(("m", "s"), None, 9, 5.0, "", "", True, "fork"),
        "bad input accepted": Outcome(("m", "s"), 0, None, 0.1, "unsat\n", "", False, "fork"),
    }
    for name, outcome in broken.items():
        expect = Expect.BAD if name == "bad input accepted" else Expect.ANY
        assert check_invariants(outcome, expect, 1.0), name


def test_smt_text_reads_every_number_form_exactly() -> None:
    text = "\ufeff; c (\n(assert (<= X_0 -1e-5 .5 5. 2.5E+1 -0.125))"
    assert smt_text(text) == ("( assert ( <= X_0 (- (/ 1.0 100000.0)) (/ 1.0 2.0) (/ 5.0 1.0) (/ 25.0 1.0) "
                              "(- (/ 1.0 8.0)) ) )")


def test_oracles_against_bundled_examples_with_known_answers() -> None:
    """specs/expected.csv: relu_sat_or is sat, so an 'unsat' must be refuted by sampling; a
    counterexample with a wrong output must be rejected."""
    spec = SpecOracle((SPECS / "vnnlib" / "relu_sat_or.vnnlib").read_text())
    model = SPECS / "onnx" / "relu_net.onnx"
    assert check_unsat(spec, model).status == "failed"
    assert check_sat(spec, model, [0.5, 0.0], [0.0, 0.0]).status == "failed"
    unsat = SpecOracle((SPECS / "vnnlib" / "relu_unsat.vnnlib").read_text())
    assert check_unsat(unsat, model).status == "checked"


def test_balance_scan_ignores_comments_and_finds_cuts() -> None:
    text = TINY_BASE_SPECS["tiny_box_or.vnnlib"]
    assert balance(text)[0]
    assert not balance(text[:-3])[0]
    assert balance("; (((\n(assert true)")[0]


def test_the_nearest_float_exception_needs_an_interval_without_floats() -> None:
    """A region fixing ``X_1 = 0.1`` (no float32 there) beside another region: the float32
    nearest to 0.1 is explained by the exception; a point one float32 step inside an interval
    that does hold floats (``X_0 >= 0.25 + 2**-30``) is not."""
    text = ("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)\n"
            "(assert (or (and (>= X_0 0.25) (<= X_0 0.5) (= X_1 0.1)) "
            "(and (>= X_0 0.75) (<= X_0 1) (>= X_1 0) (<= X_1 1))))\n"
            "(assert (<= Y_0 100))")
    spec = SpecOracle(text)
    ys = {"Y_0": Fraction(0)}
    near = [Fraction(0.25), Fraction(float(np.float32(0.1)))]
    assert _nearest_float_exception(spec, near, ys, np.float32) == [1]
    inside = SpecOracle(text.replace("(>= X_0 0.25)", f"(>= X_0 {0.25 + 2.0**-30!r})"))
    assert _nearest_float_exception(inside, near, ys, np.float32) is None
