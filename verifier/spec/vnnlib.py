"""VNN-LIB 1.0 parser: a ``.vnnlib`` file -> :class:`~verifier.spec.types.Spec`.

The file states the *violation* of a property (see ``types.py``). Parsing runs in three steps:

1. read: one regex tokenises the whole text; a stack turns tokens into S-expressions whose
   symbols are token indices (line and column are recomputed only for error messages);
2. interpret: ``declare-const`` fills the variable table, each ``assert`` becomes a DNF whose
   literals are input bounds, output rows ``a·y <= b`` (``<`` when strict) or constants;
3. normalise (``normalise.py``): asserts with a single conjunct are merged into one *base* conjunct; only the
   asserts with several disjuncts are distributed (so a CIFAR file with 6144 bound asserts and
   one 9-way ``or`` gives 9 conjuncts, not a blow-up); conjuncts with the same input box are
   grouped into one :class:`Region`.

Numbers are read with ``float()`` (nearest float64); constant arithmetic inside terms is done
in float64. Boxes are kept *exactly as parsed*, never widened: a caller that needs an outer
approximation of the real decimal box must widen it itself (one ulp outward suffices for a
bound written as a plain literal).
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
from pathlib import Path
from typing import NamedTuple

from verifier.errors import SpecError, SpecSyntaxError
from verifier.spec.normalise import MAX_CONJUNCTS, Bound, Conjunct, Literal, Normaliser, Row
from verifier.spec.types import Region, Spec
from verifier.spec.vnnlib2 import vnnlib_version

_TOKEN = re.compile(r';[^\n]*|[()]|\|[^|]*\||"(?:[^"]|"")*"|[^\s();]+')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_VARIABLE = re.compile(r"([XY])_(0|[1-9][0-9]*)")
_COMPARISONS = frozenset({"<=", ">=", "<", ">", "="})
_BOOLEAN_OPS = frozenset({"and", "or", "not", "=>", "xor", "ite"}) | _COMPARISONS
_TERM_OPS = frozenset({"+", "-", "*", "/"})
_IGNORED = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})


class _List(NamedTuple):
    """A parenthesised expression; ``pos`` is the token index of its ``(``."""

    items: list[_Node]
    pos: int


_Node = int | _List  # an int is the token index of a symbol or number


_Linear = tuple[dict[str, float], float]  # (coefficient per variable name, constant)


def parse_vnnlib(path: str | Path) -> Spec:
    """Parse a VNN-LIB 1.0 file (``.vnnlib``, or gzip-compressed ``.vnnlib.gz``).

    Args:
        path: the file to read.

    Returns:
        The normalised :class:`Spec`; ``spec.source`` is ``Path(path)``. Region boxes hold the
        float64 nearest to each literal, not widened (see the module docstring). Empty regions
        are dropped, so zero regions means the property trivially holds (``unsat``).

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


def read_vnnlib_text(path: Path) -> str:
    """The text of a ``.vnnlib`` (or gzip-compressed ``.vnnlib.gz``) file.

    Raises:
        SpecError: the file is missing or unreadable.
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: VNN-LIB file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read VNN-LIB file: {e}") from e


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
    """Parsing state of one file: its tokens (for error positions) and its variable table.

    Symbols are referred to by token index ``i`` (text ``self.tokens[i]``); the character
    offset of a token is recomputed only when an error is reported.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.tokens: list[str] = _TOKEN.findall(text)
        self.variables: dict[str, tuple[str, int, int]] = {}  # name -> (kind, index, token)

    # ----------------------------------------------------------------------- errors

    def error(self, token: int, reason: str) -> SpecSyntaxError:
        """An error located at token index ``token``."""
        offset = 0
        for k, m in enumerate(_TOKEN.finditer(self.text)):
            if k == token:
                offset = m.start()
                break
        line = self.text.count("\n", 0, offset) + 1
        column = offset - self.text.rfind("\n", 0, offset)
        return SpecSyntaxError(self.source, line, column, self.tokens[token], reason)

    def node_error(self, node: _Node, reason: str) -> SpecSyntaxError:
        """An error located at a symbol, or at the operator (else the ``(``) of a list."""
        if isinstance(node, int):
            return self.error(node, reason)
        if node.items and isinstance(node.items[0], int):
            return self.error(node.items[0], reason)
        return self.error(node.pos, reason)

    # ----------------------------------------------------------------------- reading

    def read(self) -> list[_Node]:
        """Build the S-expressions from the tokens (iteratively, so depth is unlimited)."""
        stack: list[list[_Node]] = [[]]
        opens: list[int] = []
        for i, token in enumerate(self.tokens):
            first = token[0]
            if first == "(":
                stack.append([])
                opens.append(i)
            elif first == ")":
                if not opens:
                    raise self.error(i, "unbalanced ')' without a matching '('")
                items = stack.pop()
                stack[-1].append(_List(items, opens.pop()))
            elif first != ";":
                stack[-1].append(i)
        if opens:
            raise self.error(opens[0], "unbalanced '(': it is never closed")
        return stack[0]

    def head(self, node: _List) -> int:
        """The operator token of a list expression."""
        if not node.items:
            raise self.error(node.pos, "empty expression ()")
        head = node.items[0]
        if not isinstance(head, int):
            raise self.node_error(head, "expected an operator name, found an expression")
        return head

    # ----------------------------------------------------------------------- commands

    def run(self) -> tuple[int, int, tuple[Region, ...]]:
        """Parse and normalise; return ``(num_inputs, num_outputs, regions)``."""
        asserts: list[list[Conjunct]] = []
        for node in self.read():
            if isinstance(node, int):
                raise self.error(node, "expected a command such as (assert ...)")
            head = self.head(node)
            command = self.tokens[head]
            if command in ("declare-const", "declare-fun"):
                self.declare(node, head)
            elif command == "assert":
                if len(node.items) != 2:
                    raise self.error(head, "assert takes exactly one formula")
                try:
                    asserts.append(self.formula(node.items[1]))
                except RecursionError:
                    raise self.error(head, "formula nested too deeply") from None
            elif command not in _IGNORED:
                raise self.error(head, f"unknown command {command!r}")
        num_inputs, num_outputs = self.check_indices()
        regions = Normaliser(self.source, num_inputs, num_outputs).run(asserts)
        return num_inputs, num_outputs, regions

    def declare(self, node: _List, head: int) -> None:
        """``(declare-const X_i Real)`` or ``(declare-fun X_i () Real)``."""
        items = node.items
        if self.tokens[head] == "declare-fun":
            if len(items) != 4 or not isinstance(items[2], _List) or items[2].items:
                raise self.error(head, "expected (declare-fun NAME () Real)")
            items = [items[0], items[1], items[3]]
        if len(items) != 3:
            raise self.error(head, "expected (declare-const NAME Real)")
        name, sort = items[1], items[2]
        if not isinstance(name, int) or not (m := _VARIABLE.fullmatch(self.tokens[name])):
            raise self.node_error(name, "variable names must be X_<i> (inputs) or Y_<j> (outputs)")
        if not isinstance(sort, int) or self.tokens[sort] != "Real":
            raise self.node_error(sort, "unknown sort: only Real is supported")
        text = self.tokens[name]
        if text in self.variables:
            first = self.error(self.variables[text][2], "").line
            raise self.error(name, f"variable declared twice (first on line {first})")
        self.variables[text] = (m.group(1), int(m.group(2)), name)

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

    def formula(self, node: _Node) -> list[Conjunct]:
        """The DNF of a formula: a list of conjuncts (an empty list is ``false``)."""
        if isinstance(node, int):
            if self.tokens[node] in ("true", "false"):
                return [[]] if self.tokens[node] == "true" else []
            raise self.error(node, "expected a formula such as (<= Y_0 Y_1)")
        head = self.head(node)
        op, args = self.tokens[head], node.items[1:]
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

    def conjoin(self, head: int, parts: list[list[Conjunct]]) -> list[Conjunct]:
        """Distribute ``and`` over the DNFs of its arguments (refusing a blow-up)."""
        size = 1
        for p in parts:
            size *= len(p)
            if size > MAX_CONJUNCTS:
                raise self.error(head, f"unsupported: DNF exceeds {MAX_CONJUNCTS} conjuncts")
        return [list(itertools.chain.from_iterable(c)) for c in itertools.product(*parts)]

    def comparison(self, head: int, args: list[_Node]) -> Conjunct:
        """A (possibly chained) comparison as a conjunction of literals."""
        if len(args) < 2:
            raise self.error(head, f"{self.tokens[head]!r} needs at least two arguments")
        terms = [self.term(a) for a in args]
        literals: Conjunct = []
        for lhs, rhs in itertools.pairwise(terms):
            literals.extend(self.atom(head, lhs, rhs))
        return literals

    def atom(self, head: int, lhs: _Linear, rhs: _Linear) -> list[Literal]:
        """Classify ``lhs OP rhs`` as a constant, an input bound or output rows."""
        op = self.tokens[head]
        if op in (">=", ">"):
            lhs, rhs = rhs, lhs
        coeffs = dict(lhs[0])
        for name, a in rhs[0].items():
            coeffs[name] = coeffs.get(name, 0.0) - a
        coeffs = {name: a for name, a in coeffs.items() if a != 0.0}
        c = lhs[1] - rhs[1]  # the atom is: coeffs·v + c  OP  0
        strict = op in ("<", ">")
        if not coeffs:
            return [c == 0.0 if op == "=" else (c < 0.0 if strict else c <= 0.0)]
        kinds = {self.variables[name][0] for name in coeffs}
        if kinds == {"Y"}:
            row = {self.variables[name][1]: a for name, a in coeffs.items()}
            if op == "=":
                negated = {j: -a for j, a in row.items()}
                return [Row(row, 0.0 - c, False), Row(negated, c, False)]
            return [Row(row, 0.0 - c, strict)]
        if len(kinds) == 2:
            raise self.error(head, "unsupported: a constraint mixing inputs X and outputs Y")
        if len(coeffs) > 1:
            names = ", ".join(sorted(coeffs))
            raise self.error(head, f"unsupported: linear constraint over several inputs ({names})")
        if strict:
            raise self.error(head, "unsupported: strict bound on an input; use <= or >=")
        ((name, a),) = coeffs.items()
        index, value = self.variables[name][1], (0.0 - c) / a
        if op == "=":
            return [Bound(index, value, value)]
        return [Bound(index, -math.inf, value) if a > 0 else Bound(index, value, math.inf)]

    # ----------------------------------------------------------------------- terms

    def term(self, node: _Node) -> _Linear:
        """A linear term as (coefficient per variable name, constant)."""
        if isinstance(node, int):
            return self.leaf(node)
        head = self.head(node)
        op, args = self.tokens[head], [self.term(a) for a in node.items[1:]]
        if op in _TERM_OPS and not args:
            raise self.error(head, f"{op!r} needs at least one argument")
        if op == "+":
            return _combine(args, [1.0] * len(args))
        if op == "-":
            signs = [-1.0] if len(args) == 1 else [1.0] + [-1.0] * (len(args) - 1)
            return _combine(args, signs)
        if op in ("*", "/"):
            return self.product(head, args)
        if op in _BOOLEAN_OPS:
            raise self.error(head, "expected a numeric term, found a formula")
        raise self.error(head, f"unknown operator {op!r}")

    def product(self, head: int, args: list[_Linear]) -> _Linear:
        """``(* t ...)`` with at most one non-constant factor, or ``(/ t c ...)``."""
        if self.tokens[head] == "/":
            if any(coeffs for coeffs, _ in args[1:]):
                raise self.error(head, "unsupported: division by a variable (non-linear)")
            if any(value == 0.0 for _, value in args[1:]):
                raise self.error(head, "division by zero")
            scale = 1.0
            for _, value in args[1:]:
                scale /= value
            return _combine(args[:1], [scale])
        variable = [t for t in args if t[0]]
        if len(variable) > 1:
            raise self.error(head, "unsupported: product of variables (non-linear)")
        scale = 1.0
        for coeffs, value in args:
            if not coeffs:
                scale *= value
        return _combine(variable, [scale]) if variable else ({}, scale)

    def leaf(self, token: int) -> _Linear:
        """A variable or a number."""
        text = self.tokens[token]
        if text in self.variables:
            return {text: 1.0}, 0.0
        if _NUMBER.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                raise self.error(token, "number out of float64 range")
            return {}, value
        if text in _TERM_OPS or text in _BOOLEAN_OPS:
            raise self.error(token, f"operator {text!r} used as a value; write ({text} ...)")
        if text[0] in "0123456789.+-":
            raise self.error(token, "bad number")
        if _VARIABLE.fullmatch(text):
            raise self.error(token, f"undeclared variable {text}; add (declare-const {text} Real)")
        raise self.error(token, f"unknown symbol {text!r}")


def _combine(terms: list[_Linear], scales: list[float]) -> _Linear:
    """``sum(scale * term)`` over linear terms."""
    coeffs: dict[str, float] = {}
    constant = 0.0
    for (term_coeffs, value), scale in zip(terms, scales, strict=True):
        for name, a in term_coeffs.items():
            coeffs[name] = coeffs.get(name, 0.0) + scale * a
        constant += scale * value
    return coeffs, constant
