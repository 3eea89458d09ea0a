"""VNN-LIB 1.0 parser: a ``.vnnlib`` file -> :class:`~verifier.spec.types.Spec`.

The file states the *violation* of a property (see ``types.py``). Parsing runs in three steps:

1. read (``lexer.py``): a linear-time scan turns the text into S-expressions, one top-level
   command at a time;
2. interpret: ``declare-const`` fills the variable table, each ``assert`` becomes a DNF whose
   literals are input bounds, output rows ``a·y <= b`` (``<`` when strict) or constants;
3. normalise (``normalise.py``): asserts with a single conjunct are merged into one *base* conjunct; only the
   asserts with several disjuncts are distributed (so a CIFAR file with 6144 bound asserts and
   one 9-way ``or`` gives 9 conjuncts, not a blow-up); conjuncts with the same input box are
   grouped into one :class:`Region`.

Numbers are exact rationals and constant arithmetic is exact (``exact.py``), as VNN-LIB's
semantics are real arithmetic; the normaliser rounds them to float64 in one documented,
directed step (boxes outward, rows so that the float row is implied by the real one).
"""

from __future__ import annotations

import gzip
import itertools
import re
from fractions import Fraction
from pathlib import Path

from verifier.errors import SpecError, SpecSyntaxError
from verifier.spec.exact import NumberRangeError, checked, combine, numeric_literal
from verifier.spec.lexer import (
    Dialect,
    Node,
    SList,
    Token,
    leading_version,
    read_commands,
    recursion_headroom,
)
from verifier.spec.normalise import MAX_CONJUNCTS, Bound, Conjunct, Literal, Normaliser, Row
from verifier.spec.types import Region, Spec

_VARIABLE = re.compile(r"([XY])_(0|[1-9][0-9]{0,8})")
_COMPARISONS = frozenset({"<=", ">=", "<", ">", "="})
_BOOLEAN_OPS = frozenset({"and", "or", "not", "=>", "xor", "ite"}) | _COMPARISONS
_TERM_OPS = frozenset({"+", "-", "*", "/"})
_IGNORED = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})

_Linear = tuple[dict[str, Fraction], Fraction]  # (coefficient per variable name, constant)


def parse_vnnlib(path: str | Path) -> Spec:
    """Parse a VNN-LIB 1.0 file (``.vnnlib``, or gzip-compressed ``.vnnlib.gz``).

    Args:
        path: the file to read.

    Returns:
        The normalised :class:`Spec`; ``spec.source`` is ``Path(path)``. Region boxes are the
        real boxes rounded outward to float64 (with the inward rounding kept where it
        differs; see :class:`Region`). Empty regions are dropped, so zero regions means the
        property trivially holds (``unsat``).

    Raises:
        SpecError: the file is missing or unreadable, or states something unsupported
            (e.g. a bound mixing inputs and outputs, an input without lower/upper bound).
        SpecSyntaxError: the file is malformed; the message names file, line, column, token.
    """
    p = Path(path)
    text = read_vnnlib_text(p)
    version = vnnlib_version(text)
    if version is not None:
        raise SpecError(f"{p}: a VNN-LIB {version} query declares its networks; load it together with "
                        "its models (verifier.problem.load_problem or the 'verifier' command)")
    num_inputs, num_outputs, regions = _Parser(text, str(p)).run()
    return Spec(num_inputs, num_outputs, regions, source=p)


def vnnlib_version(text: str) -> str | None:
    """The version in a leading ``(vnnlib-version <V>)`` command, or None (a 1.0 file)."""
    return leading_version(text)


def read_vnnlib_text(path: Path) -> str:
    """The text of a ``.vnnlib`` (or gzip-compressed ``.vnnlib.gz``) file, UTF-8 (a leading
    byte-order mark is dropped).

    Raises:
        SpecError: the file is missing, unreadable or not UTF-8.
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig") as f:
                return f.read()
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{path}: VNN-LIB file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a VNN-LIB file") from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1 if isinstance(e.object, bytes) else "?"
        raise SpecError(f"{path}:{line}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SpecError(f"{path}: cannot read VNN-LIB file: {e}") from None


def parse_vnnlib_text(text: str, source: str = "<string>") -> Spec:
    """Parse VNN-LIB 1.0 text held in memory.

    Args:
        text: the contents of a ``.vnnlib`` file.
        source: the name used in error messages.

    Returns:
        The normalised :class:`Spec` (with ``source=None``); see :func:`parse_vnnlib`.

    Raises:
        SpecError, SpecSyntaxError: as :func:`parse_vnnlib`.
    """
    num_inputs, num_outputs, regions = _Parser(text, source).run()
    return Spec(num_inputs, num_outputs, regions, source=None)


class _Parser:
    """Parsing state of one file: its name (for error messages) and its variable table."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.variables: dict[str, tuple[str, int, Token]] = {}  # name -> (kind, index, token)

    def error(self, where: Node, reason: str) -> SpecSyntaxError:
        """An error located at a token, or at the operator (else the ``(``) of a list."""
        token = where if isinstance(where, Token) else where.anchor()
        return SpecSyntaxError(self.source, token.line, token.column, token.text, reason)

    def head(self, node: SList) -> Token:
        """The operator token of a list expression."""
        if not node.items:
            raise self.error(node.open, "empty expression ()")
        head = node.items[0]
        if not isinstance(head, Token):
            raise self.error(head, "expected an operator name, found an expression")
        return head

    # ----------------------------------------------------------------------- commands

    def run(self) -> tuple[int, int, tuple[Region, ...]]:
        """Parse and normalise; return ``(num_inputs, num_outputs, regions)``."""
        asserts: list[list[Conjunct]] = []
        for node, depth in read_commands(self.text, self.source, Dialect.V1):
            if isinstance(node, Token):
                raise self.error(node, "expected a command such as (assert ...)")
            head = self.head(node)
            if head.text in ("declare-const", "declare-fun"):
                self.declare(node, head)
            elif head.text == "assert":
                if len(node.items) != 2:
                    raise self.error(head, "assert takes exactly one formula")
                with recursion_headroom(depth):
                    asserts.append(self.formula(node.items[1]))
            elif head.text not in _IGNORED:
                raise self.error(head, f"unknown command {head.text!r}")
        num_inputs, num_outputs = self.check_indices()
        regions = Normaliser(self.source, num_inputs, num_outputs).run(asserts)
        return num_inputs, num_outputs, regions

    def declare(self, node: SList, head: Token) -> None:
        """``(declare-const X_i Real)`` or ``(declare-fun X_i () Real)``."""
        items = node.items
        if head.text == "declare-fun":
            if len(items) != 4 or not isinstance(items[2], SList) or items[2].items:
                raise self.error(head, "expected (declare-fun NAME () Real)")
            items = [items[0], items[1], items[3]]
        if len(items) != 3:
            raise self.error(head, "expected (declare-const NAME Real)")
        name, sort = items[1], items[2]
        if not isinstance(name, Token) or not (m := _VARIABLE.fullmatch(name.text)):
            raise self.error(name, "variable names must be X_<i> (inputs) or Y_<j> (outputs), "
                                   "i and j below 10^9")
        if not isinstance(sort, Token) or sort.text != "Real":
            raise self.error(sort, "unknown sort: only Real is supported")
        if name.text in self.variables:
            first = self.variables[name.text][2].line
            raise self.error(name, f"variable declared twice (first on line {first})")
        self.variables[name.text] = (m.group(1), int(m.group(2)), name)

    def check_indices(self) -> tuple[int, int]:
        """The X (and Y) indices must be exactly 0..n-1; return the two counts."""
        counts = []
        for kind in ("X", "Y"):
            declared = sorted((i, tok) for k, i, tok in self.variables.values() if k == kind)
            n = len(declared)
            for index, token in declared:
                if index >= n:
                    missing = min(set(range(n)) - {i for i, _ in declared})
                    reason = f"{kind} indices must run 0..{n - 1}: {kind}_{missing} is not declared"
                    raise self.error(token, reason)
            counts.append(n)
        return counts[0], counts[1]

    # ----------------------------------------------------------------------- formulas

    def formula(self, node: Node) -> list[Conjunct]:
        """The DNF of a formula: a list of conjuncts (an empty list is ``false``)."""
        if isinstance(node, Token):
            if node.text in ("true", "false"):
                return [[]] if node.text == "true" else []
            raise self.error(node, "expected a formula such as (<= Y_0 Y_1)")
        head = self.head(node)
        op, args = head.text, node.items[1:]
        if op in _COMPARISONS:
            return [self.comparison(head, args)]
        if op == "and":
            return self.conjoin(head, [self.formula(a) for a in args])
        if op == "or":
            parts = [self.formula(a) for a in args]
            if sum(len(p) for p in parts) > MAX_CONJUNCTS:
                raise self.error(head, f"unsupported: DNF exceeds {MAX_CONJUNCTS} conjuncts")
            return [c for p in parts for c in p]
        if op in _BOOLEAN_OPS:
            raise self.error(head, f"unsupported: {op!r} (only and, or and comparisons)")
        if op in _TERM_OPS:
            raise self.error(head, "expected a formula, found a numeric term")
        raise self.error(head, f"unknown operator {op!r}")

    def conjoin(self, head: Token, parts: list[list[Conjunct]]) -> list[Conjunct]:
        """Distribute ``and`` over the DNFs of its arguments (refusing a blow-up)."""
        size = 1
        for p in parts:
            size *= len(p)
            if size > MAX_CONJUNCTS:
                raise self.error(head, f"unsupported: DNF exceeds {MAX_CONJUNCTS} conjuncts")
        return [list(itertools.chain.from_iterable(c)) for c in itertools.product(*parts)]

    def comparison(self, head: Token, args: list[Node]) -> Conjunct:
        """A (possibly chained) comparison as a conjunction of literals."""
        if len(args) < 2:
            raise self.error(head, f"{head.text!r} needs at least two arguments")
        terms = [self.term(a) for a in args]
        literals: Conjunct = []
        for lhs, rhs in itertools.pairwise(terms):
            literals.extend(self.atom(head, lhs, rhs))
        return literals

    def atom(self, head: Token, lhs: _Linear, rhs: _Linear) -> list[Literal]:
        """Classify ``lhs OP rhs`` as a constant, an input bound or output rows (exactly)."""
        op = head.text
        if op in (">=", ">"):
            lhs, rhs = rhs, lhs
        coeffs = dict(lhs[0])
        for name, a in rhs[0].items():
            coeffs[name] = coeffs.get(name, Fraction(0)) - a
        coeffs = {name: a for name, a in coeffs.items() if a != 0}
        c = lhs[1] - rhs[1]  # the atom is: coeffs·v + c  OP  0
        strict = op in ("<", ">")
        if not coeffs:
            return [c == 0 if op == "=" else (c < 0 if strict else c <= 0)]
        kinds = {self.variables[name][0] for name in coeffs}
        if kinds == {"Y"}:
            row = {self.variables[name][1]: a for name, a in coeffs.items()}
            if op == "=":
                return [Row(row, -c, False), Row({j: -a for j, a in row.items()}, c, False)]
            return [Row(row, -c, strict)]
        if len(kinds) == 2:
            raise self.error(head, "unsupported: a constraint mixing inputs X and outputs Y")
        if len(coeffs) > 1:
            names = ", ".join(sorted(coeffs))
            raise self.error(head, f"unsupported: linear constraint over several inputs ({names})")
        if strict:
            raise self.error(head, "unsupported: strict bound on an input; use <= or >=")
        ((name, a),) = coeffs.items()
        index, value = self.variables[name][1], -c / a
        if op == "=":
            return [Bound(index, value, value)]
        return [Bound(index, None, value) if a > 0 else Bound(index, value, None)]

    # ----------------------------------------------------------------------- terms

    def term(self, node: Node) -> _Linear:
        """A linear term as (coefficient per variable name, constant), exactly."""
        if isinstance(node, Token):
            return self.leaf(node)
        head = self.head(node)
        op, args = head.text, [self.term(a) for a in node.items[1:]]
        if op in _TERM_OPS and not args:
            raise self.error(head, f"{op!r} needs at least one argument")
        if op == "+":
            return self.combine(head, args, [Fraction(1)] * len(args))
        if op == "-":
            signs = [Fraction(-1)] if len(args) == 1 else [Fraction(1)] + [Fraction(-1)] * (len(args) - 1)
            return self.combine(head, args, signs)
        if op in ("*", "/"):
            return self.product(head, args)
        if op in _BOOLEAN_OPS:
            raise self.error(head, "expected a numeric term, found a formula")
        raise self.error(head, f"unknown operator {op!r}")

    def product(self, head: Token, args: list[_Linear]) -> _Linear:
        """``(* t ...)`` with at most one non-constant factor, or ``(/ t c ...)``."""
        scale = Fraction(1)
        if head.text == "/":
            if any(coeffs for coeffs, _ in args[1:]):
                raise self.error(head, "unsupported: division by a variable (non-linear)")
            for _, value in args[1:]:
                if value == 0:
                    raise self.error(head, "division by zero")
                scale = self.checked(head, scale / value)
            return self.combine(head, args[:1], [scale])
        variable = [t for t in args if t[0]]
        if len(variable) > 1:
            raise self.error(head, "unsupported: product of variables (non-linear)")
        for coeffs, value in args:
            if not coeffs:
                scale = self.checked(head, scale * value)
        return self.combine(head, variable, [scale]) if variable else ({}, scale)

    def combine(self, head: Token, terms: list[_Linear], scales: list[Fraction]) -> _Linear:
        """``sum(scale * term)`` over linear terms, exactly (sizes checked, see ``exact.py``)."""
        try:
            return combine(terms, scales)
        except NumberRangeError as exc:
            raise self.error(head, str(exc)) from None

    def checked(self, head: Token, value: Fraction) -> Fraction:
        """``value``, or an error at ``head`` when it is too large to fold (see ``exact.py``)."""
        try:
            return checked(value)
        except NumberRangeError as exc:
            raise self.error(head, str(exc)) from None

    def leaf(self, token: Token) -> _Linear:
        """A variable or a number."""
        text = token.text
        if text in self.variables:
            return {text: Fraction(1)}, Fraction(0)
        if text in _TERM_OPS or text in _BOOLEAN_OPS:
            raise self.error(token, f"operator {text!r} used as a value; write ({text} ...)")
        try:
            value = numeric_literal(text)
        except NumberRangeError as exc:
            raise self.error(token, str(exc)) from None
        if value is not None:
            return {}, value
        if _VARIABLE.fullmatch(text):
            raise self.error(token, f"undeclared variable {text}; add (declare-const {text} Real)")
        raise self.error(token, f"unknown symbol {text!r}")
