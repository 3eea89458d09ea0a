"""Every op that declares a max form (:meth:`verifier.ops.base.Op.max_form`) is checked twice,
parametrised over the registry so that a new one is covered or the suite fails:

1. its form, evaluated in numpy, equals the op's forward (which the op tests compare with
   onnxruntime) on random inputs (elementwise and broadcast forms; the encoder itself checks
   a window form against the forward);
2. a small network around the op goes through HiGHS, CBC and z3, which must agree, with every
   ``sat`` re-run in onnxruntime and every ``unsat`` surviving dense sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.exact.test_milp import Net, check_agreement, random_instance
from verifier.ir import Node
from verifier.ops import REGISTRY
from verifier.ops.base import Op
from verifier.ops.max_form import MaxForm, MaxShape

Models = tuple[onnx.ModelProto, onnx.ModelProto]


def _vector(op: str, *extra: np.ndarray, **attrs: object) -> Callable[[int], Models]:
    """Gemm -> op -> Gemm on 3 inputs (``extra``: the op's constant inputs)."""
    def build(seed: int) -> Models:
        b = Net(seed, [1, 3])
        hidden = b.dense("x", 3, 4)
        inputs = [hidden, *(b.const(value) for value in extra)]
        if op == "PRelu":
            inputs.append(b.const(np.array([-0.5, 0.2, 1.0, 1.7])))
        if op in ("Max", "Min"):
            inputs += [b.dense("x", 3, 4), b.const(np.array([0.1, -0.2, 0.0, 0.3]))]
        out = b.node(op, inputs, **attrs)
        width = 1 if op.startswith("Reduce") else 4
        return b.models(b.dense(out, width, 2), 2)
    return build


def _image(op: str, **attrs: object) -> Callable[[int], Models]:
    """Conv -> op -> Flatten -> Gemm on a 1x4x4 image."""
    def build(seed: int) -> Models:
        b = Net(seed, [1, 1, 4, 4])
        pooled = b.node("Flatten", [b.node(op, [b.conv("x", 1, 1)], **attrs)])
        width = 1 if op.startswith("Global") else 4
        return b.models(b.dense(pooled, width, 2), 2)
    return build


CASES: dict[str, list[Callable[[int], Models]]] = {
    "Relu": [_vector("Relu")],
    "Abs": [_vector("Abs")],
    "LeakyRelu": [_vector("LeakyRelu", alpha=0.1), _vector("LeakyRelu", alpha=1.7)],
    "PRelu": [_vector("PRelu")],
    "Clip": [_vector("Clip", np.array(-0.4), np.array(0.6)), _vector("Clip", np.array(0.5), np.array(-0.5))],
    "Max": [_vector("Max")],
    "Min": [_vector("Min")],
    "ReduceMax": [_vector("ReduceMax", axes=[1], keepdims=1)],
    "ReduceMin": [_vector("ReduceMin", axes=[1], keepdims=1)],
    "MaxPool": [_image("MaxPool", kernel_shape=[2, 2], strides=[2, 2])],
    "GlobalMaxPool": [_image("GlobalMaxPool")],
}
"""Network builders per op type with a max form (opset 13: Clip's bounds are inputs)."""

WITH_FORM = sorted(name for name, op in REGISTRY.items() if type(op).max_form is not Op.max_form)


def test_every_op_with_a_max_form_has_a_case() -> None:
    assert sorted(CASES) == WITH_FORM


def _evaluate(form: MaxForm, inputs: list[np.ndarray]) -> np.ndarray:
    """The form in numpy (elementwise and broadcast shapes)."""
    if form.shape is MaxShape.BROADCAST:
        return form.sign * np.max(np.broadcast_arrays(*(form.sign * x for x in inputs)), axis=0)
    x = inputs[0]
    for stage in form.stages:
        pieces = [a * x + k for a, k in zip(stage.slopes, stage.offsets, strict=True)]
        x = stage.sign * np.max(np.broadcast_arrays(*pieces), axis=0)
    return x


FORM_NODES: list[tuple[str, Node, list[np.ndarray | None]]] = [
    ("Relu", Node("n", "Relu", ("x",), ("y",), {}), [None]),
    ("Abs", Node("n", "Abs", ("x",), ("y",), {}), [None]),
    ("LeakyRelu", Node("n", "LeakyRelu", ("x",), ("y",), {"alpha": 0.1}), [None]),
    ("LeakyRelu", Node("n", "LeakyRelu", ("x",), ("y",), {"alpha": 1.7}), [None]),
    ("PRelu", Node("n", "PRelu", ("x", "s"), ("y",), {}), [None, np.array([-0.5, 0.2, 1.0, 1.7])]),
    ("Clip", Node("n", "Clip", ("x",), ("y",), {"min": -0.4, "max": 0.6}), [None]),
    ("Clip", Node("n", "Clip", ("x",), ("y",), {"min": 0.5, "max": -0.5}), [None]),
    ("Clip", Node("n", "Clip", ("x",), ("y",), {"max": 0.6}), [None]),
    ("Max", Node("n", "Max", ("x", "z", "c"), ("y",), {}), [None, None, np.array([0.1, -0.2, 0.0, 0.3])]),
    ("Min", Node("n", "Min", ("x", "z", "c"), ("y",), {}), [None, None, np.array([0.1, -0.2, 0.0, 0.3])]),
]


@pytest.mark.parametrize(("op_type", "node", "constants"), FORM_NODES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FORM_NODES)])
def test_form_equals_forward(op_type: str, node: Node, constants: list[np.ndarray | None]) -> None:
    op = REGISTRY[op_type]
    form = op.max_form(node, constants)
    assert form is not None and form.shape is not MaxShape.WINDOW
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(50, 4)) * 2 if c is None else c for c in constants]
    batched = [c is None for c in constants]
    args = [torch.tensor(x) for x in inputs]
    expected = op.forward(node, args, batched)[0].numpy()
    assert np.array_equal(_evaluate(form, inputs), expected)


def test_form_cases_cover_the_non_window_ops() -> None:
    non_window = {name for name in WITH_FORM
                  if REGISTRY[name].max_form(Node("n", name, ("x",), ("y",), {}), [None, np.ones(1)]).shape
                  is not MaxShape.WINDOW}
    assert non_window == {case[0] for case in FORM_NODES}


@pytest.mark.parametrize("op_type", WITH_FORM)
def test_engines_agree_around_the_op(tmp_path: Path, op_type: str) -> None:
    verdicts = []
    for variant, build in enumerate(CASES.get(op_type, [])):
        for seed in range(3):
            number = 700 + 10 * variant + seed
            verdicts.append(check_agreement(random_instance(tmp_path, build(number), number, (0.1, 0.5)), number))
    assert verdicts, f"{op_type} has no network case"
