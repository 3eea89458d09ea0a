"""Hostile VNN-LIB text: linear-time reading, byte-order marks and line ends, exact constants,
numbers out of range, deep nesting, and errors that name the line (issue 20).

Oracles: z3 (VNN-LIB 1.0 is SMT-LIB) for the meaning of folded constants, exact rationals
(``fractions``) for the rounded boxes and rows, and a child process with a time limit for the
linear-time guarantee (a backtracking regular expression holds the GIL, so only a separate
process can stop it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import z3

from verifier.errors import SpecError, SpecSyntaxError
from verifier.spec import parse_vnnlib, parse_vnnlib_text
from verifier.spec.lexer import MAX_DEPTH
from verifier.spec.vnnlib2 import parse_query_text, vnnlib_version

REPO = Path(__file__).resolve().parents[2]
PROP_1 = (REPO / "benchmarks" / "acasxu" / "vnnlib" / "prop_1.vnnlib").read_text()
HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
V2_HEAD = "(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [2]))\n"

# ----------------------------------------------------------------------------- linear time

_HOSTILE = {
    "semicolons before a 1.0 file": ";" * 5000 + "\n" + PROP_1,
    "semicolon comment lines before a 2.0 file": "; a; b; c\n" * 2000 + V2_HEAD + "(assert (<= X[0] 1))",
    "unclosed index brackets": V2_HEAD + "(assert (<= X" + "[" * 20000,
    "a long digit string ending in a letter": HEAD + BOX + "(assert (<= Y_0 " + "1" * 200000 + "x))",
    "an unclosed string": HEAD + '(set-info :x "' + "a" * 200000,
    "many opening angle brackets": V2_HEAD + "(assert (<= X[0] " + "<1" * 20000 + "))",
}


def test_hostile_text_is_read_in_linear_time(tmp_path: Path) -> None:
    """Each input would take hours with a backtracking scanner; here every one ends (with a
    verdict-free error or a spec) within seconds in a child process."""
    for index, text in enumerate(_HOSTILE.values()):
        (tmp_path / f"{index}.vnnlib").write_text(text)
    script = textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        from verifier.errors import SpecError
        from verifier.spec.vnnlib import read_vnnlib_text, parse_vnnlib_text
        from verifier.spec.vnnlib2 import parse_query_text, vnnlib_version
        times = []
        for index in range({len(_HOSTILE)}):
            text = read_vnnlib_text(Path({str(tmp_path)!r}) / f"{{index}}.vnnlib")
            start = time.monotonic()
            try:
                parse_query_text(text) if vnnlib_version(text) else parse_vnnlib_text(text)
            except SpecError:
                pass
            times.append(time.monotonic() - start)
        print(json.dumps(times))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    times = dict(zip(_HOSTILE, json.loads(done.stdout), strict=True))
    assert all(seconds < 5.0 for seconds in times.values()), times


def test_the_version_header_is_found_after_comments_with_semicolons() -> None:
    text = "; author: x; date: y; license: MIT\n" * 8 + V2_HEAD
    assert vnnlib_version(text) == "2.0"
    assert vnnlib_version(";" * 40 + "\n" + PROP_1) is None


# ----------------------------------------------------------------------------- encodings, line ends


@pytest.mark.parametrize("variant", ["bom", "crlf", "cr-tabs-formfeeds"])
def test_byte_order_marks_and_line_ends_do_not_change_the_spec(tmp_path: Path, variant: str) -> None:
    text = {"bom": "\ufeff" + PROP_1, "crlf": PROP_1.replace("\n", "\r\n"),
            "cr-tabs-formfeeds": PROP_1.replace(" ", "\t").replace("\n", "\n\f\r\n")}[variant]
    path = tmp_path / "p.vnnlib"
    path.write_bytes(text.encode("utf-8"))
    plain, other = parse_vnnlib_text(PROP_1), parse_vnnlib(path)
    (a,), (b,) = plain.regions, other.regions
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    np.testing.assert_array_equal(a.clauses[0].C, b.clauses[0].C)
    np.testing.assert_array_equal(a.clauses[0].d, b.clauses[0].d)


def test_a_2_0_query_may_start_with_a_byte_order_mark() -> None:
    query = parse_query_text("\ufeff" + V2_HEAD + "(assert (<= X[0] 1))")
    assert query.version == "2.0" and len(query.networks) == 1


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.vnnlib"
    path.write_bytes(HEAD.encode() + "; caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.vnnlib:4: not a UTF-8 text file"):
        parse_vnnlib(path)


# ----------------------------------------------------------------------------- exact constants


def test_a_constant_that_float64_would_make_nan_is_its_real_value() -> None:
    """``(- (+ 1e308 1e308) (+ 1e308 1e308))`` is 0 in real arithmetic (float64 folding gave
    NaN and dropped the bound): ``X_0 <= 0`` with ``X_0 >= 0.6`` leaves no region."""
    zero = "(- (+ 1e308 1e308) (+ 1e308 1e308))"
    empty = parse_vnnlib_text(PROP_1 + f"(assert (<= X_0 {zero}))")
    assert empty.regions == ()
    shifted = parse_vnnlib_text(PROP_1 + f"(assert (<= X_0 (+ 0.65 {zero})))")
    assert shifted.regions[0].upper[0] == pytest.approx(0.65, abs=1e-16)
    formula = z3.And(*z3.parse_smt2_string(HEAD + f"(assert (= X_0 {zero.replace('1e308', '1' + '0' * 308)}))"))
    solver = z3.Solver()
    solver.add(formula, z3.Real("X_0") != 0)
    assert solver.check() == z3.unsat  # z3 agrees: the constant is exactly zero


def test_tiny_products_keep_the_row_they_state() -> None:
    """The issue's case: ``1e-200 * 1e-200 * Y_0 >= 1e-200 * 1e-200 * 3.99...`` is the row
    ``-Y_0 <= -3.99...`` (float64 folding made it ``0 <= 0``, true everywhere)."""
    text = PROP_1.replace("(assert (>= Y_0 3.991125645861615))",
                          "(assert (>= (* 1e-200 1e-200 Y_0) (* 1e-200 1e-200 3.991125645861615)))")
    (region,) = parse_vnnlib_text(text).regions
    (clause,) = region.clauses
    np.testing.assert_array_equal(clause.C, [[-1.0, 0, 0, 0, 0]])
    assert Fraction(clause.d[0]) >= Fraction("-3.991125645861615") > Fraction(np.nextafter(clause.d[0], -np.inf))
    assert clause.real and clause.real[0].d == Fraction("-3.991125645861615") * Fraction(1, 10**400)


def test_a_row_whose_coefficients_float64_cannot_hold_waits_for_output_bounds() -> None:
    (region,) = parse_vnnlib_text(HEAD + BOX + "(assert (<= (+ (* 0.1 Y_0) (* 0.3 Y_1)) 0.7))").regions
    (clause,) = region.clauses
    assert region.unsettled and clause.d[0] == np.inf  # refutes nothing until settled
    settled = clause.settled(np.array([10.0, 10.0]))
    assert np.isfinite(settled.d[0]) and not settled.unsettled


@pytest.mark.parametrize(("bound", "message"), [("1e400", "beyond the float64 range"),
                                                ("1e2000", "out of the supported range")])
def test_input_bounds_beyond_float64_are_refused(bound: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_vnnlib_text(HEAD + f"(assert (>= X_0 0))\n(assert (<= X_0 {bound}))\n")


# ----------------------------------------------------------------------------- malformed text


@pytest.mark.parametrize(("text", "line", "reason"), [
    (HEAD + '(set-info :source "never closed\n\n', 4, "never closed"),
    (HEAD + BOX + "(assert (<= Y_0 1e99999999999))", 6, "out of the supported range"),
    (HEAD + BOX + "(assert (<= Y_0 " + "9" * 5000 + "))", 6, "more than 4000 digits"),
    (HEAD + BOX + "(assert (<= Y_0 (/ 1 (- 2 2))))", 6, "division by zero"),
    (HEAD + "(assert (<= X_0 1))\n)", 5, r"unbalanced '\)'"),
    (HEAD + "(assert (<= X_0 \x00 1))", 4, "unknown symbol"),
])
def test_malformed_text_names_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(SpecSyntaxError, match=reason) as caught:
        parse_vnnlib_text(text, "f.vnnlib")
    assert caught.value.line == line and str(caught.value).startswith(f"f.vnnlib:{line}:")


def test_deep_nesting_is_evaluated_up_to_the_limit_and_refused_beyond() -> None:
    depth = MAX_DEPTH - 3
    deep = HEAD + BOX + "(assert " + "(and " * depth + "(<= Y_0 1)" + ")" * depth + ")"
    (region,) = parse_vnnlib_text(deep).regions
    assert region.clauses[0].num_rows == 1
    too_deep = HEAD + BOX + "(assert " + "(and " * MAX_DEPTH + "(<= Y_0 1)" + ")" * MAX_DEPTH + ")"
    with pytest.raises(SpecSyntaxError, match="nested deeper"):
        parse_vnnlib_text(too_deep)
    before = sys.getrecursionlimit()
    deep_sum = HEAD + BOX + "(assert (<= Y_0 " + "(+ 1 " * depth + "1" + ")" * depth + "))"
    assert parse_vnnlib_text(deep_sum).regions[0].clauses[0].d[0] == depth + 1
    assert sys.getrecursionlimit() == before
