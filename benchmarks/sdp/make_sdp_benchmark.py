"""Builds benchmarks/sdp: adversarially trained ReLU MLPs on 8x8 digits, with robustness
properties close to each image's critical radius (hard for linear relaxations, decided by MILP).

    python benchmarks/sdp/make_sdp_benchmark.py [--out DIR] [--seed N]

Steps, all deterministic for a given seed (torch runs on one thread):

1. load ``sklearn.datasets.load_digits`` (pixels scaled to [0, 1]) and split it by the seed;
2. train each MLP of :attr:`BenchmarkConfig.hidden` with PGD adversarial training (Madry et
   al.) at l_inf radius ``eps_train``; report clean and PGD test accuracy;
3. export each net to ONNX and check onnxruntime against torch on some test images;
4. per net, pick correctly classified test images; per image, bracket the critical radius
   from above by PGD, bisect it with the exact MILP engine (``eps*``: the largest radius it
   proved robust), then bisect alpha-CROWN's certified radius ``eps_a`` below ``eps*``;
5. write robust instances in the gap ``(eps_a, eps*)`` and, for the first image of each net,
   a non-robust one above ``eps*``; every instance is decided again by the MILP engine (that
   verdict is the expected one) and an undecided one is dropped;
6. record alpha-CROWN's lowest clause bound per instance (negative: not proven by the
   linear relaxation) and write instances.csv, expected.csv and README.md.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from verifier.api import RegionProof, numerical_hygiene, region_refuted, verify
from verifier.bab.relu_split import count_unstable
from verifier.config import VerifierConfig, default_config
from verifier.graph.torch_graph import TorchGraph
from verifier.output_bounds import spec_bounds
from verifier.problem import load_problem
from verifier.soundness.onnx_export import network_to_onnx
from verifier.soundness.vnnlib_writer import robustness_property

HERE = Path(__file__).resolve().parent
CLASSES = 10
INPUTS = 64


@dataclass(frozen=True)
class BenchmarkConfig:
    """How the suite is built.

    Attributes:
        seed: seeds the split, the initialisation, the training order and the image choice.
        hidden: hidden-layer widths of each MLP (64 inputs, 10 outputs, ReLU after each hidden).
        test_fraction: share of the 1797 digits held out for testing and for the properties.
        eps_train: l_inf radius of PGD adversarial training (pixels in [0, 1]).
        epochs: training epochs per net; the radius ramps up linearly over the first
            ``warmup_epochs`` of them.
        warmup_epochs: epochs of the linear ramp of the training radius.
        batch_size: training batch size.
        learning_rate: Adam's learning rate.
        train_steps: PGD steps per training batch.
        test_steps: PGD steps (and ``test_restarts`` random restarts) for the test accuracy
            and for the upper bracket of each image's critical radius.
        test_restarts: random restarts of the evaluation attack.
        images_per_net: properties' images per net.
        gap_fractions: robust instances at ``eps_a + f (eps* - eps_a)`` for each ``f``, where
            ``eps_a`` is the largest radius alpha-CROWN proves and ``eps*`` the largest the
            MILP engine proves: inside the gap that a tighter relaxation (the SDP) may close.
        sat_factor: the non-robust instance of the first image of each net, at this multiple
            of ``eps*``.
        bisection_steps: MILP bisection steps on the critical radius (and alpha-CROWN
            bisection steps on ``eps_a``).
        milp_timeout: seconds per MILP run.
        instance_timeout: the timeout written in instances.csv.
    """

    seed: int = 0
    hidden: tuple[tuple[int, ...], ...] = ((32, 32), (48, 48), (32, 32, 32))
    test_fraction: float = 0.25
    eps_train: float = 0.08
    epochs: int = 60
    warmup_epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 2e-3
    train_steps: int = 5
    test_steps: int = 20
    test_restarts: int = 4
    images_per_net: int = 3
    gap_fractions: tuple[float, ...] = (0.5, 0.9)
    sat_factor: float = 1.1
    bisection_steps: int = 7
    milp_timeout: float = 60.0
    instance_timeout: int = 120


@dataclass(frozen=True)
class Data:
    """The digits split: inputs ``(N, 64)`` in [0, 1] and labels ``(N,)``; the image numbers
    in file names are positions in the test set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class NetRecord:
    """One trained net: its file stem, hidden widths, parameter count, clean and PGD test
    accuracy (at ``eps_train``) and training seconds."""

    name: str
    hidden: tuple[int, ...]
    params: int
    clean: float
    robust: float
    seconds: float


@dataclass(frozen=True)
class ImageRecord:
    """One property image: its position in the test set, its label and radii: ``eps_pgd`` (the
    smallest at which PGD succeeds), ``eps_star`` (largest proven by MILP) and ``eps_alpha``
    (largest proven by alpha-CROWN)."""

    net: str
    image: int
    label: int
    eps_pgd: float
    eps_star: float
    eps_alpha: float


@dataclass(frozen=True)
class Instance:
    """One written property and what the engines said about it: the MILP verdict and time,
    alpha-CROWN's lowest clause bound, and the unstable ReLUs under CROWN's bounds."""

    source: ImageRecord
    eps: float
    expected: str
    milp_seconds: float
    alpha_lowest: float
    unstable: int

    @property
    def onnx(self) -> str:
        return f"onnx/{self.source.net}.onnx"

    @property
    def vnnlib(self) -> str:
        return f"vnnlib/{spec_name(self.source.net, self.source.image, self.eps)}"


def log(message: str) -> None:
    """Progress on stdout, flushed at once."""
    print(message, flush=True)


def spec_name(net: str, image: int, eps: float) -> str:
    """The property's file name for net ``net``, test image ``image`` and radius ``eps``."""
    return f"{net}_img{image}_eps{eps:.4g}.vnnlib"


def load_data(seed: int, test_fraction: float) -> Data:
    """The 8x8 digits (pixels / 16, so in [0, 1]), split by ``seed`` (stratified)."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Data(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


def build_mlp(hidden: Sequence[int]) -> nn.Sequential:
    """``Linear(64, h1), ReLU, ..., Linear(h_last, 10)`` (no final ReLU)."""
    layers: list[nn.Module] = []
    width = INPUTS
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, CLASSES))
    return nn.Sequential(*layers)


def pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | float, steps: int,
        generator: torch.Generator) -> torch.Tensor:
    """An l_inf PGD attack (random start, signed gradient of the cross entropy, step 2.5 eps /
    steps) clipped to the box ``[x - eps, x + eps]`` and to [0, 1]; ``eps`` is a float or a
    per-example ``(N, 1)`` tensor."""
    eps_t = torch.as_tensor(eps, dtype=x.dtype)
    lo, hi = (x - eps_t).clamp(0, 1), (x + eps_t).clamp(0, 1)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
    adv = torch.minimum(torch.maximum(x + noise * eps_t, lo), hi)
    step = 2.5 * eps_t / max(steps, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(net(adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        adv = torch.minimum(torch.maximum(adv.detach() + step * grad.sign(), lo), hi)
    return adv.detach()


def robust_mask(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | float, steps: int,
                restarts: int, generator: torch.Generator) -> torch.Tensor:
    """``(N,)`` bool: correctly classified and no attack of ``restarts`` PGD runs succeeded."""
    with torch.no_grad():
        ok = net(x).argmax(1) == y
    for _ in range(restarts):
        adv = pgd(net, x, y, eps, steps, generator)
        with torch.no_grad():
            ok &= net(adv).argmax(1) == y
    return ok


def train(net: nn.Sequential, data: Data, cfg: BenchmarkConfig, seed: int) -> tuple[float, float]:
    """PGD adversarial training of ``net`` in place; returns (clean, PGD) test accuracy."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    n = data.x_train.shape[0]
    for epoch in range(cfg.epochs):
        eps = cfg.eps_train * min(1.0, (epoch + 1) / cfg.warmup_epochs)
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            net.eval()
            adv = pgd(net, x, y, eps, cfg.train_steps, gen)
            net.train()
            loss = nn.functional.cross_entropy(net(adv), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        clean = (net(data.x_test).argmax(1) == data.y_test).float().mean().item()
    robust = robust_mask(net, data.x_test, data.y_test, cfg.eps_train, cfg.test_steps, cfg.test_restarts, gen)
    return clean, robust.float().mean().item()


def export(net: nn.Sequential, path: Path, x_check: torch.Tensor) -> None:
    """Writes ``net`` as ONNX to ``path`` and checks onnxruntime against torch on ``x_check``.

    Raises:
        AssertionError: the outputs differ by more than 1e-5.
    """
    model = network_to_onnx(net, (INPUTS,), path.stem)
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = net(x_check).numpy()
    got = np.concatenate([session.run(None, {"X": row[None].numpy()})[0] for row in x_check])
    err = float(np.abs(got - want).max())
    assert err < 1e-5, f"{path.name}: onnxruntime and torch differ by {err:g}"


def box(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The l_inf box of radius ``eps`` around ``x``, clipped to [0, 1]."""
    return np.clip(x - eps, 0.0, 1.0), np.clip(x + eps, 0.0, 1.0)


def write_property(path: Path, x: np.ndarray, label: int, eps: float, comment: str) -> None:
    """Writes the robustness property of ``x`` (true class ``label``) at radius ``eps``."""
    lower, upper = box(x, eps)
    path.write_text(robustness_property(lower, upper, label, CLASSES, comment))


def milp_status(model: Path, spec: Path, timeout: float) -> tuple[str, float]:
    """The exact MILP engine's status (``sat``, ``unsat``, ``unknown``, ``timeout``) and time."""
    result = verify(model, spec, timeout, VerifierConfig(method="milp"))
    return result.status.value, result.time


def relaxation_figures(model: Path, spec: Path) -> tuple[float, int]:
    """alpha-CROWN's lowest clause bound (as ``verify bounds --method alpha-crown`` reports
    it: per clause the largest certified row bound, then the smallest over the clauses;
    positive means that alpha-CROWN proves the property), and the number of unstable ReLUs
    under CROWN's intermediate bounds (the SDP's size grows with it)."""
    config = default_config()
    numerical_hygiene(config.seed)
    problem = load_problem(model, spec)
    regions = spec_bounds(problem, "alpha-crown", config)
    lowest = min(max(rows) for region in regions for rows in region["clause_lower"])
    tgraph = TorchGraph(problem.graph, config.device.torch_device, config.device.bounds_torch_dtype)
    proof = RegionProof(tgraph, problem.spec.regions[0])
    unstable = 0 if proof.crown is None else count_unstable(proof.crown.bounds, tgraph)
    return lowest, unstable


def alpha_proves(model: Path, spec: Path) -> bool:
    """True when intervals, CROWN or alpha-CROWN (run to convergence) prove the property."""
    config = default_config()
    numerical_hygiene(config.seed)
    problem = load_problem(model, spec)
    tgraph = TorchGraph(problem.graph, config.device.torch_device, config.device.bounds_torch_dtype)
    return all(region_refuted(tgraph, region, optimise=True) for region in problem.spec.regions)


def pgd_radius(net: nn.Module, x: torch.Tensor, y: int, cfg: BenchmarkConfig, generator: torch.Generator) -> float:
    """An upper bracket of the critical radius: the smallest radius (to 1 % by bisection, up
    to 0.5) at which PGD finds an adversarial example."""
    xb, yb = x[None], torch.tensor([y])
    lo, hi = 0.0, 0.5
    if bool(robust_mask(net, xb, yb, hi, cfg.test_steps, cfg.test_restarts, generator)[0]):
        return hi
    while hi - lo > 0.01 * hi:
        mid = 0.5 * (lo + hi)
        if bool(robust_mask(net, xb, yb, mid, cfg.test_steps, cfg.test_restarts, generator)[0]):
            lo = mid
        else:
            hi = mid
    return hi


def largest_proven(model: Path, x: np.ndarray, label: int, hi: float, steps: int, scratch: Path,
                   prover: str, timeout: float) -> float:
    """The largest radius in a bisection of ``[0, hi]`` (``steps`` steps) that ``prover``
    proves robust: ``"milp"`` (the exact MILP engine; every outcome but ``unsat`` counts as
    not proven) or ``"alpha"`` (intervals, CROWN, alpha-CROWN); 0 when none was."""
    lo = 0.0
    spec = scratch / "probe.vnnlib"
    for _ in range(steps):
        mid = float(f"{0.5 * (lo + hi):.4g}")
        write_property(spec, x, label, mid, "bisection probe")
        start = time.monotonic()
        if prover == "milp":
            status, _ = milp_status(model, spec, timeout)
        else:
            status = "unsat" if alpha_proves(model, spec) else "open"
        log(f"      {prover} eps {mid:.4g}: {status} ({time.monotonic() - start:.1f} s)")
        if status == "unsat":
            lo = mid
        else:
            hi = mid
    return lo


def pick_images(net: nn.Module, data: Data, count: int, taken: set[int], generator: torch.Generator) -> list[int]:
    """``count`` test images the net classifies correctly, in a seeded random order, avoiding
    ``taken`` (so that the nets get different images) and taking distinct labels first."""
    with torch.no_grad():
        correct = (net(data.x_test).argmax(1) == data.y_test).numpy()
    order = torch.randperm(data.x_test.shape[0], generator=generator).tolist()
    picked: list[int] = []
    labels: set[int] = set()
    for i in order:
        if correct[i] and i not in taken and int(data.y_test[i]) not in labels:
            picked.append(i)
            labels.add(int(data.y_test[i]))
        if len(picked) == count:
            break
    return picked


def net_name(hidden: Sequence[int]) -> str:
    """``digits_mlp_32x32`` for hidden widths (32, 32)."""
    return "digits_mlp_" + "x".join(str(h) for h in hidden)


def train_nets(data: Data, cfg: BenchmarkConfig, onnx_dir: Path) -> list[tuple[NetRecord, nn.Sequential]]:
    """Trains and exports every net of ``cfg.hidden`` (net ``i`` seeded by ``seed * 100 + i``)."""
    nets = []
    for i, hidden in enumerate(cfg.hidden):
        name = net_name(hidden)
        start = time.monotonic()
        torch.manual_seed(cfg.seed * 100 + i)
        net = build_mlp(hidden)
        clean, robust = train(net, data, cfg, cfg.seed * 100 + i)
        export(net, onnx_dir / f"{name}.onnx", data.x_test[:16])
        params = sum(p.numel() for p in net.parameters())
        record = NetRecord(name, tuple(hidden), params, clean, robust, time.monotonic() - start)
        log(f"  {name}: clean {clean:.1%}, PGD (eps {cfg.eps_train}) {robust:.1%}, "
            f"{params} parameters, {record.seconds:.1f} s; onnxruntime matches torch")
        nets.append((record, net))
    return nets


def measure_image(net: nn.Sequential, record: NetRecord, data: Data, image: int, cfg: BenchmarkConfig,
                  model: Path, scratch: Path) -> ImageRecord:
    """The radii of one image: PGD's, the MILP-proven ``eps*`` and alpha-CROWN's."""
    x, label = data.x_test[image], int(data.y_test[image])
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + image)
    eps_pgd = pgd_radius(net, x, label, cfg, gen)
    log(f"    image {image} (label {label}): PGD succeeds from eps {eps_pgd:.4g}")
    x_np = x.numpy().astype(np.float64)
    eps_star = largest_proven(model, x_np, label, eps_pgd, cfg.bisection_steps, scratch, "milp", cfg.milp_timeout)
    eps_alpha = largest_proven(model, x_np, label, eps_star, cfg.bisection_steps, scratch, "alpha", cfg.milp_timeout)
    log(f"    image {image}: eps* {eps_star:.4g}, alpha-CROWN proves up to {eps_alpha:.4g}")
    return ImageRecord(record.name, image, label, eps_pgd, eps_star, eps_alpha)


def write_instances(source: ImageRecord, radii: Sequence[float], x: np.ndarray, cfg: BenchmarkConfig,
                    out: Path) -> list[Instance]:
    """Writes the properties of one image at ``radii`` and decides each with the MILP engine;
    an undecided one is deleted and left out."""
    model = out / "onnx" / f"{source.net}.onnx"
    written = []
    for eps in radii:
        eps = float(f"{eps:.4g}")
        spec = out / "vnnlib" / spec_name(source.net, source.image, eps)
        comment = (f"Local robustness of {source.net} on test image {source.image} of sklearn digits "
                   f"(label {source.label}), l_inf eps {eps:.4g} clipped to [0, 1].\n"
                   f"Made by benchmarks/sdp/make_sdp_benchmark.py (seed {cfg.seed}); "
                   f"MILP-proven critical radius eps* {source.eps_star:.4g}.")
        write_property(spec, x, source.label, eps, comment)
        status, seconds = milp_status(model, spec, cfg.milp_timeout)
        if status not in ("sat", "unsat"):
            log(f"      {spec.name}: MILP {status} after {seconds:.1f} s; dropped")
            spec.unlink()
            continue
        lowest, unstable = relaxation_figures(model, spec)
        written.append(Instance(source, eps, status, seconds, lowest, unstable))
        log(f"      {spec.name}: {status} (MILP {seconds:.1f} s), alpha-CROWN lowest bound {lowest:.4g}, "
            f"{unstable} unstable ReLUs")
    return written


def build(cfg: BenchmarkConfig, out: Path) -> tuple[list[NetRecord], list[ImageRecord], list[Instance]]:
    """Trains the nets and writes the ONNX and VNN-LIB files under ``out``."""
    data = load_data(cfg.seed, cfg.test_fraction)
    log(f"digits: {data.x_train.shape[0]} train, {data.x_test.shape[0]} test images")
    log("training:")
    nets = train_nets(data, cfg, out / "onnx")
    images: list[ImageRecord] = []
    instances: list[Instance] = []
    taken: set[int] = set()
    picker = torch.Generator().manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for record, net in nets:
            log(f"properties of {record.name}:")
            model = out / "onnx" / f"{record.name}.onnx"
            for n, image in enumerate(pick_images(net, data, cfg.images_per_net, taken, picker)):
                taken.add(image)
                source = measure_image(net, record, data, image, cfg, model, Path(tmp))
                if source.eps_star <= 0:
                    log(f"    image {image}: MILP proved no radius; skipped")
                    continue
                images.append(source)
                gap = source.eps_star - source.eps_alpha
                radii = [source.eps_alpha + f * gap for f in cfg.gap_fractions]
                if n == 0:
                    radii.append(cfg.sat_factor * source.eps_star)
                x = data.x_test[image].numpy().astype(np.float64)
                instances += write_instances(source, radii, x, cfg, out)
    return [r for r, _ in nets], images, instances


def write_csvs(instances: Sequence[Instance], timeout: int, out: Path) -> None:
    """instances.csv (no header) and expected.csv (header ``onnx,vnnlib,expected``)."""
    with (out / "instances.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([i.onnx, i.vnnlib, timeout] for i in instances)
    with (out / "expected.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["onnx", "vnnlib", "expected"])
        writer.writerows([i.onnx, i.vnnlib, i.expected] for i in instances)


def readme(cfg: BenchmarkConfig, nets: Sequence[NetRecord], images: Sequence[ImageRecord],
           instances: Sequence[Instance], seconds: float) -> str:
    """The README text: how the suite was made, the figures of this run, and the files."""
    widths = ", ".join("64-" + "-".join(map(str, r.hidden)) + "-10" for r in nets)
    lines = [
        "# sdp: adversarially trained ReLU MLPs on 8x8 digits, near the critical radius",
        "",
        "A small VNN-COMP-style suite for the low-rank SDP bound (`verify bounds --method sdp`):",
        "local robustness properties that the exact MILP engine decides but that linear",
        "relaxations (CROWN, alpha-CROWN) mostly fail to prove. Generated, and re-generated",
        "identically, by",
        "",
        f"    python benchmarks/sdp/make_sdp_benchmark.py --seed {cfg.seed}",
        "",
        f"(this run: {seconds / 60:.1f} minutes on 2 CPU cores, torch on one thread).",
        "",
        "## How it was made",
        "",
        "- Data: `sklearn.datasets.load_digits` (1797 images of 8x8 pixels, divided by 16 so in",
        f"  [0, 1]), stratified split with `random_state={cfg.seed}`, test fraction {cfg.test_fraction}.",
        "  Image numbers (`img<k>`) are positions in that test set.",
        f"- Nets ({widths}): `nn.Linear`/`nn.ReLU` MLPs trained by PGD adversarial training",
        f"  (Madry et al.) at l_inf eps_train = {cfg.eps_train} ({cfg.train_steps} PGD steps per batch, random",
        f"  start, radius ramped up over {cfg.warmup_epochs} of {cfg.epochs} epochs, Adam lr {cfg.learning_rate},",
        f"  cosine schedule, batch {cfg.batch_size}); exported by",
        "  `verifier.soundness.onnx_export.network_to_onnx` (input `X` of shape [1, 64]) and checked",
        "  against onnxruntime on 16 test images.",
        "- Properties (`verifier.soundness.vnnlib_writer.robustness_property`): the box of radius",
        "  eps around the image, clipped to [0, 1]; the violation is some other logit >= the true one.",
        f"- Radii, per correctly classified image ({cfg.images_per_net} per net, seeded choice, distinct labels):",
        "  `eps_pgd` is where PGD first succeeds (bisection to 1 %); `eps*` is the largest radius the",
        f"  MILP engine (`verify --method milp`) proved robust in {cfg.bisection_steps} bisection steps "
        "on [0, eps_pgd];",
        f"  `eps_a` the largest that alpha-CROWN (run to convergence) proved in {cfg.bisection_steps} "
        "steps on [0, eps*].",
        "  Robust instances lie in the gap: eps = eps_a + f (eps* - eps_a) for f in "
        f"{', '.join(map(str, cfg.gap_fractions))};",
        f"  the first image of each net also gets a non-robust instance at {cfg.sat_factor} eps*.",
        "- Every instance was decided again by the MILP engine; that verdict is `expected.csv`",
        "  (a `sat` is a counterexample re-checked by onnxruntime). Undecided ones would be dropped.",
        "",
        "## Nets",
        "",
        "| net | parameters | clean test acc. | PGD test acc. (eps_train) | training s |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.params} | {r.clean:.1%} | {r.robust:.1%} | {r.seconds:.1f} |" for r in nets]
    lines += ["", "## Images", "", "| net | image | label | eps_pgd | eps* | eps_a |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.net} | {r.image} | {r.label} | {r.eps_pgd:.4g} | {r.eps_star:.4g} | {r.eps_alpha:.4g} |"
              for r in images]
    lines += ["", "## Instances", "",
              "alpha-CROWN: the lowest clause bound of `verify bounds --method alpha-crown` (negative:",
              "not proven by it); unstable: ReLUs with l < 0 < u under CROWN's bounds.", "",
              "| vnnlib | eps | expected | alpha-CROWN | unstable | MILP s |", "|---|---|---|---|---|---|"]
    lines += [f"| {i.vnnlib} | {i.eps:.4g} | {i.expected} | {i.alpha_lowest:.4g} | {i.unstable} | "
              f"{i.milp_seconds:.1f} |" for i in instances]
    lines += ["", "## Files", "",
              "- `make_sdp_benchmark.py`: the generator (this README is written by it).",
              "- `onnx/digits_mlp_<widths>.onnx`: the nets (hidden widths joined by `x`).",
              "- `vnnlib/<net>_img<k>_eps<eps>.vnnlib`: the properties (eps to 4 significant digits).",
              f"- `instances.csv`: `onnx,vnnlib,timeout` rows (no header), timeout {cfg.instance_timeout} s.",
              "- `expected.csv`: `onnx,vnnlib,expected` with the MILP engine's verdicts.", ""]
    return "\n".join(lines)


def clean_output(out: Path) -> None:
    """Removes what an earlier run wrote under ``out`` (never the generator itself)."""
    for sub in ("onnx", "vnnlib"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    for name in ("instances.csv", "expected.csv", "README.md"):
        (out / name).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Builds the suite under ``--out`` (default: this script's folder) with ``--seed``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    cfg = BenchmarkConfig(seed=args.seed)
    torch.set_num_threads(1)  # deterministic float reductions; the nets are tiny
    start = time.monotonic()
    clean_output(args.out)
    nets, images, instances = build(cfg, args.out)
    write_csvs(instances, cfg.instance_timeout, args.out)
    seconds = time.monotonic() - start
    (args.out / "README.md").write_text(readme(cfg, nets, images, instances, seconds))
    unsat = sum(i.expected == "unsat" for i in instances)
    hard = sum(i.expected == "unsat" and i.alpha_lowest <= 0 for i in instances)
    log(f"wrote {len(instances)} instances ({unsat} unsat, {hard} of them not proven by alpha-CROWN) "
        f"to {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
