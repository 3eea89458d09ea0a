"""A VNN-LIB 2.0 query and its ONNX models -> one composed ONNX model and a :class:`Spec`.

Every declared network gets a renamed copy of its model (an ``equal-to`` network a second copy
of the model it equals) inside one ONNX graph:

* the composed graph's inputs are the declared inputs, network by network, in file order;
* its outputs are, network by network, the declared hidden values and outputs that depend on
  the inputs (each through an ``Identity``), then, only if some constraint needs them as
  outputs, a copy of every declared input ("pass-through");
* a declared value that does not depend on the inputs (``Shape`` of an input, a constant) is
  evaluated once with onnxruntime and its exact value is folded into the constraints.

The query's atoms then become, over the composed model's flattened inputs and outputs, the
literals of :mod:`verifier.spec.normalise`: an atom over one input element is a box bound; any
other atom is a row over the outputs (input elements through their pass-through copies). A
strict bound on an input is relaxed to the box *and* kept exact as a strict row, so proofs
cover the box and a reported counterexample satisfies the strict constraint itself.

Soundness: the composition only renames values and adds ``Identity`` nodes, so the composed
model computes exactly what the separate models compute; every verdict on it is a verdict on
the query. Element types: a declared ONNX type must equal the model's; only float32 and
float64 values that depend on the inputs are analysed (a declared ``Real`` accepts the model's
own type); constant values of any numeric type are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, version_converter

from verifier.errors import MismatchError, ModelError, SpecError
from verifier.graph.onnx_file import input_shape, read_model
from verifier.graph.validate import default_opset
from verifier.query.lowering import lower
from verifier.spec.query import REAL, NetworkDecl, Query, TensorDecl
from verifier.spec.types import Spec

ANALYSED_TYPES = frozenset({"float32", "float64"})
"""Element types of input-dependent values whose analysis is sound (rounding included)."""

_SEPARATOR = "::"


@dataclass(frozen=True)
class Placement:
    """Where a declared variable lives in the composed model.

    Attributes:
        network: the declaring network's name.
        decl: the declaration.
        onnx_type: the ONNX element type (``TensorProto`` enum) of the bound model value.
        input_offset: flat offset in the composed input, for inputs; else None.
        output_offset: flat offset in the composed output, for a value that depends on the
            inputs (and for inputs with a pass-through copy); else None.
        constant: the exact value (flattened) of a value that does not depend on the inputs.
    """

    network: str
    decl: TensorDecl
    onnx_type: int
    input_offset: int | None
    output_offset: int | None
    constant: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Composition:
    """The composed model, its property and the placement of every declared variable.

    Attributes:
        model: the composed ONNX model (run it with onnxruntime to check a counterexample).
        spec: the property over the composed model's flattened inputs and outputs.
        query: the parsed query.
        placements: every declared variable, in report order (network by network: inputs,
            hidden values, outputs).
        truncated: some input had no lower or upper bound, so the spec's boxes are a finite
            part of the query's input space: a counterexample in them is one of the query, but
            a proof over them is not a proof of the query (``unsat`` must become ``unknown``).
    """

    model: onnx.ModelProto
    spec: Spec
    query: Query
    placements: tuple[Placement, ...]
    truncated: bool = False


def compose(query: Query, models: Mapping[str, str | Path | onnx.ModelProto]) -> Composition:
    """Builds the composed model and the property of ``query`` over it.

    Args:
        query: a parsed VNN-LIB 2.0 query.
        models: the model of every declared network that is not ``equal-to`` another one,
            by network name (as given with ``--network NAME=MODEL``).

    Raises:
        MismatchError: a network without a model or a model for no (or an ``equal-to``)
            network; declared and model inputs/outputs that differ in number, size or type.
        ModelError: an unreadable model, a hidden value naming no node output, opsets that
            cannot be reconciled.
        SpecError: a constraint that cannot be decided soundly (an input-dependent value of a
            type other than float32/float64, an input without bounds).
    """
    check_network_arguments(query, models)
    loaded = {name: _network_model(name, source) for name, source in models.items()}
    opset = max(default_opset(m) for m in loaded.values())
    builder = _GraphBuilder(opset)
    for network in query.networks:
        base = network.name if network.equal_to is None else _root(query, network).name
        builder.add_network(network, _at_opset(loaded[base], opset, base))
    needs_passthrough = _needs_passthrough(query, builder.input_decls())
    model, by_name = builder.finish(needs_passthrough, max(m.ir_version for m in loaded.values()))
    placements = tuple(by_name[decl.name] for network in query.networks for decl in network.variables)
    spec, truncated = lower(query, placements)  # (verifier.query.lowering)
    return Composition(model, spec, query, placements, truncated)


def check_network_arguments(query: Query, models: Mapping[str, object]) -> None:
    """Every network not ``equal-to`` another needs a model; no other name may have one."""
    declared = {n.name: n for n in query.networks}
    for name in models:
        if name not in declared:
            raise MismatchError(f"--network {name}=...: the query declares no network {name} "
                                f"(it declares {', '.join(declared)})")
        if declared[name].equal_to is not None:
            raise MismatchError(f"--network {name}=...: network {name} is declared equal-to "
                                f"{declared[name].equal_to}, so it takes no model of its own")
    missing = [n.name for n in query.networks if n.equal_to is None and n.name not in models]
    if missing:
        raise MismatchError(f"no model given for network {', '.join(missing)}: pass --network "
                            f"{missing[0]}=MODEL.onnx")


def _root(query: Query, network: NetworkDecl) -> NetworkDecl:
    """The network whose model an ``equal-to`` chain ends at."""
    by_name = {n.name: n for n in query.networks}
    while network.equal_to is not None:
        network = by_name[network.equal_to]
    return network


def _at_opset(model: onnx.ModelProto, opset: int, name: str) -> onnx.ModelProto:
    if default_opset(model) == opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:
        raise ModelError(f"network {name}: cannot convert its model from opset {default_opset(model)} "
                         f"to opset {opset} used by another network ({exc})") from None


def type_name(onnx_type: int) -> str:
    """The VNN-LIB name of an ONNX element type (``float32`` for ``TensorProto.FLOAT``)."""
    try:
        return str(helper.tensor_dtype_to_np_dtype(onnx_type).name)
    except Exception:
        return helper.tensor_dtype_to_string(onnx_type).removeprefix("TensorProto.").lower()


def _check_type(network: str, decl: TensorDecl, onnx_type: int) -> None:
    if decl.element_type == REAL:
        return
    if decl.element_type != type_name(onnx_type):
        raise MismatchError(f"network {network}: {decl.name} is declared {decl.element_type} but the "
                            f"model's value is {type_name(onnx_type)} (declare Real to accept any type)")


class _GraphBuilder:
    """Collects the renamed networks into one graph."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[tuple[str, TensorDecl, onnx.ValueInfoProto]] = []
        self.values: list[tuple[str, TensorDecl, str, int]] = []  # network, decl, value, type
        self.dynamic: set[str] = set()

    def input_decls(self) -> list[TensorDecl]:
        return [decl for _, decl, _ in self.inputs]

    def add_network(self, network: NetworkDecl, model: onnx.ModelProto) -> None:
        prefix = f"{network.name}{_SEPARATOR}"
        graph = model.graph
        initializer_names = {init.name for init in graph.initializer}
        onnx_inputs = [info for info in graph.input if info.name not in initializer_names]
        inferred = _value_types(model)
        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ModelError(f"network {network.name}: node {node.name or node.op_type} ({node.op_type}) "
                                 "has a subgraph, which is not supported")
        input_infos = _match(network, network.inputs, onnx_inputs, "input")
        output_infos = _match(network, network.outputs, list(graph.output), "output")
        for decl, info in zip(network.inputs, input_infos, strict=True):
            shape = input_shape(info)
            if int(np.prod(shape)) != decl.size:
                raise MismatchError(f"network {network.name}: input {decl.name} is declared {list(decl.shape)} "
                                    f"({decl.size} values) but the model input {info.name!r} has shape "
                                    f"{list(shape)}")
            _check_type(network.name, decl, info.type.tensor_type.elem_type)
            renamed = onnx.ValueInfoProto()
            renamed.CopyFrom(info)
            renamed.name = prefix + info.name
            self.inputs.append((network.name, decl, renamed))
        produced = {out for node in graph.node for out in node.output if out}
        for decl in network.hidden:
            assert decl.onnx_name is not None
            if decl.onnx_name not in produced:
                raise ModelError(f"network {network.name}: hidden value {decl.name} names {decl.onnx_name!r}, "
                                 "which no node of the model produces")
        for decl in network.hidden:
            assert decl.onnx_name is not None
            onnx_type = inferred.get(decl.onnx_name, 0)
            if onnx_type:
                _check_type(network.name, decl, onnx_type)
            self.values.append((network.name, decl, prefix + decl.onnx_name, onnx_type))
        for decl, info in zip(network.outputs, output_infos, strict=True):
            onnx_type = info.type.tensor_type.elem_type or inferred.get(info.name, 0)
            if onnx_type:
                _check_type(network.name, decl, onnx_type)
            self.values.append((network.name, decl, prefix + info.name, onnx_type))
        rename = lambda name: prefix + name if name else name  # noqa: E731
        dynamic = {prefix + info.name for info in onnx_inputs}
        for init in graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            self.initializers.append(copy)
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = rename(node.name or f"{node.op_type}_{len(self.nodes)}")
            copy.input[:] = [rename(n) for n in node.input]
            copy.output[:] = [rename(n) for n in node.output]
            self.nodes.append(copy)
            if node.op_type not in ("Shape", "Size") and any(n in dynamic for n in copy.input):
                dynamic.update(n for n in copy.output if n)
        self.dynamic |= dynamic

    def joined_inputs(self) -> tuple[list[onnx.ValueInfoProto], list[onnx.NodeProto], list[onnx.TensorProto]]:
        """The composed graph's input, nodes and initializers.

        Several declared inputs become one flat input (so that input splitting, attacks and the
        counterexample check see one vector), sliced and reshaped into each network input.
        """
        nodes, initializers = list(self.nodes), list(self.initializers)
        if len(self.inputs) == 1:
            return [self.inputs[0][2]], nodes, initializers
        types = {info.type.tensor_type.elem_type for _, _, info in self.inputs}
        if len(types) != 1:
            listed = ", ".join(f"{d.name} {type_name(i.type.tensor_type.elem_type)}" for _, d, i in self.inputs)
            raise ModelError(f"the declared inputs have different element types ({listed}); "
                             "this verifier needs one input type")
        total = sum(decl.size for _, decl, _ in self.inputs)
        flat = f"{_SEPARATOR}inputs"
        joined = helper.make_tensor_value_info(flat, types.pop(), [total])
        offset = 0
        for _, decl, info in self.inputs:
            tag = f"{_SEPARATOR}slice{_SEPARATOR}{decl.name}"
            consts = {"starts": [offset], "ends": [offset + decl.size], "axes": [0],
                      "shape": list(input_shape(info))}
            for key, value in consts.items():
                initializers.append(numpy_helper.from_array(np.array(value, dtype=np.int64), f"{tag}{_SEPARATOR}{key}"))
            sliced = f"{tag}{_SEPARATOR}flat"
            nodes.insert(0, helper.make_node("Reshape", [sliced, f"{tag}{_SEPARATOR}shape"], [info.name],
                                             name=f"{tag}{_SEPARATOR}reshape"))
            nodes.insert(0, helper.make_node("Slice",
                                             [flat] + [f"{tag}{_SEPARATOR}{k}" for k in ("starts", "ends", "axes")],
                                             [sliced], name=tag))
            offset += decl.size
        return [joined], nodes, initializers

    def finish(self, passthrough: bool, ir_version: int) -> tuple[onnx.ModelProto, dict[str, Placement]]:
        """The composed model and the placements (constants still unevaluated: filled here)."""
        graph_inputs, nodes, initializers = self.joined_inputs()
        outputs: list[onnx.ValueInfoProto] = []
        input_offsets: dict[str, int] = {}
        offset = 0
        for _, decl, _ in self.inputs:
            input_offsets[decl.name] = offset
            offset += decl.size
        output_offsets: dict[str, int] = {}
        constants: list[tuple[TensorDecl, str]] = []
        out_offset = 0
        for _, decl, value, onnx_type in self.values:
            if value not in self.dynamic:
                constants.append((decl, value))
                continue
            if decl.element_type not in ANALYSED_TYPES and type_name(onnx_type) not in ANALYSED_TYPES:
                raise SpecError(f"{decl.name} depends on the network input and has element type "
                                f"{type_name(onnx_type) if onnx_type else decl.element_type}; this verifier "
                                f"analyses {' and '.join(sorted(ANALYSED_TYPES))} values only")
            name = f"{_SEPARATOR}out{_SEPARATOR}{decl.name}"
            nodes.append(helper.make_node("Identity", [value], [name], name=name))
            outputs.append(helper.make_tensor_value_info(name, onnx_type or onnx.TensorProto.FLOAT, None))
            output_offsets[decl.name] = out_offset
            out_offset += decl.size
        if passthrough or not outputs:
            for _, decl, info in self.inputs:
                name = f"{_SEPARATOR}copy{_SEPARATOR}{decl.name}"
                nodes.append(helper.make_node("Identity", [info.name], [name], name=name))
                outputs.append(helper.make_tensor_value_info(name, info.type.tensor_type.elem_type, None))
                output_offsets[decl.name] = out_offset
                out_offset += decl.size
        graph = helper.make_graph(nodes, "composed", graph_inputs, outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="verifier-compose")
        model.ir_version = ir_version
        values = _evaluate_constants(model, graph_inputs, [v for _, v in constants])
        constant_of = {decl.name: value for (decl, _), value in zip(constants, values, strict=True)}
        types = {decl.name: t for _, decl, _, t in self.values}
        placements: dict[str, Placement] = {}
        for network, decl, info in self.inputs:
            placements[decl.name] = Placement(network, decl, info.type.tensor_type.elem_type,
                                              input_offsets[decl.name], output_offsets.get(decl.name))
        for network, decl, _, _ in self.values:
            const = constant_of.get(decl.name)
            const_type = types[decl.name] or (_np_to_onnx(const) if const is not None else onnx.TensorProto.FLOAT)
            placements[decl.name] = Placement(network, decl, const_type, None, output_offsets.get(decl.name), const)
        return model, placements


def _np_to_onnx(value: np.ndarray) -> int:
    return int(helper.np_dtype_to_tensor_dtype(value.dtype))


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element types of the model's values, from ONNX shape inference where it succeeds."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    infos = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    return {info.name: info.type.tensor_type.elem_type for info in infos if info.type.tensor_type.elem_type}


def _match(network: NetworkDecl, decls: tuple[TensorDecl, ...], infos: list[onnx.ValueInfoProto],
           role: str) -> list[onnx.ValueInfoProto]:
    """The model values bound to the declarations: by ONNX name if given, else by order."""
    if len(decls) != len(infos):
        names = ", ".join(repr(i.name) for i in infos)
        raise MismatchError(f"network {network.name} declares {len(decls)} {role}(s) but its model has "
                            f"{len(infos)} ({names})")
    if decls and decls[0].onnx_name is not None:
        by_name = {info.name: info for info in infos}
        matched = []
        for decl in decls:
            if decl.onnx_name not in by_name:
                raise MismatchError(f"network {network.name}: {role} {decl.name} names {decl.onnx_name!r}, "
                                    f"but the model's {role}s are {', '.join(repr(n) for n in by_name)}")
            matched.append(by_name[decl.onnx_name])
        return matched
    return list(infos)


def _evaluate_constants(model: onnx.ModelProto, inputs: list[onnx.ValueInfoProto],
                        names: list[str]) -> list[np.ndarray]:
    """Values that do not depend on the inputs, computed by onnxruntime (with zero inputs)."""
    if not names:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for info in inputs:
            dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
            feeds[info.name] = np.zeros(input_shape(info), dtype=dtype)
        values = session.run(list(dict.fromkeys(names)), feeds)
    except Exception as exc:
        raise ModelError(f"cannot evaluate the constant values {', '.join(names)} with onnxruntime: {exc}") from None
    by_name = dict(zip(dict.fromkeys(names), values, strict=True))
    return [np.asarray(by_name[n]).reshape(-1) for n in names]


def _network_model(name: str, source: str | Path) -> onnx.ModelProto:
    """The checked model of network ``name`` (:func:`~verifier.graph.onnx_file.read_model`);
    a ModelError names the network too."""
    try:
        return read_model(source)[0]
    except ModelError as exc:
        raise ModelError(f"network {name}: {exc}") from None


def _needs_passthrough(query: Query, inputs: list[TensorDecl]) -> bool:
    """Whether some atom over input elements is not a plain box bound."""
    input_names = {d.name for d in inputs}
    for dnf in query.asserts:
        for conjunction in dnf:
            for atom in conjunction:
                uses_input = any(name in input_names for (name, _), _ in atom.coeffs)
                if uses_input and (len(atom.coeffs) > 1 or atom.op == "<"):
                    return True
    return False
