"""Graph IR: ONNX loading, simplification and concrete evaluation in torch.

``load_model`` and ``TorchGraph`` are imported lazily: op modules import
:mod:`verifier.graph.ir`, and the loader imports the op registry, so an eager import here
would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verifier.graph.ir import Graph, Node, ValueInfo

if TYPE_CHECKING:
    from verifier.graph.loader import load_model
    from verifier.graph.torch_graph import TorchGraph

__all__ = ["Graph", "Node", "TorchGraph", "ValueInfo", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from verifier.graph.loader import load_model

        return load_model
    if name == "TorchGraph":
        from verifier.graph.torch_graph import TorchGraph

        return TorchGraph
    raise AttributeError(f"module 'verifier.graph' has no attribute {name!r}")
