"""Operator implementations. Importing this package fills :data:`REGISTRY`.

Every module of the package is imported here (in name order), so a new file
``verifier/ops/<name>.py`` with a ``@register(...)`` class adds its op with no other edit.
Helper modules (base, relax, curves, multi_relax, max_form) are imported too; that is harmless.
"""

import importlib
import pkgutil

from verifier.ops.base import REGISTRY, Op, lookup, register


def _import_all() -> None:
    """Imports every module of this package, which registers the ops they define."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


_import_all()

__all__ = ["REGISTRY", "Op", "lookup", "register"]
