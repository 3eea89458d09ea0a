"""Verifiers as command templates: ``NAME='COMMAND {onnx} {vnnlib} {timeout} {result}'``.

The template is split like a shell command line (no shell runs it) and each word is filled in
with the instance's absolute paths, its timeout in seconds and the path of the VNN-COMP result
file the tool must write. Our own verifier is the default tool.
"""

from __future__ import annotations

import shlex
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from verifier.errors import InputError

PLACEHOLDERS = ("onnx", "vnnlib", "timeout", "result")
DEFAULT_TOOL = "verifier"


@dataclass(frozen=True)
class Tool:
    """A verifier run through a command template (see the module docstring).

    Attributes:
        name: the name recorded in the results (letters, digits, ``_.-``).
        template: the command line with placeholders.
        json_stats: the tool prints one JSON object as its last stdout line (our own CLI with
            ``--json``); its ``stats`` go to the JSON-lines file.
    """

    name: str
    template: str
    json_stats: bool = False

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_.-" for c in self.name):
            raise InputError(f"--tool {self.name!r}: the name may hold letters, digits and _.- only")
        words = self.words()
        if not words:
            raise InputError(f"--tool {self.name}: empty command")
        fields = {f for w in words for _, f, _, _ in string.Formatter().parse(w) if f is not None}
        unknown = fields - set(PLACEHOLDERS)
        if unknown:
            raise InputError(f"--tool {self.name}: unknown placeholder(s) {sorted(unknown)}; "
                             f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if "result" not in fields:
            raise InputError(f"--tool {self.name}: the template must pass {{result}}, the result file to write")

    def words(self) -> list[str]:
        try:
            return shlex.split(self.template)
        except ValueError as exc:
            raise InputError(f"--tool {self.name}: {exc}") from None

    def command(self, onnx: Path, vnnlib: Path, timeout: float, result: Path) -> list[str]:
        """The argument vector for one instance."""
        values = {"onnx": str(onnx.resolve()), "vnnlib": str(vnnlib.resolve()), "timeout": f"{timeout:g}",
                  "result": str(result.resolve())}
        return [w.format(**values) for w in self.words()]


def parse_tool(text: str, verifier_options: str = "") -> Tool:
    """A tool from ``NAME=TEMPLATE``, or ``verifier``: our own (with ``verifier_options``)."""
    if text == DEFAULT_TOOL:
        return default_tool(verifier_options)
    name, sep, template = text.partition("=")
    if not sep:
        raise InputError(f"--tool {text!r}: expected NAME='COMMAND {{onnx}} {{vnnlib}} {{timeout}} {{result}}'")
    return Tool(name.strip(), template.strip())


def default_tool(extra: str = "", worker: Path | None = None) -> Tool:
    """Our verifier, in the interpreter running this (``extra``: more options for it); with
    ``worker``, each instance is a client of the warm worker at that socket
    (:mod:`verifier.warm`), which forks the run from a process that has imported everything;
    the client is :mod:`verifier.warm.client_script` under ``python -S`` (no site set-up).
    Without a worker, ``python -P -m verifier.cli``: the package the driver imported, never a
    ``verifier`` folder in the current directory (see :func:`verifier.warm.launch._command`)."""
    python = shlex.quote(sys.executable)
    if worker is None:
        launch = f"{python} -P -m verifier.cli"
    else:
        script = Path(__file__).resolve().parents[1] / "warm" / "client_script.py"
        launch = f"{python} -S {shlex.quote(str(script))} {shlex.quote(str(worker))}"
    template = f"{launch} {{onnx}} {{vnnlib}} --timeout {{timeout}} --out {{result}} --json {extra}"
    return Tool(DEFAULT_TOOL, template.strip(), json_stats=True)
