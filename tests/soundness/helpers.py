"""Shared settings of the soundness tests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime

from verifier.soundness.generate import GenerateConfig
from verifier.soundness.training import TrainConfig

TINY = GenerateConfig(architectures=("mlp-2x32", "cnn-2c-pool"), activations=("relu", "tanh"), eps=(0.05,),
                      count=3, planted=2, unplanted=1, seed=7, timeout=30, verify_timeout=10,
                      train=TrainConfig(epochs=60, check_every=20))


def onnx_outputs(session: onnxruntime.InferenceSession, x: np.ndarray) -> np.ndarray:
    """onnxruntime's flattened output at ``x``."""
    meta = session.get_inputs()[0]
    return session.run(None, {meta.name: x.astype(np.float32).reshape(meta.shape)})[0].ravel()


def read_box(vnnlib: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Box and true label read straight from the text (independent of our parser)."""
    text = vnnlib.read_text()
    upper = {int(i): float(v) for i, v in re.findall(r"\(<= X_(\d+) (\S+)\)\)", text)}
    lower = {int(i): float(v) for i, v in re.findall(r"\(>= X_(\d+) (\S+)\)\)", text)}
    label = int(re.findall(r"\(>= Y_\d+ Y_(\d+)\)", text)[0])
    n = len(upper)
    return np.array([lower[i] for i in range(n)]), np.array([upper[i] for i in range(n)]), label
