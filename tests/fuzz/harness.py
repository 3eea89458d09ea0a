"""Runs fuzz cases end to end: writes the case's files, runs the CLI (forked, or as a real
process), checks the invariants of :mod:`runner` and the verdict oracles of :mod:`oracle`,
and saves every failing case (input files, command line, outputs) for its reproduction.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cases import ACAS_QUICK_SPEC, TINY_BASE_SPECS, TINY_MODEL_BYTES, Case, describe
from .onnx_cases import ACAS_MODEL
from .oracle import SpecOracle, Verdict, check_sat, check_unsat
from .runner import ROOT, ForkServer, Outcome, check_invariants, run_subprocess

SUBPROCESS_STARTUP = 30.0
"""Seconds allowed for interpreter and torch start-up in subprocess mode (a loaded 2-core box)."""
_ASSIGNMENT = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


@dataclass
class Record:
    """What one case did and what was wrong with it."""

    category: str
    label: str
    expect: str
    mode: str
    code: int | None
    signal: int | None
    wall: float
    verdict: str | None
    killed: bool
    oracle: str  # "-" (no sat/unsat verdict), "checked", "failed", "none", "error"
    oracle_detail: str = ""
    violations: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    saved: str = ""

    def to_json(self) -> dict[str, Any]:
        """A plain dictionary."""
        return asdict(self)


class Harness:
    """A fork server plus a scratch folder; :meth:`run` executes one :class:`Case`."""

    def __init__(self, workdir: Path, failures: Path | None = None, seed: int = 0, tag: str = "") -> None:
        """``failures``: where failing cases are saved (not saved when None); ``seed``: of the
        oracle's sampling; ``tag``: prefix of saved case names (one per parallel harness)."""
        self.workdir = workdir
        self.failures = failures
        self.seed = seed
        self.tag = tag
        self.count = itertools.count()
        workdir.mkdir(parents=True, exist_ok=True)
        self.models = {"acas": ACAS_MODEL, "tiny": workdir / "tiny.onnx"}
        self.models["tiny"].write_bytes(TINY_MODEL_BYTES)
        self.server = ForkServer(self._warmups())
        self.restarts = 0

    def _warmups(self) -> list[list[str]]:
        """Two runs that touch every stage (proof, attack, witness check) once."""
        acas_spec, tiny_spec = self.workdir / "warm_acas.vnnlib", self.workdir / "warm_tiny.vnnlib"
        acas_spec.write_text(ACAS_QUICK_SPEC)
        tiny_spec.write_text(TINY_BASE_SPECS["tiny_sat.vnnlib"])
        return [[str(ACAS_MODEL), str(acas_spec), "--timeout", "5", "--json"],
                [str(self.models["tiny"]), str(tiny_spec), "--timeout", "5", "--json"]]

    def close(self) -> None:
        """Stops the fork server."""
        self.server.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def materialise(self, case: Case, folder: Path) -> tuple[list[str], Path]:
        """Writes the case's files into ``folder``; returns (argv, model path)."""
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(case.model, bytes):
            model = folder / "model.onnx"
            model.write_bytes(case.model)
        else:
            model = self.models[case.model]
        spec = folder / "spec.vnnlib"
        spec.write_bytes(case.spec)
        options = [o.replace("{dir}", str(folder)) for o in case.options]
        return [str(model), str(spec), *options], model

    def run(self, case: Case) -> Record:
        """Runs one case and judges it; saves it when it fails."""
        number = next(self.count)
        folder = self.workdir / f"case-{number}"
        argv, model = self.materialise(case, folder)
        if case.subprocess:
            outcome = run_subprocess(argv, case.limit + SUBPROCESS_STARTUP, case.sigint_after)
        else:
            if self.server.process.poll() is not None:  # a server that died is replaced
                self.server = ForkServer(self._warmups())
                self.restarts += 1
            outcome = self.server.run(argv, case.limit, case.sigint_after)
        violations = check_invariants(outcome, case.expect, case.timeout,
                                      SUBPROCESS_STARTUP if case.subprocess else 0.0, case.sigint_after is not None)
        verdict = judge(case, outcome, model, folder, self.seed + number)
        if verdict.status == "failed":
            violations.append(f"oracle: {verdict.detail}")
        record = Record(case.category, case.label, case.expect.value, outcome.mode, outcome.code, outcome.signal,
                        round(outcome.wall, 4), outcome.verdict(), outcome.killed, verdict.status,
                        verdict.detail, violations, outcome.stderr[-400:])
        if violations and self.failures is not None:
            record.saved = str(self.save(case, outcome, record, folder, number))
        shutil.rmtree(folder, ignore_errors=True)
        return record

    def save(self, case: Case, outcome: Outcome, record: Record, folder: Path, number: int) -> Path:
        """Copies a failing case's inputs, command and outputs under ``failures/CATEGORY/``."""
        assert self.failures is not None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", case.label)[:60]
        target = self.failures / case.category / f"{self.tag}{number:05d}-{slug}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "spec.vnnlib", target / "spec.vnnlib")
        model = target / "model.onnx"
        if case.model == "acas":
            model = ACAS_MODEL
        else:
            shutil.copy(self.models["tiny"] if case.model == "tiny" else folder / "model.onnx", model)
        options = [o.replace("{dir}", str(target)) for o in case.options]
        command = shlex.join(["verify", _relative(model), _relative(target / "spec.vnnlib"), *options])
        if case.sigint_after is not None:
            command += f"   # then Ctrl-C (SIGINT to the process group) after {case.sigint_after:.2f} s"
        (target / "command.txt").write_text(command + "\n")
        (target / "stdout.txt").write_text(outcome.stdout)
        (target / "stderr.txt").write_text(outcome.stderr)
        (target / "record.json").write_text(json.dumps({**record.to_json(), "case": describe(case),
                                                        "command": command}, indent=2) + "\n")
        return target


def _relative(path: Path) -> str:
    """A path relative to the repository root where possible (commands run from there)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def counterexample(outcome: Outcome, folder: Path) -> tuple[list[float], list[float]] | None:
    """(x, y) of a ``sat`` answer: from ``--json``, else the text output, else ``--out``."""
    payload = outcome.payload()
    if payload is not None:
        cex = payload.get("counterexample")
        if isinstance(cex, dict):
            return [float(v) for v in cex.get("x", [])], [float(v) for v in cex.get("y", [])]
        return None
    texts = [outcome.stdout] + [p.read_text() for p in folder.glob("result.txt")]
    for text in texts:
        values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
        for kind, index, value in _ASSIGNMENT.findall(text):
            values[kind][int(index)] = float(value)
        if values["X"]:
            return ([values["X"][i] for i in sorted(values["X"])], [values["Y"][j] for j in sorted(values["Y"])])
    return None


def judge(case: Case, outcome: Outcome, model: Path, folder: Path, seed: int) -> Verdict:
    """The oracle's finding on a ``sat``/``unsat`` verdict ("-" for any other outcome)."""
    verdict = outcome.verdict()
    if verdict not in ("sat", "unsat"):
        return Verdict("-")
    text = case.spec_text
    if text is None:
        return Verdict("none", "the property is not UTF-8")
    try:
        spec = SpecOracle(text)
    except Exception as exc:
        return Verdict("none", f"z3 cannot read the property: {exc}"[:200])
    try:
        if verdict == "sat":
            cex = counterexample(outcome, folder)
            if cex is None:
                return Verdict("failed", "sat printed without a counterexample")
            return check_sat(spec, model, *cex)
        return check_unsat(spec, model, seed)
    except Exception as exc:  # a bug of the oracle itself: counted apart, never a pass
        return Verdict("error", f"{type(exc).__name__}: {exc}"[:300])
