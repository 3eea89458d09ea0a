"""Exceptions for bad user input. Each carries a message that names the file, node or line.

The CLI maps :class:`InputError` (and subclasses) to the documented "bad input" exit code and
prints only the message; any other exception is an internal error.
"""

from __future__ import annotations


class InputError(Exception):
    """Base class for errors caused by the user's model, property or arguments."""


class ModelError(InputError):
    """The ONNX model is missing, malformed, unsupported or has invalid weights."""


class UnsupportedOpsError(ModelError):
    """The model uses op types the verifier does not implement.

    Attributes:
        missing: op type -> names of the nodes using it.
    """

    def __init__(self, missing: dict[str, list[str]]) -> None:
        self.missing = missing
        parts = [f"{op} (nodes: {', '.join(names)})" for op, names in sorted(missing.items())]
        super().__init__("unsupported ONNX op types: " + "; ".join(parts))


class SpecError(InputError):
    """The VNN-LIB file is missing, malformed or unsupported."""


class SpecSyntaxError(SpecError):
    """A malformed VNN-LIB file; the message names the file, line, column and token."""

    def __init__(self, path: str, line: int, column: int, token: str, reason: str) -> None:
        self.path, self.line, self.column, self.token = path, line, column, token
        super().__init__(f"{path}:{line}:{column}: {reason} (at {token!r})")


class MismatchError(InputError):
    """The property and the model disagree (input or output sizes)."""
