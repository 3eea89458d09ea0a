"""VNN-LIB 1.0 properties from the grammar, as hypothesis strategies, and defects that make them
invalid by construction.

A property is built as a list of tagged commands (S-expressions as nested lists of atoms), then
rendered with a drawn layout: separators (spaces, tabs, newlines, CRLF, form feeds), comments
(with semicolons and parentheses inside), an optional UTF-8 byte-order mark and optional
``set-logic``/``check-sat`` commands. Numbers are drawn as exact decimals and written in every
form (``3``, ``3.``, ``0.25``, ``.25``, ``25e-2``, ``2.5E-1``, zero-padded long digit strings,
``(- x)``); with ``extreme=True`` also huge and tiny constants (``1e308``, ``1e-320``,
``1e-400``), digit strings a hair off a float32 value, constant arithmetic that overflows or
cancels in float64, and comparisons scaled by huge or tiny factors. Every such property is
still valid VNN-LIB whose real-number meaning the oracle reads exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .runner import Expect

SExpr = str | list[Any]
Command = tuple[str, SExpr]  # (tag, expression); tags: decl-X, decl-Y, lo-i, hi-i, box, out, meta


@dataclass(frozen=True)
class Target:
    """A model that properties are written for: sizes, usual input range, box radii."""

    name: str
    n_in: int
    n_out: int
    low: int  # inputs drawn in [low, high]
    high: int
    max_radius_exp: int  # radii are r * 10**-k with k >= this


ACAS = Target("acas", 5, 5, -1, 1, 2)
TINY = Target("tiny", 3, 2, -1, 1, 1)

EXTREME_CONSTANTS = ("1e308", "-1e308", "1.7976931348623157e308", "1e-320", "4.9e-324", "1e-400",
                     "2.2250738585072014e-308", "123456789012345678901234567890.5")


# --------------------------------------------------------------------------- numbers


@st.composite
def decimals(draw: st.DrawFn, low: int, high: int, max_places: int = 6) -> Decimal:
    """An exact decimal in [low, high] with at most ``max_places`` decimal places."""
    places = draw(st.integers(0, max_places))
    scale = 10**places
    return Decimal(draw(st.integers(low * scale, high * scale))).scaleb(-places)


@st.composite
def number(draw: st.DrawFn, value: Decimal) -> SExpr:
    """``value`` written in one of its exact textual forms."""
    magnitude = abs(value)
    plain = format(magnitude, "f")
    integral = magnitude == magnitude.to_integral_value()
    forms = ["plain", "exponent", "scientific", "padded"]
    forms += ["trailing-dot"] if integral else []
    forms += ["leading-dot"] if plain.startswith("0.") else []
    form = draw(st.sampled_from(forms))
    if form == "exponent":
        _sign, digits, exponent = magnitude.as_tuple()
        text = "".join(map(str, digits)) + draw(st.sampled_from(["e", "E"])) + str(exponent)
    elif form == "scientific":
        text = format(magnitude, "E") if draw(st.booleans()) else format(magnitude, "e")
    elif form == "padded":
        zeros = "0" * draw(st.integers(1, 40))
        text = plain + zeros if "." in plain else plain + "." + zeros
    elif form == "trailing-dot":
        text = plain.split(".")[0] + "."
    elif form == "leading-dot":
        text = plain[1:]
    else:
        text = plain
    if value >= 0:
        return text
    return ["-", text] if draw(st.integers(0, 3)) == 0 else "-" + text


@st.composite
def extreme_number(draw: st.DrawFn, value: Decimal) -> SExpr:
    """``value`` as exact constant arithmetic that float64 evaluation gets wrong or overflows."""
    v = draw(number(value))
    form = draw(st.sampled_from(["cancel", "nan", "tiny-product", "huge-plus-tiny", "long"]))
    if form == "cancel":  # (v + H) - H: float64 loses v when H is large
        h = draw(st.sampled_from(["1e308", "1e17", "9007199254740993"]))
        return ["-", ["+", v, h], h]
    if form == "nan":  # v + ((H + H) - (H + H)): inf - inf in float64, 0 in the reals
        return ["+", v, ["-", ["+", "1e308", "1e308"], ["+", "1e308", "1e308"]]]
    if form == "tiny-product":  # v * 1e-200 * 1e200: exactly v in the reals
        return ["*", v, "1e-200", "1e200"]
    if form == "huge-plus-tiny":
        return ["+", v, ["*", "1e-200", "1e-200"]] if draw(st.booleans()) else ["+", v, "1e-320"]
    nearest32 = Decimal(float(np.float32(float(value))))  # exact
    return draw(number(nearest32 + Decimal(draw(st.sampled_from(["1e-25", "-1e-25", "1e-30", "-1e-30"])))))


# --------------------------------------------------------------------------- properties


@st.composite
def input_box(draw: st.DrawFn, target: Target) -> list[tuple[Decimal, Decimal]]:
    """Exact bounds (lower <= upper) of every input."""
    box = []
    for _ in range(target.n_in):
        centre = draw(decimals(target.low, target.high, 5)) / 2
        k = draw(st.integers(target.max_radius_exp, 6))
        radius = Decimal(draw(st.integers(0, 50))).scaleb(-k)
        box.append((centre - radius, centre + radius))
    return box


@st.composite
def bound_commands(draw: st.DrawFn, index: int, lower: Decimal, upper: Decimal,
                   extreme: bool) -> list[Command]:
    """The bounds of input ``index`` in one of the usual shapes."""
    x = f"X_{index}"

    def num(value: Decimal) -> SExpr:
        if extreme and draw(st.integers(0, 3)) == 0:
            return draw(extreme_number(value))
        return draw(number(value))

    lo, hi = num(lower), num(upper)
    form = draw(st.sampled_from(["two", "flipped", "and", "chain", "scaled"] + (["eq"] if lower == upper else [])))
    if form == "eq":
        return [("box", ["assert", ["=", x, lo]])]
    if form == "and":
        return [("box", ["assert", ["and", [">=", x, lo], ["<=", x, hi]]])]
    if form == "chain":
        return [("box", ["assert", ["<=", lo, x, hi]])]
    if form == "scaled":
        k = Decimal(draw(st.sampled_from(["2", "0.5", "10", "4"])))
        return [(f"lo-{index}", ["assert", [">=", ["*", draw(number(k)), x], num(k * lower)]]),
                (f"hi-{index}", ["assert", ["<=", ["*", x, draw(number(k))], num(k * upper)]])]
    if form == "flipped":
        return [(f"lo-{index}", ["assert", ["<=", lo, x]]), (f"hi-{index}", ["assert", [">=", hi, x]])]
    return [(f"lo-{index}", ["assert", [">=", x, lo]]), (f"hi-{index}", ["assert", ["<=", x, hi]])]


@st.composite
def linear_term(draw: st.DrawFn, target: Target, extreme: bool) -> SExpr:
    """A linear term over the outputs: a sum of scaled outputs and a constant."""
    outputs = draw(st.lists(st.integers(0, target.n_out - 1), min_size=1, max_size=min(3, target.n_out), unique=True))
    parts: list[SExpr] = []
    for j in outputs:
        coefficient = draw(decimals(-3, 3, 2).filter(lambda d: d != 0))
        form = draw(st.sampled_from(["bare", "mul", "mul-rev", "div", "neg"]))
        y = f"Y_{j}"
        if form == "mul":
            parts.append(["*", draw(number(coefficient)), y])
        elif form == "mul-rev":
            parts.append(["*", y, draw(number(coefficient))])
        elif form == "div":
            parts.append(["/", y, draw(number(coefficient))])
        else:
            parts.append(["-", y] if form == "neg" else y)
    if draw(st.booleans()):
        parts.append(draw(number(draw(decimals(-2, 2, 4)))))
    if extreme and draw(st.integers(0, 2)) == 0:
        parts.append(draw(st.one_of(decimals(-1, 1, 3).flatmap(extreme_number), st.sampled_from(EXTREME_CONSTANTS))))
    if len(parts) == 1:
        return parts[0]
    shape = draw(st.sampled_from(["flat", "nested", "minus"]))
    if shape == "nested":
        return ["+", parts[0], ["+", *parts[1:]]]
    if shape == "minus":
        return ["-", parts[0], *[["-", p] for p in parts[1:]]]
    return ["+", *parts]


@st.composite
def comparison(draw: st.DrawFn, target: Target, extreme: bool) -> SExpr:
    """``(op lhs rhs)`` over output terms; with ``extreme``, maybe both sides scaled."""
    op = draw(st.sampled_from(["<=", ">=", "<", ">"]))
    lhs = draw(linear_term(target, extreme))
    rhs = draw(st.one_of(linear_term(target, extreme), decimals(-2, 2, 4).flatmap(number)))
    if extreme and draw(st.booleans()):
        scale: list[SExpr] = draw(st.sampled_from([["1e-200", "1e-200"], ["1e-320"], ["1e300"], ["1e308"],
                                                   ["1e-160", "1e-160"], ["1e200", "1e200"]]))
        return [op, ["*", *scale, lhs], ["*", *scale, rhs]]
    return [op, lhs, rhs]


def formula(target: Target, extreme: bool, depth: int = 3) -> st.SearchStrategy[SExpr]:
    """A nesting of ``and``/``or`` over output comparisons."""
    leaf = comparison(target, extreme)
    if depth == 0:
        return leaf
    inner = formula(target, extreme, depth - 1)
    branch = st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=1, max_size=3))
    return st.one_of(leaf, leaf, branch.map(lambda t: [t[0], *t[1]]))


@st.composite
def spec_commands(draw: st.DrawFn, target: Target, extreme: bool = False) -> list[Command]:
    """A whole property: declarations, then input bounds and output constraints in any order."""
    decls: list[Command] = []
    for kind, count in (("X", target.n_in), ("Y", target.n_out)):
        for i in range(count):
            if draw(st.integers(0, 3)) == 0:
                decls.append((f"decl-{kind}", ["declare-fun", f"{kind}_{i}", [], "Real"]))
            else:
                decls.append((f"decl-{kind}", ["declare-const", f"{kind}_{i}", "Real"]))
    decls = draw(st.permutations(decls))
    body: list[Command] = []
    regions = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
    if regions == 1:
        for i, (lo, hi) in enumerate(draw(input_box(target))):
            body += draw(bound_commands(i, lo, hi, extreme))
    else:
        disjuncts: list[SExpr] = []
        for _ in range(regions):
            bounds: list[SExpr] = ["and"]
            for i, (lo, hi) in enumerate(draw(input_box(target))):
                bounds += [[">=", f"X_{i}", draw(number(lo))], ["<=", f"X_{i}", draw(number(hi))]]
            disjuncts.append(bounds)
        body.append(("box", ["assert", ["or", *disjuncts]]))
    out = draw(formula(target, extreme))
    if isinstance(out, list) and out[0] == "and" and draw(st.booleans()):
        body += [("out", ["assert", part]) for part in out[1:]]
    else:
        body.append(("out", ["assert", out]))
    body = draw(st.permutations(body))
    meta_head = [("meta", ["set-logic", "QF_LRA"])] if draw(st.booleans()) else []
    meta_tail = [("meta", ["check-sat"])] if draw(st.booleans()) else []
    return [*meta_head, *decls, *body, *meta_tail]


# --------------------------------------------------------------------------- rendering

COMMENTS = ("; a comment", ";; (declare-const X_9 Real) is not a command here", "; semicolons ; inside ; ;",
            "; unbalanced ( ( ( in a comment", "; quotes \" and |bars|", "; unicode: ∀ε>0 é",
            ";", "; (vnnlib-version <2.0>)")


@dataclass(frozen=True)
class Layout:
    """How a property is written out."""

    separators: tuple[str, ...]
    comment_rate: float
    crlf: bool
    bom: bool

    @property
    def lenient(self) -> bool:
        """Uses whitespace outside SMT-LIB's (space, tab, CR, LF)."""
        return any(c in sep for sep in self.separators for c in "\f\v")


layouts = st.builds(
    Layout,
    separators=st.sampled_from([(" ",), ("\t",), (" ", "\n"), ("  ", "\t", "\n"), (" ", "\f"), ("\n",), (" ", "\v")]),
    comment_rate=st.sampled_from([0.0, 0.0, 0.05, 0.3]),
    crlf=st.booleans(),
    bom=st.integers(0, 4).map(lambda k: k == 0),
)


def render(commands: list[Command], layout: Layout, rng: random.Random) -> str:
    """The text of a property."""
    pieces = []
    for _, expr in commands:
        if layout.comment_rate and rng.random() < layout.comment_rate:
            pieces.append(rng.choice(COMMENTS) + "\n")
        pieces.append(_render_expr(expr, layout, rng))
        pieces.append(rng.choice(["\n", "\n\n", " ", "\n" + rng.choice(COMMENTS) + "\n"])
                      if layout.comment_rate else "\n")
    text = "".join(pieces)
    if layout.crlf:
        text = text.replace("\n", "\r\n")
    return ("\ufeff" if layout.bom else "") + text


def _render_expr(expr: SExpr, layout: Layout, rng: random.Random) -> str:
    """One S-expression with random separators between its items."""
    if isinstance(expr, str):
        return expr
    inner = [_render_expr(e, layout, rng) for e in expr]
    out = "("
    for k, item in enumerate(inner):
        if k:
            out += rng.choice(layout.separators)
        out += item
    return out + ")"


@st.composite
def valid_spec(draw: st.DrawFn, target: Target, extreme: bool = False) -> tuple[str, Expect, str]:
    """(text, expectation, label) of a grammar-generated property."""
    commands = draw(spec_commands(target, extreme))
    layout = draw(layouts)
    text = render(commands, layout, draw(st.randoms(use_true_random=False)))
    label = "extreme" if extreme else "grammar"
    label += "+bom" if layout.bom else ""
    label += "+crlf" if layout.crlf else ""
    return text, Expect.ANY if layout.lenient else Expect.VALID, label + ("+lenient-ws" if layout.lenient else "")


# --------------------------------------------------------------------------- invalid by construction

BAD_LITERALS = ("nan", "NaN", "inf", "-inf", "+inf", "0x10", "1e", "1..2", "--1", "1/2", "#x10", "1_000", '"0.5"')
BAD_OPERATORS = ("<==", "=<", "AND", "plus", "≤", "le", "assert", "declare-const")


def _atom_paths(expr: SExpr, accept: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths (index sequences) of the atoms of ``expr`` for which ``accept(atom, index)`` holds."""
    if isinstance(expr, str):
        return [path] if accept(expr, path[-1] if path else -1) else []
    return [p for k, e in enumerate(expr) for p in _atom_paths(e, accept, (*path, k))]


def _replace(commands: list[Command], accept: Any, make: Any, rng: random.Random) -> bool:
    """Replaces one atom of an assert chosen among those ``accept``\\ ed by ``make(atom)``."""
    spots = [(c, p) for c, (tag, expr) in enumerate(commands) if isinstance(expr, list) and expr[:1] == ["assert"]
             for p in _atom_paths(expr, accept)]
    if not spots:
        return False
    c, path = rng.choice(spots)
    node: Any = commands[c][1]
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = make(node[path[-1]])
    return True


def _is_number(atom: str, index: int) -> bool:
    return index > 0 and atom[:1] in "0123456789.-" and atom not in ("-",) and not atom.startswith(("X_", "Y_"))


def apply_defect(commands: list[Command], defect: str, target: Target, rng: random.Random) -> bool:
    """Makes the property invalid in the named way; False when it does not apply here."""
    n = target.n_in
    extra: dict[str, Command] = {
        "unclosed": ("raw", "(assert (<= Y_0 1)"), "extra-close": ("raw", ")"), "bare-atom": ("raw", "X_0"),
        "mixed-xy": ("out", ["assert", ["<=", "X_0", "Y_0"]]),
        "nonlinear": ("out", ["assert", ["<=", ["*", "Y_0", f"Y_{1 % target.n_out}"], "1"]]),
        "div-by-var": ("out", ["assert", ["<=", ["/", "Y_0", f"Y_{1 % target.n_out}"], "1"]]),
        "extra-output": ("decl-Y", ["declare-const", f"Y_{target.n_out}", "Real"]),
        "empty-list": ("raw", "()"), "assert-arity": ("out", rng.choice([["assert"], ["assert", "true", "true"]])),
        "unknown-command": ("meta", rng.choice([["frobnicate", "X_0"], ["declare-const", "X_0"]])),
        "duplicate-decl": ("decl-X", ["declare-const", f"X_{rng.randrange(n)}", "Real"]),
    }
    if defect in extra:
        position = rng.randint(0, len(commands)) if defect not in ("extra-close", "unclosed") else len(commands)
        if defect in ("extra-output", "duplicate-decl"):  # declarations first
            position = rng.randint(0, sum(tag.startswith("decl") for tag, _ in commands))
        commands.insert(position, extra[defect])
        return True
    if defect == "bad-literal":
        return _replace(commands, _is_number, lambda _: rng.choice(BAD_LITERALS), rng)
    if defect == "unknown-op":
        return _replace(commands, lambda a, i: i == 0 and a != "assert", lambda _: rng.choice(BAD_OPERATORS), rng)
    if defect == "undeclared":
        ghost = rng.choice([f"Y_{target.n_out + 7}", "Z_0", "x_0", f"X_{n + 3}"])
        return _replace(commands, lambda a, i: a.startswith(("X_", "Y_")), lambda _: ghost, rng)
    return _structural_defect(commands, defect, n, rng)


def _structural_defect(commands: list[Command], defect: str, n: int, rng: random.Random) -> bool:
    """Defects that change declarations or drop bounds."""
    k = rng.randrange(n)
    decl = next(i for i, (tag, e) in enumerate(commands) if tag == "decl-X" and e[1] == f"X_{k}")
    if defect == "drop-decl":
        del commands[decl]
        return True
    if defect == "bad-sort":
        expr = list(commands[decl][1])
        expr[-1] = rng.choice(["Int", "Bool", "Float32", "real"])
        commands[decl] = ("decl-X", expr)
        return True
    if defect == "index-gap":
        last = f"X_{n - 1}"
        return _replace(commands, lambda a, i: a == last, lambda _: f"X_{n}", rng) and \
            _rename_declaration(commands, last, f"X_{n}")
    if defect == "missing-bound":
        single = [i for i, (tag, e) in enumerate(commands)
                  if tag in (f"lo-{k}", f"hi-{k}") or (tag == "box" and _atom_paths(e, lambda a, _: a == f"X_{k}")
                                                        and len(_atom_paths(e, lambda a, _: a.startswith("X_"))) <= 2)]
        if not single or any(tag == "box" and "or" in str(e) for tag, e in commands):
            return False
        for i in reversed(single):
            del commands[i]
        commands.append(("lo", ["assert", [">=", f"X_{k}", "0"]]))
        return True
    raise ValueError(f"unknown defect {defect}")


def _rename_declaration(commands: list[Command], old: str, new: str) -> bool:
    """Renames the declaration of ``old`` (and every other use) to ``new``."""
    for c, (tag, expr) in enumerate(commands):
        if isinstance(expr, list):
            commands[c] = (tag, _rename(expr, old, new))
    return True


def _rename(expr: SExpr, old: str, new: str) -> SExpr:
    if isinstance(expr, str):
        return new if expr == old else expr
    return [_rename(e, old, new) for e in expr]


DEFECTS = ("unclosed", "extra-close", "bare-atom", "mixed-xy", "nonlinear", "div-by-var", "extra-output",
           "empty-list", "assert-arity", "unknown-command", "duplicate-decl", "bad-literal", "unknown-op",
           "undeclared", "drop-decl", "bad-sort", "index-gap", "missing-bound")


@st.composite
def invalid_spec(draw: st.DrawFn, target: Target) -> tuple[str, Expect, str]:
    """(text, BAD, label) of a grammar property with one defect that makes it invalid."""
    commands = draw(spec_commands(target))
    rng = draw(st.randoms(use_true_random=False))
    defect = draw(st.sampled_from(DEFECTS))
    if not apply_defect(commands, defect, target, rng):
        defect = "unclosed"
        apply_defect(commands, defect, target, rng)
    layout = draw(layouts)
    text = render(commands, layout, rng)
    return text, Expect.BAD, f"invalid:{defect}"
