"""Writes the generator's ``torch.nn.Sequential`` networks as ONNX files, node by node.

Only the modules :func:`verifier.soundness.architectures.build_network` uses are known:
Linear (Gemm), Conv2d (Conv), AvgPool2d (AveragePool), Flatten, ReLU, Sigmoid, Tanh. The
model takes ``X`` of shape ``(1, *input_shape)`` and gives ``Y`` of shape ``(1, classes)``,
float32, opset 13. The weights are stored exactly as the module holds them, so onnxruntime
and torch compute the same function (up to float32 evaluation order).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 13
_ACTIVATIONS = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}


def _bias(module: nn.Linear | nn.Conv2d) -> np.ndarray:
    if module.bias is None:
        return np.zeros(module.weight.shape[0], dtype=np.float32)
    return module.bias.detach().numpy()


def network_to_onnx(network: nn.Sequential, input_shape: tuple[int, ...], name: str) -> onnx.ModelProto:
    """The ONNX model of ``network`` (see the module docstring), checked by ``onnx.checker``.

    Raises:
        ValueError: a module type the exporter does not know.
    """
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    current = "X"
    for index, module in enumerate(network):
        out = f"h{index}"

        def const(label: str, value: np.ndarray, index: int = index) -> str:
            tensor_name = f"{label}{index}"
            weights.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), tensor_name))
            return tensor_name

        if isinstance(module, nn.Linear):
            w, b = module.weight.detach().numpy(), _bias(module)
            nodes.append(helper.make_node("Gemm", [current, const("W", w), const("B", b)], [out],
                                          name=f"dense{index}", transB=1))
        elif isinstance(module, nn.Conv2d):
            w, b = module.weight.detach().numpy(), _bias(module)
            nodes.append(helper.make_node("Conv", [current, const("K", w), const("C", b)], [out], name=f"conv{index}",
                                          kernel_shape=list(module.kernel_size), strides=list(module.stride)))
        elif isinstance(module, nn.AvgPool2d):
            size = int(module.kernel_size) if isinstance(module.kernel_size, int) else int(module.kernel_size[0])
            nodes.append(helper.make_node("AveragePool", [current], [out], name=f"pool{index}",
                                          kernel_shape=[size, size], strides=[size, size]))
        elif isinstance(module, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [current], [out], name=f"flatten{index}", axis=1))
        elif type(module) in _ACTIVATIONS:
            op = _ACTIVATIONS[type(module)]
            nodes.append(helper.make_node(op, [current], [out], name=f"{op.lower()}{index}"))
        else:
            raise ValueError(f"module {index} ({type(module).__name__}) cannot be exported")
        current = out
    nodes[-1].output[0] = "Y"
    last = [m for m in network if isinstance(m, nn.Linear)][-1]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, *input_shape])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, last.out_features])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="verifier.soundness")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
