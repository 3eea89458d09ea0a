"""Builds benchmarks/generator: a 5-input image generator followed by a discriminator, the network
shape of issue 23 (Gemm -> ConvTranspose/BatchNormalization/ReLU stack -> Conv discriminator,
about 0.5 M parameters), with two properties on it.

    python benchmarks/make_generator.py

The weights are random (seeded, He-scaled), then calibrated on ``z ~ N(0, I)`` as a trained
generator's would be: each BatchNormalization gets the mean and variance of its input over 512
samples, and each discriminator layer before a ReLU is shifted and scaled so that its outputs
have mean 0.3 and standard deviation 1 per channel (so most neurons are stable on a small box,
as in trained networks; with raw random weights nearly all are unstable and no bound method
says anything). The file is written with the ``onnx`` helper API and committed, so nothing
here needs a download. Layers:

    z (1, 5) -> Gemm 5 -> 6272 -> Reshape (1, 128, 7, 7) -> BatchNorm -> Relu
      -> ConvTranspose 128 -> 64, 4x4, stride 2, pad 1 (14 x 14) -> BatchNorm -> Relu
      -> ConvTranspose 64 -> 32, 4x4, stride 2, pad 1 (28 x 28) -> BatchNorm -> Relu
      -> Conv 32 -> 1, 3x3, pad 1 (the image, 28 x 28)
      -> Conv 1 -> 32, 4x4, stride 2, pad 1 -> Relu -> Conv 32 -> 64, 4x4, stride 2, pad 1 -> Relu
      -> Flatten -> Gemm 3136 -> 64 -> Relu -> Gemm 64 -> 2 (two scores)

Properties (the VNN-LIB states the violation): over ``z`` in ``z0 + [-r, r]^5`` (``z0`` a fixed
draw of ``N(0, I)``: a neighbourhood of one latent point, as a property of a trained generator
would be), score 0 at least score 1 plus a threshold. ``generator_narrow`` uses ``r = 0.05`` and
``generator_wide`` ``r = 0.5``;
the thresholds sit above the largest margin found by sampling 20,000 points of the box, so a
counterexample, if any, is not a sampled one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OUT = HERE / "generator"
INPUTS = 5


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _batch_norm(rng: np.random.Generator, name: str, channels: int, source: str, inits: list, nodes: list) -> str:
    parts = {"scale": 1.0 + 0.1 * rng.standard_normal(channels), "bias": 0.1 * rng.standard_normal(channels),
             "mean": 0.1 * rng.standard_normal(channels), "var": 1.0 + 0.2 * rng.random(channels)}
    for key, value in parts.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_{key}"))
    nodes.append(helper.make_node("BatchNormalization", [source] + [f"{name}_{k}" for k in parts], [name],
                                  name=name, epsilon=1e-5))
    return name


def _raw_model(seed: int) -> onnx.ModelProto:
    """The network with random weights, before calibration."""
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def weight(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        inits.append(numpy_helper.from_array(_he(rng, shape, fan_in), name))
        return name

    def bias(name: str, size: int) -> str:
        inits.append(numpy_helper.from_array((0.05 * rng.standard_normal(size)).astype(np.float32), name))
        return name

    nodes.append(helper.make_node("Gemm", ["z", weight("fc_w", (INPUTS, 6272), INPUTS), bias("fc_b", 6272)],
                                  ["fc"], name="fc"))
    inits.append(numpy_helper.from_array(np.array([1, 128, 7, 7], dtype=np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["fc", "shape"], ["seed"], name="seed"))
    current = "seed"
    for index, (cin, cout) in enumerate([(128, 64), (64, 32)]):
        current = _batch_norm(rng, f"bn{index}", cin, current, inits, nodes)
        nodes.append(helper.make_node("Relu", [current], [f"relu{index}"], name=f"relu{index}"))
        nodes.append(helper.make_node(
            "ConvTranspose",
            [f"relu{index}", weight(f"up{index}_w", (cin, cout, 4, 4), cin * 4), bias(f"up{index}_b", cout)],
            [f"up{index}"], name=f"up{index}", kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
        current = f"up{index}"
    current = _batch_norm(rng, "bn2", 32, current, inits, nodes)
    nodes.append(helper.make_node("Relu", [current], ["relu2"], name="relu2"))
    nodes.append(helper.make_node("Conv", ["relu2", weight("img_w", (1, 32, 3, 3), 32 * 9), bias("img_b", 1)],
                                  ["image"], name="image", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    current = "image"
    for index, (cin, cout) in enumerate([(1, 32), (32, 64)]):
        nodes.append(helper.make_node(
            "Conv", [current, weight(f"d{index}_w", (cout, cin, 4, 4), cin * 16), bias(f"d{index}_b", cout)],
            [f"d{index}"], name=f"d{index}", kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"d{index}"], [f"dr{index}"], name=f"dr{index}"))
        current = f"dr{index}"
    nodes.append(helper.make_node("Flatten", [current], ["flat"], name="flat"))
    nodes.append(helper.make_node("Gemm", ["flat", weight("h_w", (64, 3136), 3136), bias("h_b", 64)], ["h"],
                                  name="h", transB=1))
    nodes.append(helper.make_node("Relu", ["h"], ["hr"], name="hr"))
    nodes.append(helper.make_node("Gemm", ["hr", weight("o_w", (2, 64), 64), bias("o_b", 2)], ["score"],
                                  name="score", transB=1))
    graph = helper.make_graph(nodes, "generator_discriminator",
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, INPUTS])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


CALIBRATED = ["bn0", "bn1", "bn2", "d0", "d1", "h"]
"""Nodes calibrated in order: BatchNormalization statistics, or a layer's weight and bias."""


def _values(model: onnx.ModelProto, name: str, points: np.ndarray) -> np.ndarray:
    """The input of node ``name`` (BatchNormalization) or its output (other nodes) at ``points``."""
    node = next(n for n in model.graph.node if n.name == name)
    value = node.input[0] if node.op_type == "BatchNormalization" else node.output[0]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"z": p[None]})[0] for p in points])


def _calibrate(model: onnx.ModelProto, name: str, points: np.ndarray) -> None:
    """Sets node ``name``'s statistics (BatchNormalization) or rescales its weight and bias."""
    values = _values(model, name, points)
    axes = (0, 2, 3) if values.ndim == 4 else (0,)
    mean, std = values.mean(axis=axes), values.std(axis=axes) + 1e-6
    inits = {i.name: i for i in model.graph.initializer}

    def put(key: str, array: np.ndarray) -> None:
        inits[key].CopyFrom(numpy_helper.from_array(array.astype(np.float32), key))

    if name.startswith("bn"):
        put(f"{name}_mean", mean)
        put(f"{name}_var", std**2)
        return
    weight, bias = numpy_helper.to_array(inits[f"{name}_w"]), numpy_helper.to_array(inits[f"{name}_b"])
    out_axis = 0
    shape = [1] * weight.ndim
    shape[out_axis] = -1
    put(f"{name}_w", weight / std.reshape(shape))
    put(f"{name}_b", (bias - mean) / std + 0.3)


def build_model(seed: int = 0) -> onnx.ModelProto:
    """The calibrated generator-discriminator network described in the module docstring."""
    model = _raw_model(seed)
    points = np.random.default_rng(seed + 100).standard_normal((512, INPUTS)).astype(np.float32)
    for name in CALIBRATED:
        _calibrate(model, name, points)
    onnx.checker.check_model(model)
    return model


def sampled_margin(model: onnx.ModelProto, centre: np.ndarray, radius: float, samples: int = 20000,
                   seed: int = 1) -> float:
    """The largest ``score0 - score1`` over ``samples`` uniform points of the box."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    points = (centre + np.random.default_rng(seed).uniform(-radius, radius, (samples, INPUTS))).astype(np.float32)
    best = -np.inf
    for point in points:
        score = session.run(None, {"z": point[None]})[0][0]
        best = max(best, float(score[0] - score[1]))
    return best


def _spec(centre: np.ndarray, radius: float, threshold: float) -> str:
    lines = [f"; generator: score 0 - score 1 >= {threshold!r} for some z within {radius} of a latent point"]
    lines += [f"(declare-const X_{i} Real)" for i in range(INPUTS)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i in range(INPUTS):
        low, high = float(np.float32(centre[i] - radius)), float(np.float32(centre[i] + radius))
        lines += [f"(assert (>= X_{i} {low!r}))", f"(assert (<= X_{i} {high!r}))"]
    lines.append(f"(assert (>= Y_0 (+ Y_1 {threshold!r})))")
    return "\n".join(lines) + "\n"


def main() -> None:
    (OUT / "onnx").mkdir(parents=True, exist_ok=True)
    (OUT / "vnnlib").mkdir(exist_ok=True)
    model = build_model()
    onnx.save(model, OUT / "onnx" / "generator.onnx")
    instances = []
    centre = np.random.default_rng(7).standard_normal(INPUTS)
    for name, radius in (("generator_narrow", 0.05), ("generator_wide", 0.5)):
        margin = sampled_margin(model, centre, radius)
        threshold = round(margin + 0.25 * abs(margin) + 0.05, 4)
        (OUT / "vnnlib" / f"{name}.vnnlib").write_text(_spec(centre, radius, threshold))
        instances.append(f"onnx/generator.onnx,vnnlib/{name}.vnnlib,60")
        print(f"{name}: radius {radius}, sampled max margin {margin:.4f}, threshold {threshold}")
    (OUT / "instances.csv").write_text("\n".join(instances) + "\n")


if __name__ == "__main__":
    main()
