"""The checker's own VNN-LIB 1.0 reader: input boxes and output clauses in exact rationals.

Supported: ``declare-const X_i/Y_j Real``, ``assert`` of ``and``/``or`` over ``<=``, ``>=``,
``<``, ``>`` between linear terms (numbers, variables, ``+``, ``-``, ``*`` by a number). The
conjunction of the asserts is expanded into a disjunction of conjunctions; in each, the atoms
over ``X`` must be bounds of single inputs (they form a box) and those over ``Y`` are rows
``c·y <= d``. Conjunctions with the same box form one region, whose clauses are listed in the
order of the expansion (the file's order). A strict output row ``c·y < d`` keeps its flag (it
is refuted by ``c·y >= d``); strict input bounds are read as non-strict (a larger box).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from itertools import product

import numpy as np

_TOKEN = re.compile(r"\s+|;[^\n]*|\(|\)|[^\s();]+")
_MAX_TERMS = 100_000
Row = tuple[dict[int, Fraction], Fraction]  # sum_j c_j v_j <= d
Atom = tuple[str, int | None, dict[int, Fraction], Fraction, bool]


class SpecError(ValueError):
    """The property file cannot be read by the checker (the message names the token)."""


@dataclass(frozen=True)
class Region:
    """One input box (exact bounds per flattened input) and its clauses; clause ``k`` holds
    when every row ``C[k] y <= d[k]`` does (``< d[k]`` where ``strict[k]``). ``C`` entries are
    float64 values exactly; ``d`` is rounded up (a point of the real clause satisfies the float
    rows)."""

    lower: tuple[Fraction, ...]
    upper: tuple[Fraction, ...]
    C: tuple[np.ndarray, ...]
    d: tuple[np.ndarray, ...]
    strict: tuple[np.ndarray, ...]


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith(";")]


def _expressions(text: str) -> list[object]:
    """The top-level S-expressions (nested lists of strings), built without recursion."""
    stack: list[list[object]] = [[]]
    for token in _tokens(text):
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise SpecError("unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise SpecError("unclosed '('")
    return stack[0]


def _number(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _variable(token: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"([XY])_(\d+)", token)
    return (match.group(1), int(match.group(2))) if match else None


def _term(expr: object) -> tuple[str | None, dict[int, Fraction], Fraction]:
    """A linear term: (the variable kind or None, coefficients, constant)."""
    if isinstance(expr, str):
        value = _number(expr)
        if value is not None:
            return None, {}, value
        var = _variable(expr)
        if var is None:
            raise SpecError(f"unknown symbol {expr!r}")
        return var[0], {var[1]: Fraction(1)}, Fraction(0)
    if not isinstance(expr, list) or not expr or expr[0] not in ("+", "-", "*"):
        raise SpecError(f"unsupported term {expr!r}")
    parts = [_term(e) for e in expr[1:]]
    if expr[0] == "-" and len(parts) == 1:
        parts = [(None, {}, Fraction(0)), parts[0]]
    if expr[0] == "*":
        if len(parts) != 2 or (parts[0][1] and parts[1][1]):
            raise SpecError(f"non-linear product {expr!r}")
        (kind, coeffs, const), scale = (parts[1], parts[0][2]) if not parts[0][1] else (parts[0], parts[1][2])
        return kind, {j: c * scale for j, c in coeffs.items()}, const * scale
    kind, coeffs, const = None, {}, Fraction(0)
    for index, (k, c, v) in enumerate(parts):
        sign = -1 if expr[0] == "-" and index > 0 else 1
        if k is not None and kind is not None and k != kind:
            raise SpecError(f"term mixes inputs and outputs: {expr!r}")
        kind = kind or k
        for j, cj in c.items():
            coeffs[j] = coeffs.get(j, Fraction(0)) + sign * cj
        const += sign * v
    return kind, coeffs, const


def _atom(expr: list[object]) -> Atom:
    """``(op a b)`` as (kind, single variable or None, coefficients, d, strict) with ``c·v <= d``
    (``<`` when strict)."""
    if len(expr) != 3 or expr[0] not in ("<=", ">=", "<", ">"):
        raise SpecError(f"unsupported comparison {expr!r}")
    left, right = _term(expr[1]), _term(expr[2])
    if expr[0] in (">=", ">"):
        left, right = right, left
    kinds = {k for k in (left[0], right[0]) if k is not None}
    if len(kinds) != 1:
        raise SpecError(f"comparison must involve inputs or outputs only: {expr!r}")
    coeffs = dict(left[1])
    for j, c in right[1].items():
        coeffs[j] = coeffs.get(j, Fraction(0)) - c
    coeffs = {j: c for j, c in coeffs.items() if c != 0}
    single = next(iter(coeffs)) if len(coeffs) == 1 else None
    return kinds.pop(), single, coeffs, right[2] - left[2], expr[0] in ("<", ">")


def _dnf(expr: object) -> list[list[Atom]]:
    """A formula as a list of conjunctions of atoms."""
    if not isinstance(expr, list) or not expr:
        raise SpecError(f"unsupported formula {expr!r}")
    if expr[0] == "and":
        out: list[list[Atom]] = [[]]
        for part in expr[1:]:
            out = [a + b for a, b in product(out, _dnf(part))]
            if len(out) > _MAX_TERMS:
                raise SpecError("the property expands into too many conjunctions")
        return out
    if expr[0] == "or":
        return [conj for part in expr[1:] for conj in _dnf(part)]
    return [[_atom(expr)]]


def _float_row(coeffs: dict[int, Fraction], d: Fraction, outputs: int) -> tuple[np.ndarray, float]:
    row = np.zeros(outputs)
    for j, c in coeffs.items():
        if j >= outputs or float(c) != c:
            raise SpecError(f"output Y_{j} out of range or coefficient {c} not a float64 number")
        row[j] = float(c)
    up = float(d)
    if Fraction(up) < d:
        up = float(np.nextafter(up, np.inf))
    return row, up


def _box(atoms: list[Atom], inputs: int) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    lower: list[Fraction | None] = [None] * inputs
    upper: list[Fraction | None] = [None] * inputs
    for _, single, coeffs, d, _ in atoms:
        if single is None or single >= inputs:
            raise SpecError("an input constraint must bound one declared input")
        value = d / coeffs[single]
        if coeffs[single] > 0:
            known = upper[single]
            upper[single] = value if known is None else min(known, value)
        else:
            known = lower[single]
            lower[single] = value if known is None else max(known, value)
    if any(v is None for v in lower + upper):
        raise SpecError("some input has no lower or upper bound")
    return tuple(lower), tuple(upper)  # type: ignore[arg-type]


def read_spec(text: str, inputs: int, outputs: int) -> list[Region]:
    """The regions of a VNN-LIB 1.0 property over ``inputs`` inputs and ``outputs`` outputs.

    Raises:
        SpecError: a construct outside the supported subset, or an unbounded input.
    """
    asserts = []
    for expr in _expressions(text):
        if not isinstance(expr, list) or not expr:
            raise SpecError(f"unexpected top-level token {expr!r}")
        if expr[0] == "assert" and len(expr) == 2:
            asserts.append(expr[1])
        elif expr[0] != "declare-const":
            raise SpecError(f"unsupported command {expr[0]!r}")
    regions: dict[tuple[tuple[Fraction, ...], tuple[Fraction, ...]], list[tuple[np.ndarray, ...]]] = {}
    for conj in _dnf(["and", *asserts]):
        box = _box([a for a in conj if a[0] == "X"], inputs)
        rows = [_float_row(c, d, outputs) for kind, _, c, d, _ in conj if kind == "Y"]
        C = np.array([r for r, _ in rows]).reshape(len(rows), outputs)
        strict = np.array([s for kind, _, _, _, s in conj if kind == "Y"], dtype=bool)
        regions.setdefault(box, []).append((C, np.array([d for _, d in rows]), strict))
    return [Region(lo, hi, tuple(c[0] for c in clauses), tuple(c[1] for c in clauses), tuple(c[2] for c in clauses))
            for (lo, hi), clauses in regions.items()]


def float32_box(region: Region) -> tuple[np.ndarray, np.ndarray]:
    """The smallest box with float32 corners that holds the region's box, as float64 arrays:
    every float32 input the model can receive for a point of the region lies in it."""
    lower, upper = [], []
    for lo, hi in zip(region.lower, region.upper, strict=True):
        a, b = np.float32(float(lo)), np.float32(float(hi))
        if Fraction(float(a)) > lo:
            a = np.nextafter(a, np.float32(-np.inf))
        if Fraction(float(b)) < hi:
            b = np.nextafter(b, np.float32(np.inf))
        lower.append(float(a))
        upper.append(float(b))
    return np.array(lower), np.array(upper)
