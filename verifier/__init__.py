"""A sound and complete neural-network verifier for ONNX models and VNN-LIB properties.

Use ``from verifier import verify``; see :func:`verifier.api.verify`. The names below are
imported on first use, so that importing a light submodule (the command line's argument
checks, the VNN-LIB parser) does not import torch.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing costs a warm-worker client ~20 ms
if TYPE_CHECKING:
    from typing import Any

    from verifier.api import verify
    from verifier.config import AttackConfig, DeviceConfig, VerifierConfig
    from verifier.result import Counterexample, Result, Status

_HOME = {"verify": "verifier.api", "AttackConfig": "verifier.config", "DeviceConfig": "verifier.config",
         "VerifierConfig": "verifier.config", "Counterexample": "verifier.result", "Result": "verifier.result",
         "Status": "verifier.result"}

__all__ = ["AttackConfig", "Counterexample", "DeviceConfig", "Result", "Status", "VerifierConfig", "verify"]


def __getattr__(name: str) -> Any:
    """The public names, imported from their modules on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
