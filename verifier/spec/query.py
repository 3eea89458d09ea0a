"""A parsed VNN-LIB 2.0 query: network declarations and asserts, before any model is known.

A query declares networks (their inputs, hidden values and outputs as typed tensors) and
asserts linear constraints over single tensor elements. Each assert is kept as a DNF of
:class:`Atom` conjunctions; turning atoms into input bounds and output rows needs the
networks' models and happens in :mod:`verifier.query.compose`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Role = Literal["input", "hidden", "output"]
Comparison = Literal["<=", "<", "=="]

REAL = "real"
"""The element type that lets a solver use its own arithmetic (written ``Real`` or ``real``)."""


@dataclass(frozen=True)
class TensorDecl:
    """One ``declare-input``/``declare-hidden``/``declare-output``.

    Attributes:
        name: the variable name used in asserts (unique in the query).
        role: input, hidden or output.
        element_type: the declared element type in lower case (``float32``, ``real``...).
        shape: the declared shape (``()`` for a scalar).
        onnx_name: the ONNX value the variable is bound to (always set for hidden values; for
            inputs and outputs only when the network maps them by name).
        line: the line of the declaration, for error messages.
    """

    name: str
    role: Role
    element_type: str
    shape: tuple[int, ...]
    onnx_name: str | None
    line: int

    @property
    def size(self) -> int:
        """Number of scalar elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class NetworkDecl:
    """One ``declare-network``.

    Attributes:
        name: the network name that ``--network NAME=MODEL`` refers to.
        inputs, hidden, outputs: the declarations, each in file order.
        equal_to: the network this one is declared ``equal-to`` (it uses that network's
            model; no ``--network`` is given for it), or None.
        isomorphic_to: the network this one is declared ``isomorphic-to`` (same shapes, its
            own model), or None.
        line: the line of the declaration.
    """

    name: str
    inputs: tuple[TensorDecl, ...]
    hidden: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    equal_to: str | None
    isomorphic_to: str | None
    line: int

    @property
    def variables(self) -> tuple[TensorDecl, ...]:
        """Inputs, hidden values, outputs: the order in which assignments are reported."""
        return self.inputs + self.hidden + self.outputs


@dataclass(frozen=True)
class Atom:
    """``sum(coeffs[v] * v) + constant  OP  0`` where ``v = (tensor name, flat index)``.

    ``OP`` is ``<=``, ``<`` or ``==``; ``>``/``>=`` are stored with the sides swapped and
    ``!=`` as the disjunction of two strict atoms. ``coeffs`` has no zero entries and is never
    empty (a comparison of constants is evaluated while parsing). The numbers are exact
    rationals: the decimal literals of the file and the exact results of the arithmetic on them.
    """

    coeffs: tuple[tuple[tuple[str, int], Fraction], ...]
    constant: Fraction
    op: Comparison
    line: int


AssertDnf = tuple[tuple[Atom, ...], ...]
"""One assert as a disjunction of conjunctions; ``()`` is false, ``((),)`` is true."""


@dataclass(frozen=True)
class Query:
    """A parsed VNN-LIB 2.0 file.

    Attributes:
        version: the version from ``(vnnlib-version <...>)``, e.g. ``"2.0"``.
        networks: the network declarations in file order.
        asserts: one DNF per assert, in file order.
        source: the file name used in error messages.
    """

    version: str
    networks: tuple[NetworkDecl, ...]
    asserts: tuple[AssertDnf, ...]
    source: str

    def variable(self, name: str) -> tuple[NetworkDecl, TensorDecl]:
        """The network and declaration of a variable name (KeyError if undeclared)."""
        for network in self.networks:
            for decl in network.variables:
                if decl.name == name:
                    return network, decl
        raise KeyError(name)
