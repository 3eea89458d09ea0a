"""``verify soundness generate``: a benchmark of robustness instances with planted counterexamples.

For each model: synthetic clustered data, a network of a named architecture, boxes around the
first training points, counterexamples planted on corners of some boxes (detectors written
into the weights, :mod:`verifier.soundness.planting`), training against attacks
(:mod:`verifier.soundness.training`), export to ONNX, and then per box:

* a planted box becomes an instance (expected ``sat``) when onnxruntime confirms on the
  exported model that its corner violates the property (:func:`verifier.witness.check_witness`,
  the re-check the verifier applies to itself); the corner goes to ``counterexamples.jsonl``;
* an unplanted box becomes an instance (expected ``unsat``) only when our verifier proves it
  within ``verify_timeout``; others are dropped.

Output (VNN-COMP layout): ``onnx/``, ``vnnlib/``, ``instances.csv``, ``expected.csv``,
``counterexamples.jsonl`` (``{"onnx", "vnnlib", "x"}`` per planted instance, never inside the
property files) and ``info.csv`` (architecture, activation, eps, strong-attack margins).

Reproducibility: the networks, boxes and counterexamples depend only on the seed and the
options (training runs single-threaded, so the float arithmetic is the same on every run of the
same torch build). Which unplanted boxes are kept also depends on how fast this machine proves
them within ``verify_timeout``.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from verifier.bench.progress import Progress
from verifier.errors import InputError
from verifier.soundness.architectures import (
    ACTIVATIONS,
    Architecture,
    build_network,
    resolve_architectures,
)
from verifier.soundness.onnx_export import network_to_onnx
from verifier.soundness.planting import plant_detectors
from verifier.soundness.training import (
    Boxes,
    Checked,
    TrainConfig,
    make_boxes,
    synthetic_data,
    train_network,
)
from verifier.soundness.vnnlib_writer import robustness_property

INFO_FIELDS = ("onnx", "vnnlib", "architecture", "family", "activation", "input_size", "eps", "kind", "label",
               "target", "corner_margin", "strong_attack_margin", "hidden_from_strong_attack")


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate.

    Attributes:
        architectures: preset names, ``mlp``, ``cnn`` or ``all``.
        activations: any of relu, sigmoid, tanh.
        eps: the ℓ∞ radii; model ``m`` uses ``eps[(m + m // len(activations)) % len(eps)]`` (the
            shift keeps radii and activations from pairing up the same way for every architecture).
        count: models to train; model ``m`` has the ``m``-th (architecture, activation) pair
            of the grid, cycling (default: one model per pair).
        planted: boxes with a planted counterexample per model.
        unplanted: candidate ``unsat`` boxes per model.
        unplanted_scale: the radius of an unplanted box as a fraction of the model's ``eps``:
            a box the network is robust on but that bound-based verification cannot prove
            within ``verify_timeout`` is dropped, and at the full radius most are.
        seed: the random seed of the whole run.
        timeout: the per-instance timeout written to ``instances.csv``.
        verify_timeout: seconds our verifier gets to prove an unplanted box.
        train: the training budgets.
    """

    architectures: tuple[str, ...] = ("all",)
    activations: tuple[str, ...] = ACTIVATIONS
    eps: tuple[float, ...] = (0.05,)
    count: int | None = None
    planted: int = 4
    unplanted: int = 2
    unplanted_scale: float = 0.25
    seed: int = 0
    timeout: float = 60.0
    verify_timeout: float = 30.0
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class ModelPlan:
    """One model of the run: its index, architecture, activation and radius."""

    index: int
    arch: Architecture
    activation: str
    eps: float

    @property
    def name(self) -> str:
        return f"m{self.index:02d}_{self.arch.name}_{self.activation}_eps{self.eps:g}"


def plan_models(config: GenerateConfig) -> list[ModelPlan]:
    """The models of a run, in order (see :class:`GenerateConfig`).

    Raises:
        InputError: unknown names, non-positive radii or counts.
    """
    archs = resolve_architectures(list(config.architectures))
    for act in config.activations:
        if act not in ACTIVATIONS:
            raise InputError(f"--activation {act!r}: use one of {', '.join(ACTIVATIONS)}")
    if not config.eps or any(not e > 0 for e in config.eps):
        raise InputError("--eps must be positive")
    if not 0 < config.unplanted_scale <= 1:
        raise InputError("--unplanted-scale must be in (0, 1]")
    if config.planted < 0 or config.unplanted < 0 or config.planted + config.unplanted == 0:
        raise InputError("--planted and --unplanted must be >= 0 and not both 0")
    grid = list(itertools.product(archs, config.activations))
    count = len(grid) if config.count is None else config.count
    if count < 1:
        raise InputError("--count must be at least 1")
    shift = len(config.activations)
    return [ModelPlan(m, *grid[m % len(grid)], config.eps[(m + m // shift) % len(config.eps)]) for m in range(count)]


@contextmanager
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_model(plan: ModelPlan, config: GenerateConfig) -> tuple[torch.nn.Sequential, Boxes, Checked]:
    """Builds and trains the network of ``plan``; returns it, its boxes and its best check."""
    generator = torch.Generator().manual_seed(config.seed * 10007 + plan.index)
    arch = plan.arch
    with _single_thread():
        network = build_network(arch, plan.activation, generator)
        data = synthetic_data(arch.input_shape, arch.classes, config.train.clean_points, config.train.cluster_spread,
                              generator)
        boxes_count = config.planted + config.unplanted
        planted = torch.arange(boxes_count) < config.planted
        radii = torch.where(planted, torch.tensor(plan.eps, dtype=torch.float64),
                            torch.tensor(plan.eps * config.unplanted_scale, dtype=torch.float64))
        boxes = make_boxes(data[0][:boxes_count], data[1][:boxes_count], radii, planted, arch.classes, generator,
                           block=arch.pooling_factor)
        planting = plant_detectors(network, boxes, plan.activation)
        boxes = planting.boxes
        try:
            checked = train_network(network, data, boxes, config.train, generator)
        finally:
            planting.release()
    network.eval()
    return network, boxes, checked


@dataclass
class Written:
    """What one model contributed: instance rows, counterexample lines and info rows."""

    instances: list[tuple[str, str, str]] = field(default_factory=list)
    counterexamples: list[dict[str, object]] = field(default_factory=list)
    info: list[dict[str, object]] = field(default_factory=list)
    tally: dict[str, int] = field(default_factory=lambda: {"planted": 0, "hidden": 0, "unsat": 0, "dropped": 0})


def write_model(out: Path, plan: ModelPlan, network: torch.nn.Sequential, boxes: Boxes, checked: Checked,
                config: GenerateConfig) -> Written:
    """Exports the model and its instances into ``out`` (see the module docstring)."""
    from verifier.api import verify
    from verifier.config import default_config
    from verifier.result import Status
    from verifier.soundness.validate import check_planted_point
    from verifier.spec import parse_vnnlib
    from verifier.witness import OnnxOracle

    onnx_rel = f"onnx/{plan.name}.onnx"
    onnx.save(network_to_onnx(network, plan.arch.input_shape, plan.name), str(out / onnx_rel))
    oracle = OnnxOracle(out / onnx_rel)
    written = Written()
    for box in range(boxes.labels.shape[0]):
        kind = "planted" if bool(boxes.planted[box]) else "unplanted"
        vnnlib_rel = f"vnnlib/{plan.name}_{kind}{box}.vnnlib"
        path = out / vnnlib_rel
        label = int(boxes.labels[box])
        lower, upper = boxes.lower[box].numpy().ravel(), boxes.upper[box].numpy().ravel()
        eps = plan.eps if kind == "planted" else plan.eps * config.unplanted_scale
        comment = (f"local robustness of {plan.name}, box {box}, label {label}, eps {eps:g}\n"
                   "generated by verify soundness generate")
        path.write_text(robustness_property(lower, upper, label, plan.arch.classes, comment))
        row = {"onnx": onnx_rel, "vnnlib": vnnlib_rel, "architecture": plan.arch.name, "family": plan.arch.family,
               "activation": plan.activation, "input_size": plan.arch.input_size, "eps": f"{eps:g}", "kind": kind,
               "label": label, "target": int(boxes.targets[box]) if kind == "planted" else "",
               "corner_margin": f"{float(checked.corner_margin[box]):.6g}" if kind == "planted" else "",
               "strong_attack_margin": f"{float(checked.attack_margin[box]):.6g}",
               "hidden_from_strong_attack": str(bool(checked.hidden[box])).lower() if kind == "planted" else ""}
        if kind == "planted":
            corner = boxes.corners[box].numpy().astype(np.float64).ravel()
            region = parse_vnnlib(path).regions[0]
            if not check_planted_point(oracle, region, corner)[0]:
                path.unlink()
                written.tally["dropped"] += 1
                continue
            written.counterexamples.append({"onnx": onnx_rel, "vnnlib": vnnlib_rel, "x": corner.tolist()})
            written.tally["planted"] += 1
            written.tally["hidden"] += bool(checked.hidden[box])
        else:
            result = verify(out / onnx_rel, path, config.verify_timeout, default_config(seed=config.seed))
            if result.status is not Status.UNSAT:
                path.unlink()
                written.tally["dropped"] += 1
                continue
            written.tally["unsat"] += 1
        written.instances.append((onnx_rel, vnnlib_rel, "sat" if kind == "planted" else "unsat"))
        written.info.append(row)
    if not written.instances:
        (out / onnx_rel).unlink()
    return written


def generate(out: Path, config: GenerateConfig, progress: Progress | None = None) -> list[Written]:
    """Generates the whole benchmark into ``out`` (created; must be empty or absent).

    Raises:
        InputError: bad options, or ``out`` holds files already.
    """
    plans = plan_models(config)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: not empty; give a new folder")
    for sub in ("onnx", "vnnlib"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    results = []
    for plan in plans:
        network, boxes, checked = train_model(plan, config)
        written = write_model(out, plan, network, boxes, checked, config)
        results.append(written)
        if progress is not None:
            progress.update(written.tally, label=f"{plan.name}: {written.tally}")
    _write_tables(out, results, config.timeout)
    return results


def _write_tables(out: Path, results: list[Written], timeout: float) -> None:
    with (out / "instances.csv").open("w", newline="") as handle:
        for onnx_rel, vnnlib_rel, _ in (i for w in results for i in w.instances):
            handle.write(f"{onnx_rel},{vnnlib_rel},{timeout:g}\n")
    with (out / "expected.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["onnx", "vnnlib", "expected"])
        writer.writerows(i for w in results for i in w.instances)
    with (out / "counterexamples.jsonl").open("w") as handle:
        for line in (c for w in results for c in w.counterexamples):
            handle.write(json.dumps(line) + "\n")
    with (out / "info.csv").open("w", newline="") as handle:
        dict_writer = csv.DictWriter(handle, INFO_FIELDS)
        dict_writer.writeheader()
        dict_writer.writerows(r for w in results for r in w.info)
