"""How far certified lower bounds stay below the sampled minimum, per relaxed op, with the op's
relaxation and with the op cut at its interval bounds (what the verifier did before the op had one).

Usage:
    python benchmarks/relaxation_gap.py [--networks 5] [--radius 0.1 0.5] [--alpha-iterations 30]
                                        [--only WORD ...]

Per op: random networks ``x (4) -> Gemm (12) -> OP -> Gemm (12) -> OP -> Gemm (3)`` (OP as
below, Softmax and LogSoftmax over the 12 values; every weight seeded), a box of the given
radius around a random centre, 4 random objective rows. The gap is ``sampled minimum -
certified bound`` (3,000 onnxruntime samples), averaged over rows and networks; smaller is
tighter, and a negative gap would be a soundness bug (the script stops). Methods: ``cut``
(CROWN with the op cut at its intervals), ``crown``, ``alpha`` (alpha-CROWN with the op's free
slopes or plane weights, where it has them) and, for ops whose planes have optimisable weights
(Mul, Div, MaxPool, Softmax, LogSoftmax), ``alpha, fixed planes`` (those weights fixed: the
other ops' slopes only).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops import REGISTRY, Op
from verifier.witness import OnnxOracle, grid_box, snap_into_box

Block = Callable[[str, str], list[onnx.NodeProto]]


def _pow(exponent: str, positive: bool = False) -> Block:
    def block(src: str, out: str) -> list[onnx.NodeProto]:
        first = [helper.make_node("Softplus", [src], [f"{out}_s"])] if positive else []
        base = f"{out}_s" if positive else src
        return [*first, helper.make_node("Pow", [base, exponent], [out])]
    return block


def _div(src: str, out: str) -> list[onnx.NodeProto]:
    """``x / (softplus(x) + 0.5)``: a quotient by a variable kept above 0.5."""
    return [helper.make_node("Softplus", [src], [f"{out}_s"]),
            helper.make_node("Add", [f"{out}_s", "half"], [f"{out}_d"]),
            helper.make_node("Div", [src, f"{out}_d"], [out])]


def _product(src: str, out: str) -> list[onnx.NodeProto]:
    """``x * tanh(x)``: a product of two dynamic values (McCormick planes)."""
    return [helper.make_node("Tanh", [src], [f"{out}_t"]), helper.make_node("Mul", [src, f"{out}_t"], [out])]


def _max_pool(src: str, out: str) -> list[onnx.NodeProto]:
    """MaxPool over windows of 3 neighbours (stride 1, padding 1) of the 12 values."""
    shapes = [helper.make_node("Constant", [], [f"{out}_{k}"], value=helper.make_tensor(f"{out}_{k}", TensorProto.INT64,
                                                                                        [len(v)], v))
              for k, v in (("in", [1, 1, 12]), ("back", [1, 12]))]
    return [*shapes, helper.make_node("Reshape", [src, f"{out}_in"], [f"{out}_r"]),
            helper.make_node("MaxPool", [f"{out}_r"], [f"{out}_p"], kernel_shape=[3], pads=[1, 1]),
            helper.make_node("Reshape", [f"{out}_p", f"{out}_back"], [out])]


def _along_rows(op: str) -> Block:
    def block(src: str, out: str) -> list[onnx.NodeProto]:
        return [helper.make_node(op, [src], [out], axis=1)]
    return block


CASES: dict[str, tuple[str, Block]] = {
    "Pow x^2 (Power)": ("Power", _pow("two")),
    "Pow x^3 (Power)": ("Power", _pow("three")),
    "Pow softplus^0.5 (Power)": ("Power", _pow("root", positive=True)),
    "Div x / (softplus + 0.5)": ("Div", _div),
    "Mul x * tanh(x)": ("Mul", _product),
    "MaxPool 3-windows": ("MaxPool", _max_pool),
    "Softmax": ("Softmax", _along_rows("Softmax")),
    "LogSoftmax": ("LogSoftmax", _along_rows("LogSoftmax")),
}


def _network(path: Path, block: Block, seed: int) -> None:
    rng = np.random.default_rng(seed)
    consts = {"half": 0.5, "two": 2.0, "three": 3.0, "root": 0.5}
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    nodes, value, sizes = [], "x", [4, 12, 12, 3]
    for k in range(3):
        w = rng.normal(size=(sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array((rng.normal(size=sizes[k + 1]) * 0.3).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        value = f"z{k}"
        if k < 2:
            nodes += block(value, f"a{k}")
            value = f"a{k}"
    graph = helper.make_graph(nodes, "gap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _cut(op_type: str) -> Op:
    """The op with no relaxation: CROWN cuts it at its interval bounds."""
    cls = type(REGISTRY[op_type])
    return type(f"Cut{cls.__name__}", (cls,), {"relaxation": None, "multi_relaxation": None})()


def _fixed_planes(op_type: str) -> Op:
    """The op with its multi-input rule's optimisable weights removed (alpha keeps its planes)."""
    cls, rule = type(REGISTRY[op_type]), REGISTRY[op_type].multi_relaxation
    return type(f"Fixed{cls.__name__}", (cls,), {"multi_relaxation": dataclasses.replace(rule, weights=None)})()


def gaps(path: Path, op_type: str, radius: float, seed: int, iterations: int) -> dict[str, float]:
    """Method -> mean gap to the sampled minimum on one network and box."""
    rng = np.random.default_rng(seed)
    graph = load_model(path)
    assert op_type in {n.op for n in graph.nodes}, (op_type, graph.op_types())
    centre = rng.normal(size=4)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, 1, 4) for b in box)
    c = torch.from_numpy(rng.normal(size=(4, 3))).double()
    oracle = OnnxOracle(path)
    points = box[0] + rng.random((3000, 4)) * (box[1] - box[0])
    outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                      for p in points]))
    sampled = (outs @ c.T).amin(0)
    bounds = {}
    with torch.no_grad():
        cut = TorchGraph(graph, "cpu", torch.float64, {op_type: _cut(op_type)})
        bounds["cut"] = Crown(cut, [lower], [upper]).lower_bound(c)[0]
        own = TorchGraph(graph, "cpu", torch.float64)
        bounds["crown"] = Crown(own, [lower], [upper]).lower_bound(c)[0]
    bounds["alpha"] = alpha_lower_bound(Crown(own, [lower], [upper]), c, AlphaConfig(iterations=iterations))[0]
    rule = REGISTRY[op_type].multi_relaxation
    if rule is not None and rule.weights is not None:
        fixed = TorchGraph(graph, "cpu", torch.float64, {op_type: _fixed_planes(op_type)})
        bounds["alpha, fixed planes"] = alpha_lower_bound(Crown(fixed, [lower], [upper]), c,
                                                          AlphaConfig(iterations=iterations))[0]
    out = {}
    for method, bound in bounds.items():
        gap = sampled - bound.detach()
        if bool((gap < -1e-6).any()):
            raise SystemExit(f"UNSOUND: {path.name} {method} bound {bound.tolist()} above sampled {sampled.tolist()}")
        out[method] = float(gap.mean())
    return out


def main() -> None:
    """Prints the table (markdown) of mean gaps per op, radius and method."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", type=int, default=5)
    parser.add_argument("--radius", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--alpha-iterations", type=int, default=30)
    parser.add_argument("--only", nargs="*", default=[], help="rows whose name contains one of these words")
    args = parser.parse_args()
    methods = ("cut", "crown", "alpha, fixed planes", "alpha")
    print("| network | radius | cut (intervals) | CROWN | alpha-CROWN, fixed planes | alpha-CROWN |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (op_type, block) in CASES.items():
            if args.only and not any(word in name for word in args.only):
                continue
            for radius in args.radius:
                rows: dict[str, list[float]] = {m: [] for m in methods}
                for seed in range(args.networks):
                    path = Path(tmp) / f"net{seed}.onnx"
                    _network(path, block, seed)
                    for method, gap in gaps(path, op_type, radius, seed, args.alpha_iterations).items():
                        rows[method].append(gap)
                cells = " | ".join(f"{statistics.mean(rows[m]):.3f}" if rows[m] else "-" for m in methods)
                print(f"| {name} | {radius} | {cells} |", flush=True)

if __name__ == "__main__":
    main()
