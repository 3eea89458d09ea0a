"""Operator implementations. Importing this package fills :data:`REGISTRY`."""

from verifier.ops import activation, arith, conv, linear, pool, reduce, shape, spatial  # noqa: F401
from verifier.ops.base import REGISTRY, Op, lookup, register

__all__ = ["REGISTRY", "Op", "lookup", "register"]
