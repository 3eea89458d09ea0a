"""Reading VNN-LIB text into S-expressions, in time linear in its length.

Both parsers (1.0 in ``vnnlib.py``, 2.0 in ``vnnlib2.py``) read their files here. Text is
untrusted, so nothing here may backtrack: the scanner is one regular expression, applied with
``finditer`` from left to right, whose every repetition is possessive (``*+``, ``++``: once
taken, characters are never given back) and whose alternatives start with distinct
characters, so each character is examined a bounded number of times; a character no token
can start with (or the opening quote of a string that is never closed) is a *bad* token and
ends the scan with an error naming its line and column. Comments (``;`` to the end of the
line) and whitespace (spaces, tabs, CR, LF, form feeds...) are skipped; a UTF-8 byte-order
mark at the start of the text is skipped too. Nesting deeper than :data:`MAX_DEPTH` is
refused while reading, so the recursive evaluation of a formula is bounded (see
:func:`recursion_headroom`).
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, NoReturn

from verifier.errors import SpecSyntaxError

MAX_DEPTH = 10_000
"""Deepest nesting of parentheses a file may use."""

BOM = "\ufeff"


class Dialect(Enum):
    """Token rules of one VNN-LIB version."""

    V1 = "1.0"  # SMT-LIB strings with doubled quotes, |quoted symbols|
    V2 = "2.0"  # strings with backslash escapes, [i,j] indices, <2.0> versions


# One match per token: whitespace and comments before it are skipped inside the match, with
# possessive quantifiers (no backtracking); ``end`` matches after trailing whitespace, so no
# position is scanned twice. Every alternative starts with a different character class.
_SKIP = r"(?:\s++|;[^\n]*+)*+"
_SCANNERS = {
    Dialect.V1: re.compile(_SKIP + "(?:" + "|".join((
        r"(?P<open>\()", r"(?P<close>\))",
        r'(?P<string>"[^"]*+(?:""[^"]*+)*+")',
        r"(?P<quoted>\|[^|]*+\|)",
        r'(?P<symbol>[^\s();"|]++)',
        r"(?P<end>\Z)", r"(?P<bad>.)",
    )) + ")", re.DOTALL),
    Dialect.V2: re.compile(_SKIP + "(?:" + "|".join((
        r"(?P<open>\()", r"(?P<close>\))",
        r'(?P<string>"[^"\\]*+(?:\\.[^"\\]*+)*+")',
        r"(?P<index>\[[^\]]*+\])",
        r"(?P<version><[0-9][^>\s()]*+>)",
        r'(?P<symbol>[^\s()\[\];"]++)',
        r"(?P<end>\Z)", r"(?P<bad>.)",
    )) + ")", re.DOTALL),
}

_UNCLOSED = {'"': "a string that is never closed with '\"'", "|": "a quoted symbol never closed with '|'",
             "[": "an index never closed with ']'"}


class Lines:
    """Line and column of a character offset in one text; the table of line starts is built
    on first use (positions are needed for error messages and a few declarations only)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] | None = None

    def position(self, offset: int) -> tuple[int, int]:
        """1-based ``(line, column)`` of ``offset`` (a byte-order mark is not a column)."""
        if self.starts is None:
            first = 1 if self.text.startswith(BOM) else 0
            self.starts = [first, *(m.end() for m in re.finditer("\n", self.text))]
        index = bisect.bisect_right(self.starts, offset) - 1
        return index + 1, offset - self.starts[index] + 1


class Token(NamedTuple):
    """One token: its text and where it starts in the text ``lines`` describes."""

    text: str
    offset: int
    lines: Lines

    @property
    def line(self) -> int:
        """1-based line of the token's first character."""
        return self.lines.position(self.offset)[0]

    @property
    def column(self) -> int:
        """1-based column of the token's first character."""
        return self.lines.position(self.offset)[1]


@dataclass(slots=True)
class SList:
    """A parenthesised expression: its items and where its ``(`` is."""

    items: list[Token | SList]
    offset: int
    lines: Lines

    @property
    def open(self) -> Token:
        """The ``(`` token that opened the expression."""
        return Token("(", self.offset, self.lines)

    def anchor(self) -> Token:
        """The token an error about this expression points at: its operator, else its ``(``."""
        head = self.items[0] if self.items else None
        return head if isinstance(head, Token) else self.open


Node = Token | SList


def strip_bom(text: str) -> str:
    """The text without a leading UTF-8 byte-order mark."""
    return text[1:] if text.startswith(BOM) else text


def tokens(text: str, source: str, dialect: Dialect) -> Iterator[Token]:
    """The tokens of ``text`` (comments and whitespace dropped) with their positions.

    Raises:
        SpecSyntaxError: a character that starts no token, or an unclosed string, quoted
            symbol or index; the message names the line and column.
    """
    lines = Lines(text)
    for match in _SCANNERS[dialect].finditer(text, 1 if text.startswith(BOM) else 0):
        kind = match.lastgroup
        if kind == "end":
            return
        assert kind is not None
        token = Token(match.group(kind), match.start(kind), lines)
        if kind == "bad":
            reason = _UNCLOSED.get(token.text, f"unexpected character {token.text!r}")
            raise SpecSyntaxError(source, token.line, token.column, token.text, reason)
        yield token


def read_commands(text: str, source: str, dialect: Dialect) -> Iterator[tuple[Node, int]]:
    """The top-level expressions of ``text``, one at a time (so memory is bounded by the
    largest command, not the file), each with its nesting depth (0 for a bare token).

    Raises:
        SpecSyntaxError: a token error (see :func:`tokens`), an unbalanced parenthesis, or
            nesting deeper than :data:`MAX_DEPTH`.
    """
    lines = Lines(text)
    stack: list[SList] = []
    deepest = 0
    for match in _SCANNERS[dialect].finditer(text, 1 if text.startswith(BOM) else 0):
        kind = match.lastgroup
        if kind == "open":
            if len(stack) >= MAX_DEPTH:
                _fail(source, Token("(", match.end() - 1, lines), f"unsupported: parentheses nested deeper than "
                      f"{MAX_DEPTH} levels")
            stack.append(SList([], match.end() - 1, lines))
            deepest = max(deepest, len(stack))
        elif kind == "close":
            if not stack:
                _fail(source, Token(")", match.end() - 1, lines), "unbalanced ')' without a matching '('")
            done = stack.pop()
            if stack:
                stack[-1].items.append(done)
            else:
                yield done, deepest
                deepest = 0
        elif kind == "end":
            break
        else:
            assert kind is not None
            token = Token(match.group(kind), match.start(kind), lines)
            if kind == "bad":
                _fail(source, token, _UNCLOSED.get(token.text, f"unexpected character {token.text!r}"))
            if stack:
                stack[-1].items.append(token)
            else:
                yield token, 0
    if stack:
        _fail(source, stack[0].open, "unbalanced '(': it is never closed")


def _fail(source: str, token: Token, reason: str) -> NoReturn:
    raise SpecSyntaxError(source, token.line, token.column, token.text, reason)


def leading_version(text: str) -> str | None:
    """The ``V`` of a leading ``(vnnlib-version <V>)`` command (after comments and
    whitespace), or None when the text does not start with one (a 1.0 file). Linear time;
    never raises: a malformed start is left to the parser to report."""
    expected = ("(", "vnnlib-version")
    seen: list[str] = []
    try:
        for token in tokens(text, "", Dialect.V2):
            seen.append(token.text)
            if len(seen) <= 2 and token.text != expected[len(seen) - 1]:
                return None
            if len(seen) == 3:
                return token.text[1:-1].strip() if token.text.startswith("<") and token.text.endswith(">") else None
    except SpecSyntaxError:
        return None
    return None


_FRAMES_PER_LEVEL = 4  # Python frames a parser's evaluation uses per level of nesting (measured: 2)


@contextmanager
def recursion_headroom(depth: int) -> Iterator[None]:
    """Lets a recursive evaluation descend ``depth`` (at most :data:`MAX_DEPTH`) levels of
    nesting: the interpreter's recursion limit is raised by what that needs for the duration
    and restored afterwards (nothing changes for the shallow nesting of ordinary files).

    Python 3.11 and later run Python-to-Python calls without growing the C stack, so the
    raised limit is safe; it is process-wide, so only the parser's own evaluation runs inside.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(previous + min(depth, MAX_DEPTH) * _FRAMES_PER_LEVEL)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
