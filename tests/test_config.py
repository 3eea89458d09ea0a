"""The default configuration per device (verifier.config.default_config)."""

from __future__ import annotations

from verifier.config import GPU_BATCH, InputSplitConfig, ReluSplitConfig, default_config


def test_default_config_batches_more_domains_on_a_gpu() -> None:
    """A GPU bounds a thousand domains per round; the CPU keeps the search configs' defaults
    (the choice only builds configuration: no GPU is needed to check it)."""
    cpu, gpu = default_config("cpu", 3), default_config("cuda:1", 3)
    assert cpu.relu_split == ReluSplitConfig() and cpu.input_split == InputSplitConfig()
    assert gpu.relu_split.batch == gpu.input_split.batch == GPU_BATCH > cpu.relu_split.batch
    assert gpu.relu_split.batch_memory > cpu.relu_split.batch_memory
    assert gpu.device.device == "cuda:1" and gpu.seed == 3
