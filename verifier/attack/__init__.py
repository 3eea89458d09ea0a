"""Falsification: random sampling and PGD, with every hit re-checked by onnxruntime."""

from verifier.attack.pgd import AttackProgress, FalsifyStats, falsify_region

__all__ = ["AttackProgress", "FalsifyStats", "falsify_region"]
