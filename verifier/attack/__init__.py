"""Falsification: random sampling and PGD, with every hit re-checked by onnxruntime."""

from verifier.attack.pgd import FalsifyStats, falsify_region

__all__ = ["FalsifyStats", "falsify_region"]
