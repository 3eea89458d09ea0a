"""VNN-LIB properties: the parser and the normalised :class:`Spec` it produces."""

from verifier.spec.types import Clause, Region, Spec
from verifier.spec.vnnlib import parse_vnnlib, parse_vnnlib_text

__all__ = ["Clause", "Region", "Spec", "parse_vnnlib", "parse_vnnlib_text"]
