"""Fixtures of the benchmark runner's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fake_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log
