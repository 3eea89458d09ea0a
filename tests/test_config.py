"""The default configuration per device (verifier.config.default_config)."""

from __future__ import annotations

from dataclasses import fields
from enum import StrEnum
from typing import get_type_hints

import pytest

from verifier.config import (
    GPU_BATCH,
    CrownConfig,
    DeviceConfig,
    InputSplitConfig,
    MilpConfig,
    ReluSplitConfig,
    VerifierConfig,
    default_config,
)


def test_default_config_batches_more_domains_on_a_gpu() -> None:
    """A GPU bounds a thousand domains per round; the CPU keeps the search configs' defaults
    (the choice only builds configuration: no GPU is needed to check it)."""
    cpu, gpu = default_config("cpu", 3), default_config("cuda:1", 3)
    assert cpu.relu_split == ReluSplitConfig() and cpu.input_split == InputSplitConfig()
    assert gpu.relu_split.batch == gpu.input_split.batch == GPU_BATCH > cpu.relu_split.batch
    assert gpu.relu_split.batch_memory > cpu.relu_split.batch_memory
    assert gpu.device.device == "cuda:1" and gpu.seed == 3


def _mode_fields() -> list[tuple[type, str, type[StrEnum]]]:
    """Every field of every configuration dataclass whose type is an enum of modes."""
    found = []
    for cls in (VerifierConfig, DeviceConfig, CrownConfig, MilpConfig, InputSplitConfig, ReluSplitConfig):
        hints = get_type_hints(cls)
        found += [(cls, f.name, hints[f.name]) for f in fields(cls)
                  if isinstance(hints[f.name], type) and issubclass(hints[f.name], StrEnum)]
    return found


@pytest.mark.parametrize(("cls", "name", "mode"), _mode_fields(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_mode_fields_take_their_strings_and_refuse_others(cls: type, name: str, mode: type[StrEnum]) -> None:
    """A command line's string becomes the enum member (algorithms compare members with ``is``);
    an unknown one is refused with the choices named."""
    for member in mode:
        config = cls(**{name: member.value})
        assert getattr(config, name) is member
    with pytest.raises(ValueError, match="use one of"):
        cls(**{name: "no-such-mode"})
