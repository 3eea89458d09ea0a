"""A sound and complete neural-network verifier for ONNX models and VNN-LIB properties.

Use ``from verifier import verify``; see :func:`verifier.api.verify`.
"""

from verifier.api import verify
from verifier.config import AttackConfig, DeviceConfig, VerifierConfig
from verifier.result import Counterexample, Result, Status

__all__ = ["AttackConfig", "Counterexample", "DeviceConfig", "Result", "Status", "VerifierConfig", "verify"]
