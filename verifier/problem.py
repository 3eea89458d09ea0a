"""Loading and matching a model with a property: the inputs every method works from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from verifier.errors import MismatchError
from verifier.graph import Graph, load_model
from verifier.spec import Region, Spec, parse_vnnlib
from verifier.witness import grid_box


@dataclass(frozen=True, eq=False)
class Problem:
    """A loaded model and a parsed property whose sizes agree."""

    model_path: Path
    graph: Graph
    spec: Spec


def check_sizes(graph: Graph, spec: Spec) -> None:
    """Raises MismatchError when the spec's X/Y counts differ from the model's sizes."""
    if spec.num_inputs != graph.input_size:
        shapes = ", ".join(f"{v.name}{list(v.shape)}" for v in graph.inputs)
        raise MismatchError(
            f"the property declares {spec.num_inputs} inputs X_i but the model takes "
            f"{graph.input_size} values ({shapes})"
        )
    if spec.num_outputs != graph.output_size:
        shapes = ", ".join(f"{v.name}{list(v.shape)}" for v in graph.outputs)
        raise MismatchError(
            f"the property declares {spec.num_outputs} outputs Y_j but the model produces "
            f"{graph.output_size} values ({shapes})"
        )


def load_problem(model: str | Path, spec: str | Path) -> Problem:
    """Loads the ONNX model and the VNN-LIB file and checks that they fit together.

    Raises:
        ModelError, SpecError, MismatchError: bad or mismatched input, with a clear message.
    """
    graph = load_model(model)
    parsed = parse_vnnlib(spec)
    check_sizes(graph, parsed)
    return Problem(Path(model), graph, parsed)


def proof_box(graph: Graph, region: Region, device: torch.device) -> tuple[Tensor, Tensor]:
    """The region's box as ``(1, n)`` float64 tensors, widened outward to the model's input type.

    Proofs cover this box, so they cover every input the model can receive for a point of the
    region (including the rounding of a bound that the input type cannot represent).
    """
    lower, upper = grid_box(region.lower, region.upper, graph.inputs[0].dtype)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device).unsqueeze(0)  # noqa: E731
    return as_tensor(lower), as_tensor(upper)
