"""Mutators of real VNN-LIB files (the ACAS Xu properties, the tiny model's properties): each
takes the file's text and a :class:`random.Random` and returns the mutated bytes with the
:class:`~tests.fuzz.runner.Expect`\\ ation the mutation implies for a valid original.

Parenthesis balance is judged by :func:`balance`, a scan that skips comments, strings and
``|quoted|`` symbols: a file whose parentheses do not balance, or with a bare symbol at the
top level, is invalid whatever else it holds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from .runner import ROOT, Expect

ACAS_SPECS = sorted((ROOT / "benchmarks" / "acasxu" / "vnnlib").glob("prop_*.vnnlib"))
TINY_SPECS = {
    "tiny_box_or.vnnlib": """; tiny model: 3 inputs, 2 outputs
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 1.0))
(assert (>= X_1 -0.5))
(assert (<= X_1 0.5))
(assert (>= X_2 0.0))
(assert (<= X_2 0.25))
(assert (or (and (>= Y_0 Y_1) (>= Y_0 2.5)) (and (<= Y_1 -3.0))))
""",
    "tiny_small_box.vnnlib": """; tiny model, a small box around a point
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= X_0 0.31))
(assert (>= X_0 0.29))
(assert (<= X_1 -0.19))
(assert (>= X_1 -0.21))
(assert (and (<= X_2 0.51) (>= X_2 0.49)))
(assert (<= (- Y_0 Y_1) -10))
""",
    "tiny_sat.vnnlib": """; tiny model: an easy violation
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= -1 X_0 1))
(assert (<= -1 X_1 1))
(assert (<= -1 X_2 1))
(assert (>= (+ Y_0 Y_1) -100))
""",
}
EXTREME_TOKENS = ("1e400", "-1e400", "1e-400", "nan", "inf", "0x10", "-inf", "NaN", "1e308", "-1e308", "1e-320")
NON_NUMBERS = frozenset({"nan", "inf", "0x10", "-inf", "NaN"})
_NUMBER_SPAN = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")

Mutator = Callable[[str, random.Random], tuple[bytes, Expect]]


def balance(text: str) -> tuple[bool, list[int]]:
    """(parentheses balance and no bare top-level symbol, offsets of parentheses outside comments)."""
    depth, parens, k, bare = 0, [], 0, False
    while k < len(text):
        c = text[k]
        if c == ";":
            k = text.find("\n", k)
            k = len(text) if k < 0 else k
            continue
        if c in "\"|":
            end = text.find(c, k + 1)
            k = len(text) if end < 0 else end + 1
            depth += 100 * (end < 0)  # an unterminated string or quoted symbol
            continue
        if c in "()":
            parens.append(k)
            depth += 1 if c == "(" else -1
            bare = bare or depth < 0
        elif depth == 0 and not c.isspace() and c != "\ufeff":
            bare = True
        k += 1
    return depth == 0 and not bare, parens


def _code_positions(text: str) -> list[int]:
    """Offsets outside comments (where a mutation changes the meaning)."""
    out, in_comment = [], False
    for k, c in enumerate(text):
        in_comment = (in_comment and c != "\n") or c == ";"
        if not in_comment:
            out.append(k)
    return out


def truncate(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """The text cut at a random point (bad when the cut leaves parentheses open)."""
    cut = text[: rng.randrange(len(text))]
    return cut.encode(), Expect.ANY if balance(cut)[0] else Expect.BAD


def delete_paren(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """One parenthesis (outside comments) removed."""
    k = rng.choice(balance(text)[1])
    return (text[:k] + text[k + 1:]).encode(), Expect.BAD


def duplicate_paren(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """One parenthesis (outside comments) doubled."""
    k = rng.choice(balance(text)[1])
    return (text[:k] + text[k] + text[k:]).encode(), Expect.BAD


def replace_number(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """One number token replaced by an extreme or non-finite constant (bad if no number)."""
    code = set(_code_positions(text))
    spans = [m.span() for m in _NUMBER_SPAN.finditer(text) if m.start() in code]
    start, end = rng.choice(spans)
    token = rng.choice(EXTREME_TOKENS)
    return (text[:start] + token + text[end:]).encode(), Expect.BAD if token in NON_NUMBERS else Expect.ANY


def leading_comments(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """Many comment lines full of semicolons before the first command."""
    lines = [";" * rng.randint(1, 60) + rng.choice(["", " ; ; ;", " (vnnlib-version <2.0>)", " x ;;"])
             for _ in range(rng.randint(50, 3000))]
    return ("\n".join(lines) + "\n" + text).encode(), Expect.VALID


def bom(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """A UTF-8 byte-order mark at the start (valid UTF-8 text, valid VNN-LIB)."""
    return ("\ufeff" + (text.replace("\n", "\r\n") if rng.random() < 0.5 else text)).encode(), Expect.VALID


def crlf(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """Windows line ends, or tabs for spaces (still valid)."""
    if rng.random() < 0.5:
        return text.replace("\n", "\r\n").encode(), Expect.VALID
    return text.replace(" ", "\t").encode(), Expect.VALID


def form_feeds(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """Form feeds or vertical tabs as whitespace (outside SMT-LIB's whitespace: any answer)."""
    return text.replace("\n", rng.choice(["\f", "\n\f", "\v\n"])).encode(), Expect.ANY


def flip_bytes(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """A few random bytes replaced by random values (often invalid UTF-8)."""
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data), Expect.ANY


def invalid_utf8(text: str, rng: random.Random) -> tuple[bytes, Expect]:
    """A stray continuation byte or a cut multi-byte sequence inserted somewhere."""
    data = text.encode()
    k = rng.randrange(len(data) + 1)
    return data[:k] + rng.choice([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) + data[k:], \
        Expect.ANY


MUTATORS: dict[str, Mutator] = {
    "truncate": truncate,
    "delete-paren": delete_paren,
    "duplicate-paren": duplicate_paren,
    "replace-number": replace_number,
    "leading-comments": leading_comments,
    "bom": bom,
    "crlf-or-tabs": crlf,
    "form-feeds": form_feeds,
    "flip-bytes": flip_bytes,
    "invalid-utf8": invalid_utf8,
}


# --------------------------------------------------------------------------- deep nesting


def deep_nesting(text: str, rng: random.Random, depth: int) -> tuple[bytes, Expect, str]:
    """``depth`` levels of nesting added to a valid property (balanced, unbalanced or bare)."""
    form = rng.choice(["and-chain", "or-chain", "term-chain", "unbalanced", "parens-only"])
    if form in ("and-chain", "or-chain"):
        op = form.split("-")[0]
        inner = f"({op} " * depth + "(<= Y_0 1e9)" + ")" * depth
        return (text + f"\n(assert {inner})\n").encode(), Expect.ANY, form
    if form == "term-chain":
        inner = "(+ " * depth + "Y_0" + ")" * depth
        return (text + f"\n(assert (<= {inner} 1e9))\n").encode(), Expect.ANY, form
    if form == "unbalanced":
        inner = "(and " * depth + "(<= Y_0 1e9)" + ")" * (depth - 1)
        return (text + f"\n(assert {inner})\n").encode(), Expect.BAD, form
    return (text + "\n" + "(" * depth + ")" * depth + "\n").encode(), Expect.BAD, form
