"""Loading and matching a model with a property: the inputs every method works from.

Loading checks the cheap things first: the property is parsed and the ONNX file decoded and
checked (:mod:`verifier.graph.onnx_file`) before torch and the op registry are imported to
build the graph, so that bad input is reported at once, whatever the time limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from verifier.errors import MismatchError
from verifier.graph.onnx_file import read_model
from verifier.ir import Graph
from verifier.spec import Region, Spec, parse_vnnlib
from verifier.spec.query import Query
from verifier.spec.vnnlib import read_vnnlib_text
from verifier.spec.vnnlib2 import parse_query_text, vnnlib_version

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from verifier.query.compose import Composition


@dataclass(frozen=True, eq=False)
class Problem:
    """A loaded model and a parsed property whose sizes agree.

    Attributes:
        model_path: the ONNX file (for a composed VNN-LIB 2.0 problem: the query file).
        graph: the model's IR.
        spec: the property over the model's flattened inputs and outputs.
        onnx_model: the model to re-check counterexamples on when it is not ``model_path``
            (the composed model of a VNN-LIB 2.0 query), else None.
        composition: the VNN-LIB 2.0 composition the problem was built from, else None.
    """

    model_path: Path
    graph: Graph
    spec: Spec
    onnx_model: onnx.ModelProto | None = None
    composition: Composition | None = None

    @property
    def oracle_model(self) -> Path | onnx.ModelProto:
        """What onnxruntime runs to re-check a counterexample."""
        return self.onnx_model if self.onnx_model is not None else self.model_path

    def unchecked_op(self) -> str | None:
        """The first node of the model whose op ``verify-check`` does not read (not
        :attr:`~verifier.ops.base.Op.proof_checked`), described; None when it reads every op
        (its certificates can then be checked, within the checker's other restrictions)."""
        from verifier.ops import REGISTRY

        model = self.oracle_model
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        for node in proto.graph.node:
            op = REGISTRY.get(node.op_type)
            if node.op_type != "Constant" and (op is None or not op.proof_checked):
                return f"op {node.op_type} (node {node.name!r}) is not among the ops verify-check reads"
        return None


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
    """Loads the ONNX model and the VNN-LIB file (1.0, or 2.0 with one network to give a model
    to) and checks that they fit together.

    Raises:
        ModelError, SpecError, MismatchError: bad or mismatched input, with a clear message.
    """
    text = read_vnnlib_text(Path(spec))
    if vnnlib_version(text) is not None:
        query = parse_query_text(text, str(spec))
        needing = [n.name for n in query.networks if n.equal_to is None]
        if len(needing) != 1:
            raise MismatchError(f"{spec}: the query declares the networks {', '.join(needing)}; give each its "
                                "model with: verifier verify QUERY --network NAME=MODEL.onnx ...")
        return load_query_problem(query, {needing[0]: model})
    parsed = parse_vnnlib(spec)
    checked, label = read_model(model)
    from verifier.graph.loader import build_graph

    graph = build_graph(checked, label)
    check_sizes(graph, parsed)
    return Problem(Path(model), graph, parsed)


def load_query_problem(query: Query, models: Mapping[str, str | Path]) -> Problem:
    """The problem of a VNN-LIB 2.0 query: its networks composed into one model (see
    :mod:`verifier.query.compose`).

    Raises:
        ModelError, SpecError, MismatchError: bad or mismatched input, with a clear message.
    """
    from verifier.graph.loader import load_model
    from verifier.query.compose import compose

    composition = compose(query, models)
    graph = load_model(composition.model)
    check_sizes(graph, composition.spec)
    return Problem(Path(query.source), graph, composition.spec, composition.model, composition)


def proof_box(graph: Graph, region: Region, device: torch.device) -> tuple[Tensor, Tensor]:
    """The region's box as ``(1, n)`` float64 tensors, widened outward to the model's input type.

    Proofs cover this box, so they cover every input the model can receive for a point of the
    region (including the rounding of a bound that the input type cannot represent).
    """
    import torch

    from verifier.witness import grid_box

    lower, upper = grid_box(region.lower, region.upper, graph.inputs[0].dtype)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device).unsqueeze(0)  # noqa: E731
    return as_tensor(lower), as_tensor(upper)
