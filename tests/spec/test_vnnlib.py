"""Tests of the VNN-LIB parser.

The key oracle: z3 parses the same text as SMT-LIB (VNN-LIB 1.0 is SMT-LIB) and evaluates the
conjunction of the asserts exactly at sampled points ``(x, y)``; the parsed spec must agree:
"x lies in some region's box and y satisfies some clause of that region".
"""

from __future__ import annotations

import gzip
import math
import re
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import z3

from verifier.errors import SpecError, SpecSyntaxError
from verifier.spec import Spec, parse_vnnlib, parse_vnnlib_text

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted(DATA.glob("*.vnnlib"))
SHIPPED = sorted(
    path
    for folder in ("benchmarks", "specs")
    for pattern in ("*.vnnlib", "*.vnnlib.gz")
    for path in (REPO / folder).rglob(pattern)
)

# ----------------------------------------------------------------------------- the oracle

_SCIENTIFIC = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+(?![\w.])")


def z3_formula(text: str) -> z3.BoolRef:
    """The conjunction of the asserts, read by z3 (scientific notation made plain first)."""
    plain = _SCIENTIFIC.sub(lambda m: format(Decimal(m.group()), "f"), text)
    return z3.And(*z3.parse_smt2_string(plain))


def z3_holds(formula: z3.BoolRef, spec: Spec, x: np.ndarray, y: np.ndarray) -> bool:
    """Exact truth of the formula at the float point (x, y)."""
    names = [f"X_{i}" for i in range(spec.num_inputs)] + [f"Y_{j}" for j in range(spec.num_outputs)]
    values = [*x.tolist(), *y.tolist()]
    subs = []
    for name, value in zip(names, values, strict=True):
        numerator, denominator = float(value).as_integer_ratio()
        subs.append((z3.Real(name), z3.RealVal(f"{numerator}/{denominator}")))
    result = z3.simplify(z3.substitute(formula, *subs))
    assert z3.is_true(result) or z3.is_false(result), result
    return bool(z3.is_true(result))


def spec_holds(spec: Spec, x: np.ndarray, y: np.ndarray) -> bool:
    """Truth of the parsed spec at (x, y): some region contains x and has a clause y meets."""
    for region in spec.regions:
        if np.all(region.lower <= x) and np.all(x <= region.upper):
            for clause in region.clauses:
                value = clause.C @ y
                ok = np.where(clause.strict, value < clause.d, value <= clause.d)
                if np.all(ok):
                    return True
    return False


def sample_x(spec: Spec, rng: np.random.Generator, exact: bool) -> np.ndarray:
    """Inside a random region's box, with a coordinate moved just outside (or onto) a face."""
    n = spec.num_inputs
    if not spec.regions:
        return rng.uniform(-2.0, 2.0, n)
    region = spec.regions[rng.integers(len(spec.regions))]
    x = rng.uniform(region.lower, region.upper)
    mode = rng.random()
    if n and mode < 0.4:
        i = rng.integers(n)
        bound = region.lower[i] if rng.random() < 0.5 else region.upper[i]
        delta = 1e-6 * (1.0 + abs(bound))
        if exact and mode < 0.15:
            x[i] = bound
        elif bound == region.lower[i]:
            x[i] = bound - delta if mode < 0.3 else bound + delta
        else:
            x[i] = bound + delta if mode < 0.3 else bound - delta
    return x


def sample_y(spec: Spec, rng: np.random.Generator, exact: bool) -> np.ndarray:
    """Near the hyperplanes of a random clause: each row just met or just missed."""
    m = spec.num_outputs
    if exact and rng.random() < 0.3:
        return rng.integers(-3, 4, m).astype(np.float64)  # ties: tests strict rows and '='
    clauses = [c for r in spec.regions for c in r.clauses if c.num_rows]
    scale = 1.0 + max((float(np.abs(c.d).max()) for c in clauses), default=0.0)
    y = rng.normal(0.0, scale, m)
    if clauses and rng.random() < 0.8:
        clause = clauses[rng.integers(len(clauses))]
        delta = 1e-6 * scale
        slack = np.where(rng.random(clause.num_rows) < 0.8, -delta, delta)
        step, *_ = np.linalg.lstsq(clause.C, clause.d + slack - clause.C @ y, rcond=None)
        y = y + step
    return y


def check_against_z3(
    spec: Spec, text: str, points: int, seed: int = 0, exact: bool = False, both: bool = True
) -> None:
    """Parsed spec == z3 on ``points`` samples; with ``both``, each outcome must occur."""
    formula = z3_formula(text)
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(points):
        x, y = sample_x(spec, rng, exact), sample_y(spec, rng, exact)
        expected = z3_holds(formula, spec, x, y)
        assert spec_holds(spec, x, y) == expected, (x, y, expected)
        outcomes.append(expected)
    if both:
        assert any(outcomes) and not all(outcomes), f"only {outcomes[0]} sampled"


# ----------------------------------------------------------------------------- real files


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_matches_z3(path: Path) -> None:
    spec = parse_vnnlib(path)
    assert spec.source == path
    check_against_z3(spec, path.read_text(), points=25 if spec.num_inputs > 100 else 150)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_spec_parses(path: Path) -> None:
    spec = parse_vnnlib(path)
    assert spec.num_inputs > 0 and spec.num_outputs > 0


def test_acasxu_prop_6_has_two_input_regions() -> None:
    spec = parse_vnnlib(DATA / "acasxu_prop_6.vnnlib")
    assert (spec.num_inputs, spec.num_outputs, len(spec.regions)) == (5, 5, 2)
    assert is_outward(spec.regions[0].upper[1], "0.499999896", up=True)
    assert is_outward(spec.regions[1].upper[1], "-0.11140846", up=True)
    for region in spec.regions:
        assert len(region.clauses) == 4
        np.testing.assert_array_equal(region.clauses[0].C, [[-1.0, 1.0, 0.0, 0.0, 0.0]])


def is_outward(value: float, literal: str, up: bool) -> bool:
    """``value`` is the float64 next to the decimal ``literal`` on the side ``up`` (or equal
    to it when it is a float), checked in exact rationals."""
    exact, f = Fraction(literal), Fraction(value)
    beyond = math.nextafter(value, -math.inf if up else math.inf)
    if up:
        return f >= exact and Fraction(beyond) < exact
    return f <= exact and Fraction(beyond) > exact


def test_oval21_box_is_the_literals_rounded_outward() -> None:
    path = DATA / "oval21_cifar_base_kw_img2578.vnnlib"
    text = path.read_text()
    spec = parse_vnnlib(path)
    assert (spec.num_inputs, spec.num_outputs, len(spec.regions)) == (3072, 10, 1)
    region = spec.regions[0]
    assert len(region.clauses) == 9 and all(c.num_rows == 1 for c in region.clauses)
    for op, bounds in (("<=", region.upper), (">=", region.lower)):
        found = re.findall(rf"\(assert \({op} X_(\d+) (\S+)\)\)", text)
        assert len(found) == 3072
        inner = region.inner_upper if op == "<=" else region.inner_lower
        assert inner is not None
        for index, literal in found:
            assert is_outward(bounds[int(index)], literal, up=op == "<=")
            assert is_outward(inner[int(index)], literal, up=op != "<=")
    np.testing.assert_array_equal(region.clauses[0].C[0], [-1, 0, 0, 0, 0, 0, 0, 0, 1, 0])


def test_multi_row_and_range_fixtures() -> None:
    dubins = parse_vnnlib(DATA / "rl_dubinsrejoin_case_safe_0.vnnlib")
    assert [c.num_rows for c in dubins.regions[0].clauses] == [6]
    collins = parse_vnnlib(DATA / "collins_rul_cnn_if_then_5levels_w20.vnnlib")
    (clause,) = collins.regions[0].clauses
    np.testing.assert_array_equal(clause.C, [[-1.0], [1.0]])
    np.testing.assert_array_equal(clause.d, [-41.0, 236.0])
    small = parse_vnnlib(DATA / "test_small.vnnlib")
    assert small.regions[0].lower.tolist() == [-1.0] and small.regions[0].upper.tolist() == [1.0]


def test_gzip_file_is_read(tmp_path: Path) -> None:
    source = DATA / "acasxu_prop_6.vnnlib"
    target = tmp_path / "prop_6.vnnlib.gz"
    target.write_bytes(gzip.compress(source.read_bytes()))
    assert len(parse_vnnlib(target).regions) == 2


# ----------------------------------------------------------------------------- hand-written

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(3)
)
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (<= -0.5 X_1))\n(assert (>= 0.5 X_1))\n"

CASES = {
    "nested_or_and": BOX
    + "(assert (or (and (<= Y_0 Y_1) (or (>= Y_2 1) (< Y_2 -1))) (and (= Y_0 2) (> Y_1 Y_2))))",
    "disjunctive_regions": """
        (assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))
                    (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 0.5))
                    (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_1 0.5))))""",
    "input_or_times_output_or": """
        (assert (<= X_1 0.75)) (assert (>= X_1 -0.75))
        (assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 -3) (<= X_0 -2))))
        (assert (or (<= Y_0 Y_1) (<= Y_1 Y_2) (<= Y_2 Y_0)))""",
    "linear_terms": BOX
    + """(assert (<= (+ (* 2 Y_0) (- Y_1) 3) (* Y_2 0.5)))
         (assert (>= (- Y_0 Y_1 Y_2) (- 1)))
         (assert (<= (/ Y_2 4) (+ 1 1.5)))""",
    "comments_and_ties": """; header comment (with a paren
        (set-logic QF_LRA) ; line-end comment
        (assert (>= X_0 (- 0.5)));no space before the comment
        (assert (<= X_0 1.5))  (assert (= X_1 0.25)) ; '=' on an input
        (assert (or (and (= Y_0 Y_1) (<= Y_2 1)) (and (< Y_0 Y_2) (> Y_1 -2))))
        (check-sat) (get-model) (exit)""",
    "constant_atoms": BOX + "(assert (<= 0 1))\n(assert (or (and (<= 1 0) (<= Y_0 0)) (<= Y_1 0)))",
    "chained_comparison": "(assert (<= -1 X_0 1)) (assert (<= 0 X_1 0.5)) (assert (<= Y_0 Y_1 Y_2))",
    "no_output_atoms_in_one_disjunct": BOX + "(assert (or (<= Y_0 0) (and (<= X_0 0.5))))",
}
EXPECTED_SHAPES = {  # clauses per region, and rows per clause
    "nested_or_and": [[2, 2, 3]],
    "disjunctive_regions": [[1, 1], [1]],
    "input_or_times_output_or": [[1, 1, 1], [1, 1, 1]],
    "linear_terms": [[3]],
    "comments_and_ties": [[3, 2]],
    "constant_atoms": [[1]],
    "chained_comparison": [[2]],
    "no_output_atoms_in_one_disjunct": [[1], [0]],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_written_matches_z3(name: str) -> None:
    text = HEADER + CASES[name]
    spec = parse_vnnlib_text(text)
    shape = [[c.num_rows for c in r.clauses] for r in spec.regions]
    assert shape == EXPECTED_SHAPES[name]
    check_against_z3(spec, text, points=300, seed=1, exact=True)


def test_linear_term_coefficients() -> None:
    spec = parse_vnnlib_text(HEADER + CASES["linear_terms"])
    clause = spec.regions[0].clauses[0]
    np.testing.assert_array_equal(clause.C, [[2, -1, -0.5], [-1, 1, 1], [0, 0, 0.25]])
    np.testing.assert_array_equal(clause.d, [-3, 1, 2.5])
    assert not clause.strict.any()


def test_strict_rows_and_equalities() -> None:
    spec = parse_vnnlib_text(HEADER + CASES["comments_and_ties"])
    region = spec.regions[0]
    assert region.lower.tolist() == [-0.5, 0.25] and region.upper.tolist() == [1.5, 0.25]
    eq, strict = region.clauses
    np.testing.assert_array_equal(eq.C, [[1, -1, 0], [-1, 1, 0], [0, 0, 1]])
    assert eq.strict.tolist() == [False, False, False]
    np.testing.assert_array_equal(strict.C, [[1, 0, -1], [0, -1, 0]])
    np.testing.assert_array_equal(strict.d, [0, 2])
    assert strict.strict.tolist() == [True, True]


def test_scientific_notation_and_constant_left() -> None:
    text = (
        "(declare-const X_0 Real)(declare-const Y_0 Real)"
        "(assert (<= -2.5E+2 X_0)) (assert (>= 1e-3 X_0)) (assert (<= 1.5e1 Y_0))"
        "(assert (<= Y_0 +.5e2))"
    )
    spec = parse_vnnlib_text(text)
    assert spec.regions[0].lower.tolist() == [-250.0]
    assert spec.regions[0].upper.tolist() == [1e-3]
    np.testing.assert_array_equal(spec.regions[0].clauses[0].d, [-15.0, 50.0])
    check_against_z3(spec, text, points=200, seed=2)


def test_empty_regions_are_dropped() -> None:
    empty_box = HEADER + BOX + "(assert (<= X_0 -2)) (assert (<= Y_0 0))"
    assert parse_vnnlib_text(empty_box).regions == ()
    false_assert = HEADER + BOX + "(assert (<= 1 0))"
    assert parse_vnnlib_text(false_assert).regions == ()
    one_empty = HEADER + BOX + "(assert (or (and (>= X_0 2) (<= Y_0 0)) (<= Y_1 0)))"
    spec = parse_vnnlib_text(one_empty)
    assert [len(r.clauses) for r in spec.regions] == [1]
    assert (spec.num_inputs, spec.num_outputs) == (2, 3)


# ----------------------------------------------------------------------------- errors

ERRORS = {  # text -> (line, token) the message must name
    "unbalanced_open": ("(declare-const X_0 Real)\n(assert (<= X_0 1)\n", 2, "("),
    "unbalanced_close": ("(declare-const X_0 Real)\n(assert (<= X_0 1)))\n", 2, ")"),
    "unknown_op": ("(declare-const X_0 Real)\n\n(assert (foo X_0 1))\n", 3, "foo"),
    "undeclared": ("(declare-const X_0 Real)\n(assert (<= X_9 1))\n", 2, "X_9"),
    "bad_number": ("(declare-const X_0 Real)\n(assert (<= X_0 1.2.3))\n", 2, "1.2.3"),
    "mixed_x_y": (
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))",
        3,
        "<=",
    ),
    "several_x": (
        "(declare-const X_0 Real)(declare-const X_1 Real)\n(assert (<= (+ X_0 X_1) 1))",
        2,
        "<=",
    ),
    "non_linear": (
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (<= (* Y_0 Y_1) 1))",
        3,
        "*",
    ),
    "declared_twice": ("(declare-const X_0 Real)\n(declare-const X_0 Real)\n", 2, "X_0"),
    "unknown_sort": ("(declare-const X_0 Int)\n", 1, "Int"),
    "bad_name": ("(declare-const x Real)\n", 1, "x"),
    "index_gap": ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n", 2, "X_2"),
    "strict_input": ("(declare-const X_0 Real)\n(assert (< X_0 1))\n", 2, "<"),
    "unknown_command": ("(declare-const X_0 Real)\n(push 1)\n", 2, "push"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_malformed_reports_line_and_token(name: str) -> None:
    text, line, token = ERRORS[name]
    with pytest.raises(SpecSyntaxError) as info:
        parse_vnnlib_text(text, source="bad.vnnlib")
    assert (info.value.line, info.value.token) == (line, token)
    assert f"bad.vnnlib:{line}:" in str(info.value) and repr(token) in str(info.value)


def test_missing_bound_is_reported() -> None:
    text = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= Y_0 0))"
    with pytest.raises(SpecError, match="X_0 has no upper bound"):
        parse_vnnlib_text(text, source="nobound.vnnlib")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.vnnlib"
    with pytest.raises(SpecError, match=r"nope\.vnnlib"):
        parse_vnnlib(missing)


def test_dnf_blow_up_is_refused() -> None:
    text = "(declare-const Y_0 Real)\n" + "(assert (or (<= Y_0 1) (<= Y_0 2) (<= Y_0 3)))\n" * 12
    with pytest.raises(SpecError, match="100000"):
        parse_vnnlib_text(text)


# ----------------------------------------------------------------------------- speed


def cifar_like_spec(num_inputs: int = 3072, num_classes: int = 10, seed: int = 0) -> str:
    """A synthetic VNN-COMP CIFAR robustness spec (same layout as oval21's files)."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.0, 1.0, num_inputs)
    lines = [f"(declare-const X_{i} Real)" for i in range(num_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_classes)]
    for i, value in enumerate(image.tolist()):
        lines.append(f"(assert (<= X_{i} {value + 0.01!r}))")
        lines.append(f"(assert (>= X_{i} {value - 0.01!r}))")
    disjuncts = "\n".join(f"\t(and (>= Y_{j} Y_0))" for j in range(1, num_classes))
    lines.append(f"(assert (or\n{disjuncts}\n))")
    return "\n".join(lines) + "\n"


def test_cifar_size_spec_parses_quickly() -> None:
    text = cifar_like_spec()
    start = time.perf_counter()
    spec = parse_vnnlib_text(text)
    elapsed = time.perf_counter() - start
    assert (spec.num_inputs, len(spec.regions), len(spec.regions[0].clauses)) == (3072, 1, 9)
    assert elapsed < 3.0, f"parsing a 3072-input spec took {elapsed:.2f} s"
