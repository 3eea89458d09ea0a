"""Normalising rewrites of the IR, each a small rule ``Graph -> Graph | None``.

Rules are applied until none changes the graph. Every rule preserves the function the graph
computes in exact arithmetic; rules that merge several ONNX ops into one record in the new
node's ``fp_stages``/``fp_slack`` attributes how many rounding steps the original computation
had, so the floating-point error bounds of the merged op still cover the original ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from verifier.ir import Graph, Node, freeze_attrs

Rule = Callable[[Graph], Graph | None]
_FLOAT_TYPES = {1, 11}  # onnx TensorProto.FLOAT, DOUBLE


def _rename_uses(graph: Graph, old: str, new: str, drop: Node) -> Graph:
    """Removes ``drop`` and makes every reader of value ``old`` read ``new`` instead."""
    nodes = []
    for node in graph.nodes:
        if node is drop:
            continue
        if old in node.inputs:
            node = replace(node, inputs=tuple(new if n == old else n for n in node.inputs))
        nodes.append(node)
    outputs = tuple(replace(v, name=new) if v.name == old else v for v in graph.outputs)
    return replace(graph, nodes=tuple(nodes), outputs=outputs)


def _boolean(graph: Graph, value: str) -> bool:
    """Whether ``value`` is the output of an op with Boolean outputs (a comparison...)."""
    from verifier.ops.base import REGISTRY

    producer = graph.producers().get(value)
    return producer is not None and producer.op in REGISTRY and REGISTRY[producer.op].boolean_output


def drop_passthrough(graph: Graph) -> Graph | None:
    """Removes Identity, inference-mode Dropout and Cast between float32/float64 (not a Cast
    of a Boolean, which converts it to 0.0/1.0)."""
    for node in graph.nodes:
        passthrough = node.op in ("Identity", "Dropout") or (
            node.op == "Cast" and node.attr("to") in _FLOAT_TYPES and not _boolean(graph, node.inputs[0])
        )
        extra = {out for out in node.outputs[1:] if out}
        used_extra = any(out in n.inputs for n in graph.nodes for out in extra) or any(
            v.name in extra for v in graph.outputs
        )
        if passthrough and not used_extra and node.inputs[0] not in graph.constants:
            return _rename_uses(graph, node.outputs[0], node.inputs[0], node)
    return None


def _single_use(graph: Graph, value: str) -> bool:
    """True when ``value`` is read by exactly one node and is not a graph output."""
    readers = sum(n.inputs.count(value) for n in graph.nodes)
    return readers == 1 and all(v.name != value for v in graph.outputs)


def _replace_node(graph: Graph, old: Node, new: Node, constants: dict[str, np.ndarray]) -> Graph:
    """Swaps ``old`` for ``new`` and adds ``constants``."""
    nodes = tuple(new if n is old else n for n in graph.nodes)
    return replace(graph, nodes=nodes, constants={**graph.constants, **constants})


def matmul_to_linear(graph: Graph) -> Graph | None:
    """MatMul(x, W) with a constant 2-D W becomes Linear(x, W)."""
    for node in graph.nodes:
        if node.op != "MatMul" or node.inputs[0] in graph.constants:
            continue
        weight = graph.constants.get(node.inputs[1])
        if weight is None or weight.ndim != 2 or len(graph.shapes[node.inputs[0]]) < 1:
            continue
        new = Node(node.name, "Linear", (node.inputs[0], node.inputs[1]), node.outputs, freeze_attrs({}))
        return _replace_node(graph, node, new, {})
    return None


def _bias_vector(value: np.ndarray, width: int) -> np.ndarray | None:
    """``value`` as a length-``width`` vector if it broadcasts along the last axis only."""
    if value.size not in (1, width) or (value.ndim and value.shape[-1] not in (1, width)):
        return None
    if value.ndim > 1 and any(d != 1 for d in value.shape[:-1]):
        return None
    return np.broadcast_to(value.reshape(-1), (width,)).copy()


def gemm_to_linear(graph: Graph) -> Graph | None:
    """Gemm(A, B, C) with dynamic A (transA=0), constant B and C becomes Linear."""
    for node in graph.nodes:
        if node.op != "Gemm" or node.attr("transA", 0) or node.inputs[0] in graph.constants:
            continue
        b = graph.constants.get(node.inputs[1])
        if b is None:
            continue
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        weight = (b.T if node.attr("transB", 0) else b).astype(np.float64) * alpha
        inputs = [node.inputs[0], f"{node.name}__weight"]
        consts = {inputs[1]: weight.astype(b.dtype)}
        if len(node.inputs) > 2 and node.inputs[2]:
            c = graph.constants.get(node.inputs[2])
            if c is None:
                continue
            bias = _bias_vector(c, weight.shape[1])
            if bias is None:
                continue
            inputs.append(f"{node.name}__bias")
            consts[inputs[2]] = (bias.astype(np.float64) * beta).astype(c.dtype)
        stages = 1 + int(alpha != 1.0) + int(beta != 1.0)
        new = Node(node.name, "Linear", tuple(inputs), node.outputs, freeze_attrs({"fp_stages": stages}))
        return _replace_node(graph, node, new, consts)
    return None


def linear_add_bias(graph: Graph) -> Graph | None:
    """Linear(x, W) followed by Add/Sub of a constant bias becomes Linear(x, W, b)."""
    producers = graph.producers()
    for node in graph.nodes:
        if node.op not in ("Add", "Sub") or len(node.inputs) != 2:
            continue
        for pos in (0, 1) if node.op == "Add" else (0,):
            lin = producers.get(node.inputs[pos])
            const = graph.constants.get(node.inputs[1 - pos])
            if lin is None or const is None or lin.op != "Linear" or len(lin.inputs) != 2:
                continue
            if not _single_use(graph, lin.outputs[0]):
                continue
            out_shape = graph.shapes[lin.outputs[0]]
            bias = _bias_vector(const, out_shape[-1]) if const.ndim <= len(out_shape) else None
            if bias is None:
                continue
            name = f"{lin.name}__bias"
            new = Node(lin.name, "Linear", (*lin.inputs, name), node.outputs, lin.attrs)
            graph = _replace_node(graph, lin, new, {name: -bias if node.op == "Sub" else bias})
            return replace(graph, nodes=tuple(n for n in graph.nodes if n is not node))
    return None


def fold_batchnorm(graph: Graph) -> Graph | None:
    """BatchNormalization right after a Conv (or a 2-D Linear) is folded into its weights."""
    producers = graph.producers()
    for node in graph.nodes:
        if node.op != "BatchNormalization" or len(node.inputs) < 5:
            continue
        prev = producers.get(node.inputs[0])
        if prev is None or prev.op not in ("Conv", "Linear") or not _single_use(graph, prev.outputs[0]):
            continue
        if prev.op == "Linear" and len(graph.shapes[prev.outputs[0]]) != 2:
            continue
        params = [graph.constants.get(n) for n in node.inputs[1:5]]
        if any(p is None for p in params) or prev.inputs[1] not in graph.constants:
            continue
        return _fold_bn_into(graph, prev, node, [np.asarray(p, np.float64) for p in params])
    return None


def _fold_bn_into(graph: Graph, prev: Node, bn: Node, params: list[np.ndarray]) -> Graph:
    """Builds the folded Conv/Linear for :func:`fold_batchnorm`."""
    gamma_, beta, mean, var = params
    scale = gamma_ / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
    weight = graph.constants[prev.inputs[1]]
    has_bias = len(prev.inputs) > 2 and bool(prev.inputs[2])
    old_bias = np.asarray(graph.constants[prev.inputs[2]], np.float64) if has_bias else np.zeros_like(scale)
    if prev.op == "Conv":
        new_w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
        spatial = len(graph.shapes[prev.outputs[0]]) - 2
    else:
        new_w = weight.astype(np.float64) * scale.reshape(1, -1)
        spatial = 0
    new_b = (old_bias - mean) * scale + beta
    slack = np.abs(scale) * (np.abs(old_bias) + np.abs(mean)) + np.abs(beta)
    names = (f"{prev.name}__bnweight", f"{prev.name}__bnbias")
    attrs = dict(prev.attrs)
    attrs["fp_stages"] = int(attrs.get("fp_stages", 1)) + 4
    attrs["fp_slack"] = slack.reshape(-1, *([1] * spatial))
    new = Node(prev.name, prev.op, (prev.inputs[0], *names), bn.outputs[:1], freeze_attrs(attrs))
    consts = {names[0]: new_w.astype(weight.dtype), names[1]: new_b.astype(weight.dtype)}
    graph = _replace_node(graph, prev, new, consts)
    return replace(graph, nodes=tuple(n for n in graph.nodes if n is not bn))


def pow_to_power(graph: Graph) -> Graph | None:
    """Pow(x, c) with dynamic x and a constant exponent c whose elements are all equal (and
    that does not broadcast x to a larger shape) becomes Power(x) with attribute ``exponent``:
    the same function, computed the same way (one library power per element)."""
    for node in graph.nodes:
        if node.op != "Pow" or node.inputs[0] in graph.constants:
            continue
        power = graph.constants.get(node.inputs[1])
        if power is None or power.size == 0 or graph.shapes.get(node.outputs[0]) != graph.shapes[node.inputs[0]]:
            continue
        flat = power.reshape(-1).astype(np.float64)
        if not (np.all(flat == flat[0]) and np.isfinite(flat[0])):
            continue
        attrs = freeze_attrs({"exponent": float(flat[0])})
        return _replace_node(graph, node, Node(node.name, "Power", (node.inputs[0],), node.outputs, attrs), {})
    return None


RULES: tuple[Rule, ...] = (drop_passthrough, matmul_to_linear, gemm_to_linear, linear_add_bias, fold_batchnorm,
                           pow_to_power)


def simplify_graph(graph: Graph, rules: tuple[Rule, ...] = RULES) -> Graph:
    """Applies ``rules`` until none changes the graph; then drops unused constants."""
    changed = True
    while changed:
        changed = False
        for rule in rules:
            result = rule(graph)
            if result is not None:
                graph, changed = result, True
    used = {n for node in graph.nodes for n in node.inputs}
    constants = {k: v for k, v in graph.constants.items() if k in used}
    return replace(graph, constants=constants)
