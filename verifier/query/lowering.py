"""Lowering a VNN-LIB 2.0 query's asserts to a :class:`~verifier.spec.types.Spec` over the
composed model (:mod:`verifier.query.compose`): each atom over tensor elements becomes exact
box bounds (input elements), rows over the composed model's flat output (everything else, via
the output copies the composition made) or a constant (values the model fixes, folded exactly).
The normaliser then rounds them (:mod:`verifier.spec.normalise`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from verifier.errors import SpecError
from verifier.spec.exact import nearest
from verifier.spec.normalise import Bound, Conjunct, Literal, Normaliser, Row
from verifier.spec.query import Atom, Query, TensorDecl
from verifier.spec.types import Spec

if TYPE_CHECKING:
    from verifier.query.compose import Placement


def lower(query: Query, placements: tuple[Placement, ...]) -> tuple[Spec, bool]:
    """The query's asserts as a :class:`Spec` over the composed model (see the module doc),
    and whether an unbounded input side had to be cut to the search radius (see
    :attr:`Composition.truncated`; the radius is twice the largest number of the query, at
    least 1)."""
    by_name = {p.decl.name: p for p in placements}
    num_inputs = sum(p.decl.size for p in placements if p.input_offset is not None)
    num_outputs = sum(p.decl.size for p in placements if p.output_offset is not None)
    names = [""] * num_inputs
    for p in placements:
        if p.input_offset is not None:
            for k in range(p.decl.size):
                names[p.input_offset + k] = _element_name(p.decl, k)
    asserts: list[list[Conjunct]] = []
    for dnf in query.asserts:
        asserts.append([_literals(conjunction, by_name) for conjunction in dnf])
    largest = max([1.0] + [abs(nearest(a.constant)) for dnf in query.asserts for c in dnf for a in c])
    radius = min(2.0 * largest, _MAX_RADIUS)
    normaliser = Normaliser(query.source, num_inputs, num_outputs, lambda i: names[i], search_radius=radius)
    regions = normaliser.run(asserts)
    spec = Spec(num_inputs, num_outputs, regions, source=Path(query.source) if query.source else None)
    return spec, normaliser.truncated


_MAX_RADIUS = 1e300  # the search radius stays finite whatever the query's numbers


def _element_name(decl: TensorDecl, flat: int) -> str:
    if not decl.shape:
        return decl.name
    index = np.unravel_index(flat, decl.shape)
    return f"{decl.name}[{','.join(str(int(i)) for i in index)}]"


def _literals(conjunction: tuple[Atom, ...], by_name: Mapping[str, Placement]) -> Conjunct:
    literals: Conjunct = []
    for atom in conjunction:
        literals.extend(_atom_literals(atom, by_name))
    return literals


def _model_value(placement: Placement, flat: int, atom: Atom) -> Fraction:
    """The exact value of element ``flat`` of a value that does not depend on the inputs.

    Raises:
        SpecError: the model computes NaN or an infinity there (the constraint has no meaning).
    """
    assert placement.constant is not None
    value = float(placement.constant[flat].item())
    if not math.isfinite(value):
        raise SpecError(f"{placement.decl.name} (line {atom.line}) is {value} in the model; a constraint "
                        "on a NaN or infinite value has no meaning")
    return Fraction(value)


def _atom_literals(atom: Atom, by_name: Mapping[str, Placement]) -> list[Literal]:
    """``coeffs·v + constant OP 0`` as exact box bounds, output rows or a constant (the
    normaliser rounds them)."""
    constant = atom.constant
    variable: dict[tuple[str, int], Fraction] = {}
    for (name, flat), a in atom.coeffs:
        placement = by_name[name]
        if placement.constant is not None:
            constant += a * _model_value(placement, flat, atom)
        else:
            variable[(name, flat)] = a
    if not variable:
        holds = {"<=": constant <= 0, "<": constant < 0, "==": constant == 0}[atom.op]
        return [holds]
    literals: list[Literal] = []
    if len(variable) == 1:
        ((name, flat), a), = variable.items()
        placement = by_name[name]
        if placement.input_offset is not None:
            var, value = placement.input_offset + flat, -constant / a
            if atom.op == "==":
                return [Bound(var, value, value)]
            literals.append(Bound(var, None, value) if a > 0 else Bound(var, value, None))
            if atom.op == "<=":
                return literals
    row: dict[int, Fraction] = {}
    for (name, flat), a in variable.items():
        placement = by_name[name]
        if placement.output_offset is None:
            raise SpecError(f"{name} cannot be used in this constraint (line {atom.line}): it has no output copy")
        index = placement.output_offset + flat
        row[index] = row.get(index, Fraction(0)) + a
    row = {j: a for j, a in row.items() if a != 0}
    if not row:
        holds = {"<=": constant <= 0, "<": constant < 0, "==": constant == 0}[atom.op]
        return [*literals, holds]
    if atom.op == "==":
        literals.append(Row(row, -constant, False))
        literals.append(Row({j: -a for j, a in row.items()}, constant, False))
    else:
        literals.append(Row(row, -constant, atom.op == "<"))
    return literals
