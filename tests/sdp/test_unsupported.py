"""Networks the SDP bound cannot express are refused with the node and op named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from verifier.cli import EXIT_BAD_INPUT, main
from verifier.soundness.onnx_export import network_to_onnx
from verifier.soundness.vnnlib_writer import robustness_property


def test_a_sigmoid_network_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    network = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
    onnx.save(network_to_onnx(network, (3,), "sig"), tmp_path / "sig.onnx")
    x0 = np.full(3, 0.5, dtype=np.float32)
    with torch.no_grad():
        label = int(network(torch.tensor(x0)[None]).argmax())
    (tmp_path / "sig.vnnlib").write_text(robustness_property(x0 - 0.1, x0 + 0.1, label, 2, "sig"))
    code = main(["bounds", str(tmp_path / "sig.onnx"), str(tmp_path / "sig.vnnlib"), "--method", "sdp"])
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert "Sigmoid" in captured.out + captured.err
