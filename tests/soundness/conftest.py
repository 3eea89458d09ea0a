"""A tiny generated soundness benchmark shared by the tests of this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soundness.helpers import TINY
from verifier.soundness.generate import generate


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small MLPs (ReLU, Tanh) and a CNN with pooling (ReLU), with two planted boxes and one
    unplanted candidate each."""
    out = tmp_path_factory.mktemp("tiny") / "bench"
    generate(out, TINY)
    return out
