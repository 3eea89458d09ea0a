"""The VNN-LIB 2.0 grammar: declarations, indexing, connectives, and clear errors."""

from __future__ import annotations

import pytest

from verifier.errors import SpecSyntaxError
from verifier.spec.vnnlib2 import parse_query_text, vnnlib_version

HEADER = "(vnnlib-version <2.0>)\n"
NET = """(declare-network f
    (declare-input  X float32 [2, 3])
    (declare-hidden H float32 [1,2] "hidden")
    (declare-output Y Real [2])
)
"""


def parse(body: str, networks: str = NET):  # type: ignore[no-untyped-def]
    return parse_query_text(HEADER + networks + body, "q.vnnlib")


def atoms(query):  # type: ignore[no-untyped-def]
    return [[[[a.coeffs, a.constant, a.op] for a in conj] for conj in dnf] for dnf in query.asserts]


def test_declarations_keep_types_shapes_and_onnx_names() -> None:
    q = parse("")
    (f,) = q.networks
    assert [d.name for d in f.variables] == ["X", "H", "Y"]
    assert f.inputs[0].shape == (2, 3) and f.inputs[0].element_type == "float32"
    assert f.hidden[0].onnx_name == "hidden" and f.outputs[0].element_type == "real"
    assert f.inputs[0].onnx_name is None and f.equal_to is None and f.isomorphic_to is None


def test_indices_are_row_major_and_sides_are_normalised() -> None:
    q = parse("(assert (>= X[1,2] 0.5))\n(assert (<= (+ (* 2 Y[1]) (- H[0,1])) 3))\n")
    assert atoms(q) == [
        [[[((("X", 5), -1.0),), 0.5, "<="]]],
        [[[((("H", 1), -1.0), (("Y", 1), 2.0)), -3.0, "<="]]],
    ]


def test_index_written_with_a_space_is_one_element() -> None:
    q = parse("(assert (<= X [0, 1] 1.0))\n")
    assert atoms(q) == [[[[((("X", 1), 1.0),), -1.0, "<="]]]]


def test_not_equal_is_a_disjunction_of_strict_atoms_and_equal_is_kept() -> None:
    q = parse("(assert (!= Y[0] 1.0))\n(assert (== Y[1] Y[0]))\n(assert (= Y[1] 2))\n")
    first, second, third = atoms(q)
    assert first == [[[((("Y", 0), 1.0),), -1.0, "<"]], [[((("Y", 0), -1.0),), 1.0, "<"]]]
    assert len(first) == 2 and all(conj[0][2] == "<" for conj in first)
    assert second == [[[((("Y", 0), -1.0), (("Y", 1), 1.0)), 0.0, "=="]]]
    assert third == [[[((("Y", 1), 1.0),), -2.0, "=="]]]


def test_nested_connectives_expand_to_dnf() -> None:
    q = parse("(assert (and (or (<= Y[0] 0) (<= Y[1] 0)) (or (>= X[0,0] 1) (and (>= X[0,1] 1) (<= X[0,2] 2)))))\n")
    (dnf,) = q.asserts
    assert len(dnf) == 4
    assert sorted(len(conj) for conj in dnf) == [2, 2, 3, 3]


def test_constant_comparisons_are_evaluated() -> None:
    q = parse("(assert (or (<= 1 0) (<= Y[0] 0)))\n(assert (<= 0 1))\n")
    assert len(q.asserts[0]) == 1 and q.asserts[1] == ((),)
    assert parse("(assert (< 1 0))\n").asserts == ((),)


def test_subtraction_associates_left_and_unary_minus_negates() -> None:
    q = parse("(assert (<= (- Y[0] 1 2 Y[1]) (- 3)))\n")
    assert atoms(q) == [[[[((("Y", 0), 1.0), (("Y", 1), -1.0)), 0.0, "<="]]]]


def test_equal_and_isomorphic_networks() -> None:
    nets = """(declare-network a (declare-input X float32 [1]) (declare-output Y float32 [1]))
(declare-network b (equal-to a) (declare-input X2 float32 [1]) (declare-output Y2 float32 [1]))
(declare-network c (isomorphic-to a) (declare-input X3 float64 [1]) (declare-output Y3 float64 [1]))
"""
    q = parse("(assert (<= Y[0] Y2[0]))\n", nets)
    assert [n.equal_to for n in q.networks] == [None, "a", None]
    assert [n.isomorphic_to for n in q.networks] == [None, None, "a"]


def test_version_header_is_detected_after_comments() -> None:
    assert vnnlib_version("; a comment\n\n(vnnlib-version <2.0>)\n") == "2.0"
    assert vnnlib_version("(declare-const X_0 Real)") is None


BAD = [
    ("(assert (<= (* X[0,0] X[0,1]) 1))", 7, "product of variables"),
    ("(assert (<= Z[0] 1))", 7, "undeclared variable Z"),
    ("(assert (<= X[0] 1))", 7, "2 dimensions"),
    ("(assert (<= X[2,0] 1))", 7, "out of range"),
    ("(assert (<= Y 1))", 7, "index one element"),
    ("(assert (not (<= Y[0] 1)))", 7, "'not'"),
    ("(assert (<= (/ Y[0] 2) 1))", 7, "'/'"),
    ("(assert (<= Y[0] 1)", 7, "never closed"),
    ("(declare-const X_0 Real)", 7, "VNN-LIB 1.0"),
    ("(assert (<= Y[0] 1))\n(declare-network g (declare-input A float32 [1]) (declare-output B float32 [1]))",
     8, "after an assert"),
]


@pytest.mark.parametrize(("body", "line", "reason"), BAD)
def test_malformed_queries_name_the_line(body: str, line: int, reason: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse(body + "\n")
    assert info.value.line == line
    assert reason in str(info.value)
    assert "q.vnnlib" in str(info.value)


BAD_DECLARATIONS = [
    ("(declare-network f (declare-input X float33 [1]) (declare-output Y float32 [1]))", "unknown element type"),
    ("(declare-network f (declare-input X float32 [1]) (declare-output X float32 [1]))", "declared twice"),
    ("(declare-network f (declare-output Y float32 [1]) (declare-input X float32 [1]))", "declare inputs, then"),
    ("(declare-network f (declare-input X float32 [1]) (declare-hidden H float32 [1]) "
     "(declare-output Y float32 [1]))", "must name its ONNX node"),
    ("(declare-network f (declare-input X float32 [1]))", "at least one declare-input and one declare-output"),
    ("(declare-network f (declare-input X float32 [1 x]) (declare-output Y float32 [1]))", "non-negative integers"),
    ("(declare-network f (equal-to g) (declare-input X float32 [1]) (declare-output Y float32 [1]))",
     "no network of that name"),
    ("(declare-network f (declare-input X float32 [1] \"a\") (declare-input X2 float32 [1]) "
     "(declare-output Y float32 [1]))", "either every input names its ONNX node or none does"),
    ("(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
     "(declare-network g (isomorphic-to f) (declare-input X2 float32 [2]) (declare-output Y2 float32 [1]))",
     "same shapes"),
]


@pytest.mark.parametrize(("networks", "reason"), BAD_DECLARATIONS)
def test_malformed_declarations_are_refused(networks: str, reason: str) -> None:
    with pytest.raises(SpecSyntaxError, match=reason):
        parse("", networks + "\n")


def test_unsupported_version_and_missing_header() -> None:
    with pytest.raises(SpecSyntaxError, match=r"unsupported VNN-LIB version 3\.0"):
        parse_query_text("(vnnlib-version <3.0>)\n" + NET, "q")
    with pytest.raises(SpecSyntaxError, match="must start with"):
        parse_query_text(NET, "q")
    with pytest.raises(SpecSyntaxError, match="declares no network"):
        parse_query_text(HEADER, "q")
