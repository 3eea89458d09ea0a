"""VNN-LIB 2.0 parser: query text -> :class:`~verifier.spec.query.Query`.

A 2.0 file starts with ``(vnnlib-version <2.0>)``, declares its networks with
``declare-network`` (typed, shaped ``declare-input``/``declare-hidden``/``declare-output``,
optionally ``equal-to``/``isomorphic-to`` another network) and then asserts constraints over
tensor elements ``X[0,1]``: arbitrarily nested ``and``/``or`` of ``<=``, ``>=``, ``<``, ``>``,
``==`` (also ``=``) and ``!=`` between linear terms built from ``+``, ``-`` and ``*`` by
constants. Everything else, a product of two variables in particular, is refused with an
error naming the line: the verifier never guesses the meaning of a constraint.

Numbers are read as exact rationals (``0.1`` is one tenth) and constant arithmetic is exact
(``exact.py``, shared with the 1.0 parser); the conversion to float64 happens in the
normaliser, once the atoms have become bounds and rows. The text is read by the shared
linear-time lexer (``lexer.py``).
"""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction

from verifier.errors import SpecSyntaxError
from verifier.spec.exact import NumberRangeError, checked, combine, numeric_literal
from verifier.spec.lexer import (
    Dialect,
    SList,
    Token,
    leading_version,
    read_commands,
    recursion_headroom,
)
from verifier.spec.normalise import MAX_CONJUNCTS
from verifier.spec.query import REAL, AssertDnf, Atom, NetworkDecl, Query, Role, TensorDecl

SUPPORTED_VERSIONS = ("2.0",)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_COMPARISONS = frozenset({"<=", ">=", "<", ">", "==", "=", "!="})
_TERM_OPS = frozenset({"+", "-", "*"})
_ROLE_OF = {"declare-input": "input", "declare-hidden": "hidden", "declare-output": "output"}
_ROLE_RANK = {"input": 0, "hidden": 1, "output": 2}

ELEMENT_TYPES = frozenset({
    REAL, "float16", "float32", "float64", "bfloat16", "bool", "string",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "complex64", "complex128", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz",
    "uint4", "int4", "float4e2m1",
})
"""Element type names a query may declare: ONNX's (lower case) and ``real``."""


def vnnlib_version(text: str) -> str | None:
    """The version in a leading ``(vnnlib-version <V>)`` command, or None (a 1.0 file)."""
    return leading_version(text)


_Node = Token | SList
_Linear = tuple[dict[tuple[str, int], Fraction], Fraction]  # (coefficient per element, constant)
_DIMENSIONS = re.compile(r"[0-9]{1,12}")
MAX_ELEMENTS = 10**9
"""Largest number of elements a declared tensor may have."""


def parse_query_text(text: str, source: str = "<string>") -> Query:
    """Parses VNN-LIB 2.0 text.

    Args:
        text: the file contents.
        source: the name used in error messages.

    Returns:
        the :class:`Query`, its asserts as DNFs of linear atoms.

    Raises:
        SpecSyntaxError: malformed or unsupported content; the message names the file, line,
            column and token (an undeclared or mis-indexed variable, a non-linear term, a
            declaration out of order, an unknown element type, a DNF over
            :data:`~verifier.spec.normalise.MAX_CONJUNCTS` conjuncts...).
    """
    return _Parser(text, source).run()


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.text = text
        self.tensors: dict[str, TensorDecl] = {}

    # ----------------------------------------------------------------------- reading

    def error(self, where: _Node, reason: str) -> SpecSyntaxError:
        token = where if isinstance(where, Token) else where.anchor()
        return SpecSyntaxError(self.source, token.line, token.column, token.text, reason)

    def anchor(self, node: SList) -> Token:
        return node.anchor()

    def head(self, node: SList) -> str:
        if not node.items:
            raise self.error(node.open, "empty expression ()")
        head = node.items[0]
        if not isinstance(head, Token):
            raise self.error(head, "expected an operator or command name, found an expression")
        return head.text

    # ----------------------------------------------------------------------- commands

    def run(self) -> Query:
        commands = read_commands(self.text, self.source, Dialect.V2)
        first = next(commands, None)
        if first is None:
            raise SpecSyntaxError(self.source, 1, 1, "", "empty file: expected (vnnlib-version <2.0>)")
        version = self.version(first[0])
        networks: list[NetworkDecl] = []
        asserts: list[AssertDnf] = []
        for node, depth in commands:
            if isinstance(node, Token):
                raise self.error(node, "expected a command such as (assert ...)")
            command = self.head(node)
            if command == "declare-network":
                if asserts:
                    raise self.error(node, "declare-network after an assert: all networks must be declared first")
                networks.append(self.network(node, networks))
            elif command == "assert":
                if len(node.items) != 2:
                    raise self.error(node, "assert takes exactly one formula")
                if not networks:
                    raise self.error(node, "assert before any declare-network")
                with recursion_headroom(depth):
                    asserts.append(self.formula(node.items[1]))
            elif command in ("declare-const", "declare-fun"):
                raise self.error(node, f"{command} is VNN-LIB 1.0 syntax; a 2.0 file declares networks")
            elif command == "vnnlib-version":
                raise self.error(node, "vnnlib-version given twice")
            else:
                raise self.error(node, f"unknown command {command!r}")
        if not networks:
            raise self.error(first[0], "the query declares no network")
        return Query(version, tuple(networks), tuple(asserts), self.source)

    def version(self, node: _Node) -> str:
        if not (isinstance(node, SList) and node.items and isinstance(node.items[0], Token)
                and node.items[0].text == "vnnlib-version"):
            raise self.error(node, "a VNN-LIB 2.0 file must start with (vnnlib-version <2.0>)")
        if len(node.items) != 2 or not isinstance(node.items[1], Token):
            raise self.error(node, "expected (vnnlib-version <2.0>)")
        text = node.items[1].text
        if not (text.startswith("<") and text.endswith(">")):
            raise self.error(node.items[1], "expected a version in angle brackets such as <2.0>")
        version = text[1:-1]
        if version not in SUPPORTED_VERSIONS:
            raise self.error(node.items[1], f"unsupported VNN-LIB version {version} "
                                            f"(supported: 1.0, {', '.join(SUPPORTED_VERSIONS)})")
        return version

    def network(self, node: SList, previous: list[NetworkDecl]) -> NetworkDecl:
        items = node.items
        if len(items) < 2 or not isinstance(items[1], Token) or not _NAME.fullmatch(items[1].text):
            raise self.error(node, "expected (declare-network NAME (declare-input ...) ... (declare-output ...))")
        name = items[1].text
        if any(n.name == name for n in previous):
            raise self.error(items[1], f"network {name} declared twice")
        equal_to = isomorphic_to = None
        decls: dict[Role, list[TensorDecl]] = {"input": [], "hidden": [], "output": []}
        last_rank = -1
        for item in items[2:]:
            if not isinstance(item, SList):
                raise self.error(item, "expected (declare-input ...), (declare-hidden ...), (declare-output ...), "
                                       "(equal-to NET) or (isomorphic-to NET)")
            kind = self.head(item)
            if kind in ("equal-to", "isomorphic-to"):
                target = self.relation(item, kind, name, previous)
                if equal_to or isomorphic_to or last_rank >= 0:
                    raise self.error(item, f"{kind} must come first and at most once in a network declaration")
                equal_to, isomorphic_to = (target, None) if kind == "equal-to" else (None, target)
                continue
            if kind not in _ROLE_OF:
                raise self.error(item, f"unknown network declaration {kind!r}")
            decl = self.tensor(item, _ROLE_OF[kind])  # type: ignore[arg-type]
            rank = _ROLE_RANK[decl.role]
            if rank < last_rank:
                raise self.error(item, f"{kind} after a later kind of declaration: declare inputs, then hidden "
                                       "values, then outputs")
            last_rank = rank
            decls[decl.role].append(decl)
        if not decls["input"] or not decls["output"]:
            raise self.error(node, f"network {name} needs at least one declare-input and one declare-output")
        for role in ("input", "output"):
            named = [d.onnx_name is not None for d in decls[role]]
            if any(named) and not all(named):
                raise self.error(node, f"network {name}: either every {role} names its ONNX node or none does")
        network = NetworkDecl(name, tuple(decls["input"]), tuple(decls["hidden"]), tuple(decls["output"]),
                              equal_to, isomorphic_to, node.open.line)
        related = equal_to if equal_to is not None else isomorphic_to
        if related is not None:
            self.check_same_shapes(node, network, next(n for n in previous if n.name == related))
        return network

    def relation(self, item: SList, kind: str, name: str, previous: list[NetworkDecl]) -> str:
        if len(item.items) != 2 or not isinstance(item.items[1], Token):
            raise self.error(item, f"expected ({kind} NETWORK)")
        target = item.items[1].text
        if target == name:
            raise self.error(item.items[1], f"network {name} cannot be {kind} itself")
        if not any(n.name == target for n in previous):
            raise self.error(item.items[1], f"{kind} {target}: no network of that name is declared before")
        return target

    def check_same_shapes(self, node: SList, network: NetworkDecl, other: NetworkDecl) -> None:
        for role in ("inputs", "hidden", "outputs"):
            mine, theirs = getattr(network, role), getattr(other, role)
            if [d.shape for d in mine] != [d.shape for d in theirs]:
                raise self.error(node, f"network {network.name} must declare {role} of the same shapes as "
                                       f"{other.name}: {[list(d.shape) for d in mine]} vs "
                                       f"{[list(d.shape) for d in theirs]}")
        if network.equal_to is not None:
            onnx_names = lambda n: [d.onnx_name for d in n.variables]  # noqa: E731
            if network.hidden and onnx_names(network) != onnx_names(other):
                raise self.error(node, f"network {network.name} is equal-to {other.name}: its hidden values must "
                                       "name the same ONNX nodes")

    def tensor(self, item: SList, role: Role) -> TensorDecl:
        keyword = self.head(item)
        parts = item.items[1:]
        usage = (f"expected ({keyword} NAME TYPE [d0,d1,...]"
                 + (' "onnx-name")' if role == "hidden" else ' ["onnx-name"])'))
        if len(parts) not in (3, 4) or not all(isinstance(p, Token) for p in parts):
            raise self.error(item, usage)
        name_tok, type_tok, shape_tok = parts[0], parts[1], parts[2]
        assert isinstance(name_tok, Token) and isinstance(type_tok, Token) and isinstance(shape_tok, Token)
        if not _NAME.fullmatch(name_tok.text):
            raise self.error(name_tok, "variable names start with a letter and contain only letters, digits and _")
        if name_tok.text in self.tensors:
            first = self.tensors[name_tok.text].line
            raise self.error(name_tok, f"variable {name_tok.text} declared twice (first on line {first})")
        element_type = type_tok.text.lower()
        if element_type not in ELEMENT_TYPES:
            raise self.error(type_tok, f"unknown element type {type_tok.text!r} (ONNX element types such as "
                                       "float32, or Real)")
        shape = self.shape(shape_tok)
        onnx_name = None
        if len(parts) == 4:
            quoted = parts[3]
            assert isinstance(quoted, Token)
            if not (quoted.text.startswith('"') and quoted.text.endswith('"') and len(quoted.text) >= 2):
                raise self.error(quoted, usage)
            onnx_name = quoted.text[1:-1]
        elif role == "hidden":
            raise self.error(item, f"{usage}: a hidden value must name its ONNX node output")
        decl = TensorDecl(name_tok.text, role, element_type, shape, onnx_name, name_tok.line)
        self.tensors[decl.name] = decl
        return decl

    def shape(self, token: Token) -> tuple[int, ...]:
        if not (token.text.startswith("[") and token.text.endswith("]")):
            raise self.error(token, "expected a shape such as [1,10]")
        fields = [f for f in re.split(r"[\s,]+", token.text[1:-1].strip()) if f]
        if not all(_DIMENSIONS.fullmatch(f) for f in fields):
            raise self.error(token, "shape dimensions must be non-negative integers")
        dims = tuple(int(f) for f in fields)
        if any(d == 0 for d in dims):
            raise self.error(token, "a shape dimension of 0 declares an empty tensor")
        if math.prod(dims) > MAX_ELEMENTS:
            raise self.error(token, f"unsupported: a tensor of more than {MAX_ELEMENTS} elements")
        return dims

    # ----------------------------------------------------------------------- formulas

    def formula(self, node: _Node) -> AssertDnf:
        """The DNF of a formula: a tuple of conjunctions (``()`` is false)."""
        if isinstance(node, Token):
            if node.text in ("true", "false"):
                return ((),) if node.text == "true" else ()
            raise self.error(node, "expected a formula such as (<= Y[0] 0.5)")
        op = self.head(node)
        args = node.items[1:]
        if op in _COMPARISONS:
            return self.comparison(node, op, args)
        if op in ("and", "or"):
            if not args:
                raise self.error(node, f"{op} needs at least one argument")
            parts = [self.formula(a) for a in args]
            if op == "or":
                if sum(len(p) for p in parts) > MAX_CONJUNCTS:
                    raise self.error(node, f"unsupported: DNF exceeds {MAX_CONJUNCTS} conjuncts")
                return tuple(c for p in parts for c in p)
            size = math.prod(len(p) for p in parts)
            if size > MAX_CONJUNCTS:
                raise self.error(node, f"unsupported: DNF exceeds {MAX_CONJUNCTS} conjuncts")
            return tuple(tuple(itertools.chain.from_iterable(c)) for c in itertools.product(*parts))
        if op in ("not", "=>", "xor", "ite"):
            raise self.error(node, f"unsupported: {op!r} is not part of VNN-LIB 2.0 (use and, or, comparisons)")
        if op in _TERM_OPS:
            raise self.error(node, "expected a formula, found a numeric term")
        raise self.error(node, f"unknown operator {op!r}")

    def comparison(self, node: SList, op: str, args: list[_Node]) -> AssertDnf:
        terms = self.terms(node, args)
        if len(terms) < 2:
            raise self.error(node, f"{op!r} needs at least two arguments")
        if op == "!=":
            if len(terms) != 2:
                raise self.error(node, "'!=' takes exactly two arguments")
            lhs, rhs = terms
            below = self.atom(node, "<", lhs, rhs)
            above = self.atom(node, ">", lhs, rhs)
            return tuple(c for c in (below, above) if c is not None)
        conjunction: list[Atom] = []
        for lhs, rhs in itertools.pairwise(terms):
            atom = self.atom(node, op, lhs, rhs)
            if atom is None:
                return ()
            conjunction.extend(atom)
        return (tuple(conjunction),)

    def atom(self, node: SList, op: str, lhs: _Linear, rhs: _Linear) -> tuple[Atom, ...] | None:
        """``lhs OP rhs`` as zero or one atom; None when it is a false constant comparison."""
        if op in (">=", ">"):
            lhs, rhs = rhs, lhs
        coeffs = dict(lhs[0])
        for key, a in rhs[0].items():
            coeffs[key] = coeffs.get(key, Fraction(0)) - a
        coeffs = {key: a for key, a in coeffs.items() if a != 0}
        constant = lhs[1] - rhs[1]
        kind = "==" if op in ("==", "=") else ("<" if op in ("<", ">") else "<=")
        if not coeffs:
            holds = constant == 0 if kind == "==" else (constant < 0 if kind == "<" else constant <= 0)
            return () if holds else None
        ordered = tuple(sorted(coeffs.items()))
        return (Atom(ordered, constant, kind, self.anchor(node).line),)  # type: ignore[arg-type]

    def terms(self, node: SList, args: list[_Node]) -> list[_Linear]:
        """Arguments of an operator, joining ``NAME [i,j]`` written with a space into one element."""
        terms: list[_Linear] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if isinstance(arg, Token) and index + 1 < len(args):
                following = args[index + 1]
                if isinstance(following, Token) and following.text.startswith("["):
                    terms.append(self.element(arg, following))
                    index += 2
                    continue
            if isinstance(arg, Token) and arg.text.startswith("["):
                raise self.error(arg, "an index must follow a variable name")
            terms.append(self.term(arg))
            index += 1
        del node
        return terms

    def term(self, node: _Node) -> _Linear:
        if isinstance(node, Token):
            return self.leaf(node)
        op = self.head(node)
        args = self.terms(node, node.items[1:])
        if op not in _TERM_OPS:
            if op in _COMPARISONS or op in ("and", "or"):
                raise self.error(node, "expected a numeric term, found a formula")
            if op == "/":
                raise self.error(node, "unsupported: '/' is not part of VNN-LIB 2.0 arithmetic")
            raise self.error(node, f"unknown operator {op!r}")
        if not args:
            raise self.error(node, f"{op!r} needs at least one argument")
        try:
            return self.fold(node, op, args)
        except NumberRangeError as exc:
            raise self.error(node, str(exc)) from None

    def fold(self, node: SList, op: str, args: list[_Linear]) -> _Linear:
        """``+``, ``-`` or ``*`` of linear terms, exactly (sizes checked by ``exact.checked``)."""
        one = Fraction(1)
        if op == "+":
            return combine(args, [one] * len(args))
        if op == "-":
            signs = [-one] if len(args) == 1 else [one] + [-one] * (len(args) - 1)
            return combine(args, signs)
        variable = [t for t in args if t[0]]
        if len(variable) > 1:
            raise self.error(node, "unsupported: a product of variables is polynomial (POLY theory); "
                                   "this verifier decides linear constraints only")
        scale = Fraction(1)
        for coeffs, value in args:
            if not coeffs:
                scale = checked(scale * value)
        return combine(variable, [scale]) if variable else ({}, scale)

    def leaf(self, token: Token) -> _Linear:
        text = token.text
        if text in self.tensors:
            decl = self.tensors[text]
            if decl.shape:
                raise self.error(token, f"{text} has shape {list(decl.shape)}: index one element, e.g. "
                                        f"{text}[{','.join('0' * len(decl.shape))}]")
            return {(text, 0): Fraction(1)}, Fraction(0)
        if text in _TERM_OPS or text in _COMPARISONS or text in ("and", "or"):
            raise self.error(token, f"operator {text!r} used as a value; write ({text} ...)")
        try:
            value = numeric_literal(text)
        except NumberRangeError as exc:
            raise self.error(token, str(exc)) from None
        if value is not None:
            return {}, value
        if _NAME.fullmatch(text):
            raise self.error(token, f"undeclared variable {text}")
        raise self.error(token, f"unknown symbol {text!r}")

    def element(self, name: Token, index: Token) -> _Linear:
        """``NAME[i,j,...]``: one element of a declared tensor, as a row-major flat index."""
        decl = self.tensors.get(name.text)
        if decl is None:
            raise self.error(name, f"undeclared variable {name.text}")
        if not index.text.endswith("]"):
            raise self.error(index, "expected an index such as [0,1]")
        fields = [f for f in re.split(r"[\s,]+", index.text[1:-1].strip()) if f]
        if not all(re.fullmatch(r"[0-9]+", f) for f in fields):
            raise self.error(index, f"indices of {name.text} must be non-negative integers")
        indices = [int(f) for f in fields]
        if len(indices) != len(decl.shape):
            raise self.error(index, f"{name.text} has {len(decl.shape)} dimensions {list(decl.shape)} but "
                                    f"{len(indices)} indices are given")
        flat = 0
        for i, (k, dim) in enumerate(zip(indices, decl.shape, strict=True)):
            if k >= dim:
                raise self.error(index, f"index {k} out of range for dimension {i} of {name.text} "
                                        f"(size {dim})")
            flat = flat * dim + k
        return {(name.text, flat): Fraction(1)}, Fraction(0)
