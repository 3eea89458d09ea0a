"""Fuzz cases by category, as hypothesis strategies shared by the CI slice and the campaign.

A :class:`Case` names a model and a property (the bundled ACAS Xu network, the tiny MLP of
``onnx_cases``, or mutated bytes of either), the options after them, what its construction
requires of the answer (:class:`~tests.fuzz.runner.Expect`) and how to run it. Options may
hold ``{dir}``, the case's own scratch folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import strategies as st

from . import onnx_cases, vnnlib_mutations
from .runner import Expect
from .vnnlib_cases import ACAS, TINY, Target, invalid_spec, valid_spec

ACAS_TIMEOUT, TINY_TIMEOUT = 1.0, 1.0
HARD_LIMIT_SLACK = 4.0
"""A run is killed this long after its ``--timeout`` (and counted as hung)."""
NO_TIMEOUT_LIMIT = 60.0
"""Hard limit of runs without a finite ``--timeout``."""


def _acas_small_box(radius: str = "0.001") -> str:
    """ACAS Xu property 3's output condition on a small box inside its region (proven fast)."""
    centre = [Decimal("-0.301041984"), Decimal("0"), Decimal("0.49669"), Decimal("0.4"), Decimal("0.4")]
    lines = [f"(declare-const {v}_{i} Real)" for v in "XY" for i in range(5)]
    for i, c in enumerate(centre):
        lines += [f"(assert (>= X_{i} {c - Decimal(radius)}))", f"(assert (<= X_{i} {c + Decimal(radius)}))"]
    lines += [f"(assert (<= Y_0 Y_{j}))" for j in range(1, 5)]
    return "\n".join(lines) + "\n"


ACAS_QUICK_SPEC = _acas_small_box()
ACAS_BASE_SPECS = {p.name: p.read_text() for p in vnnlib_mutations.ACAS_SPECS}
TINY_BASE_SPECS = vnnlib_mutations.TINY_SPECS
TINY_MODEL_BYTES = onnx_cases.tiny_model().SerializeToString()
ACAS_MODEL_BYTES = onnx_cases.ACAS_MODEL.read_bytes()


@dataclass(frozen=True)
class Case:
    """One run of ``verify MODEL SPEC OPTIONS``.

    ``model``: "acas", "tiny" (the unmodified models) or the bytes of a mutated model;
    ``spec``: the property's bytes.
    """

    category: str
    label: str
    model: str | bytes
    spec: bytes
    options: tuple[str, ...]
    expect: Expect
    timeout: float | None  # the finite positive --timeout given (checked), else None
    sigint_after: float | None = None
    subprocess: bool = False

    @property
    def limit(self) -> float:
        """Seconds after which the harness kills the run."""
        return NO_TIMEOUT_LIMIT if self.timeout is None else self.timeout + HARD_LIMIT_SLACK

    @property
    def spec_text(self) -> str | None:
        """The property as text (None if it is not UTF-8)."""
        try:
            return self.spec.decode("utf-8")
        except UnicodeDecodeError:
            return None


def _target_of(model: str) -> Target:
    return ACAS if model == "acas" else TINY


def _timeout_of(model: str) -> float:
    return ACAS_TIMEOUT if model == "acas" else TINY_TIMEOUT


@st.composite
def output_options(draw: st.DrawFn, timeout: float) -> tuple[str, ...]:
    """--timeout, and --json (mostly) or text with or without --out."""
    mode = draw(st.sampled_from(["json", "json", "json", "text", "text-out", "json-out"]))
    options = ["--timeout", f"{timeout:g}"]
    options += ["--json"] if mode.startswith("json") else []
    options += ["--out", "{dir}/result.txt"] if mode.endswith("-out") else []
    return tuple(options)


@st.composite
def grammar_case(draw: st.DrawFn, category: str, model: str, extreme: bool = False) -> Case:
    """A property from the grammar for ``model`` ("acas" or "tiny")."""
    text, expect, label = draw(valid_spec(_target_of(model), extreme))
    timeout = _timeout_of(model)
    return Case(category, label, model, text.encode(), draw(output_options(timeout)), expect, timeout)


@st.composite
def invalid_case(draw: st.DrawFn) -> Case:
    """A grammar property with one defect (must give exit 3)."""
    model = draw(st.sampled_from(["tiny", "tiny", "acas"]))
    text, expect, label = draw(invalid_spec(_target_of(model)))
    timeout = _timeout_of(model)
    return Case("vnnlib-invalid", label, model, text.encode(), draw(output_options(timeout)), expect, timeout)


@st.composite
def base_spec(draw: st.DrawFn) -> tuple[str, str, str]:
    """(model, file name, text) of a real property: an ACAS Xu one or one of the tiny model's."""
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(ACAS_BASE_SPECS)))
        return "acas", name, ACAS_BASE_SPECS[name]
    name = draw(st.sampled_from(sorted(TINY_BASE_SPECS)))
    return "tiny", name, TINY_BASE_SPECS[name]


@st.composite
def mutated_spec_case(draw: st.DrawFn, category: str, mutators: tuple[str, ...]) -> Case:
    """A real property with one random mutation."""
    model, name, text = draw(base_spec())
    mutator = draw(st.sampled_from(mutators))
    data, expect = vnnlib_mutations.MUTATORS[mutator](text, draw(st.randoms(use_true_random=False)))
    timeout = _timeout_of(model)
    return Case(category, f"{mutator}:{name}", model, data, draw(output_options(timeout)), expect, timeout)


@st.composite
def deep_nesting_case(draw: st.DrawFn) -> Case:
    """10^4 to 10^5 levels of parentheses added to a real property."""
    model, name, text = draw(base_spec())
    depth = int(10 ** draw(st.floats(4.0, 5.0)))
    data, expect, form = vnnlib_mutations.deep_nesting(text, draw(st.randoms(use_true_random=False)), depth)
    timeout = _timeout_of(model)
    return Case("vnnlib-deep-nesting", f"{form}:{depth}:{name}", model, data, ("--timeout", f"{timeout:g}"),
                expect, timeout)


@st.composite
def onnx_case(draw: st.DrawFn, model: str) -> Case:
    """A mutated model with a property the unmutated model answers fast."""
    mutator = draw(st.sampled_from(sorted(onnx_cases.MUTATORS)))
    base = ACAS_MODEL_BYTES if model == "acas" else TINY_MODEL_BYTES
    data, expect = onnx_cases.MUTATORS[mutator](base, draw(st.randoms(use_true_random=False)))
    if model == "acas":
        spec_name, spec = "acas_small_box", ACAS_QUICK_SPEC
    else:
        spec_name = draw(st.sampled_from(sorted(TINY_BASE_SPECS)))
        spec = TINY_BASE_SPECS[spec_name]
    timeout = _timeout_of(model)
    return Case(f"onnx-mutate-{model}", f"{mutator}:{spec_name}", data, spec.encode(),
                draw(output_options(timeout)), expect, timeout)


TIMEOUT_VALUES = {"nan": Expect.USAGE, "NaN": Expect.USAGE, "-inf": Expect.USAGE, "-1": Expect.USAGE,
                  "0": Expect.USAGE, "-0": Expect.USAGE, "abc": Expect.USAGE, "": Expect.USAGE,
                  "0x10": Expect.USAGE, "inf": Expect.USAGE, "1e10": Expect.USAGE, "1e308": Expect.USAGE,
                  "1e-9": Expect.ANY, "0.001": Expect.ANY, "1e8": Expect.VALID}
OTHER_OPTIONS = {("--out", "{dir}/no-such-folder/sub/result.txt"): Expect.USAGE, ("--out", "{dir}"): Expect.USAGE,
                 ("--out", "{dir}/spec.vnnlib/result.txt"): Expect.USAGE, ("--seed", "abc"): Expect.USAGE,
                 ("--bab", "bogus"): Expect.USAGE, ("--device", "tpu"): Expect.USAGE,
                 ("--method", "smt"): Expect.VALID, ("--seed", "-5"): Expect.USAGE,
                 ("--seed", str(2**32)): Expect.USAGE}


@st.composite
def cli_case(draw: st.DrawFn) -> Case:
    """Odd command-line values on a property of the tiny model answered fast.

    ``--out`` paths stay inside the case's own folder (the harness runs as root: a bug that
    replaced ``--out /dev/full`` by a regular file once damaged the machine).
    """
    spec_name = draw(st.sampled_from(["tiny_small_box.vnnlib", "tiny_sat.vnnlib"]))
    spec = TINY_BASE_SPECS[spec_name].encode()
    json_flag = ("--json",) if draw(st.booleans()) else ()
    if draw(st.booleans()):
        value = draw(st.sampled_from(sorted(TIMEOUT_VALUES)))
        numeric = _finite_positive(value)
        return Case("cli-values", f"--timeout {value!r}", "tiny", spec, ("--timeout", value, *json_flag),
                    TIMEOUT_VALUES[value], numeric)
    option = draw(st.sampled_from(sorted(OTHER_OPTIONS)))
    return Case("cli-values", " ".join(option), "tiny", spec, (*option, "--timeout", f"{TINY_TIMEOUT:g}", *json_flag),
                OTHER_OPTIONS[option], TINY_TIMEOUT)


def _finite_positive(value: str) -> float | None:
    """The number a --timeout value means, when it is finite, positive and below a day."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < 86_400 else None


@st.composite
def sigint_case(draw: st.DrawFn) -> Case:
    """A Ctrl-C (SIGINT to the process group) in the middle of a run, at least 0.1 s after the
    fork: a signal in the first milliseconds lands in the harness's own set-up of the child
    (redirecting its files), before the CLI's ``main`` runs (1 case in the first 10,000-case
    campaign)."""
    after = draw(st.floats(0.1, 1.5))
    if draw(st.booleans()):
        spec = ACAS_BASE_SPECS["prop_3.vnnlib"].encode()
        return Case("sigint", f"prop_3 after {after:.2f}s", "acas", spec, ("--timeout", "3"), Expect.ANY, 3.0, after)
    spec = TINY_BASE_SPECS["tiny_box_or.vnnlib"].encode()
    return Case("sigint", f"tiny after {after:.2f}s", "tiny", spec, ("--timeout", "3", "--json"), Expect.ANY, 3.0,
                after)


CATEGORIES: dict[str, st.SearchStrategy[Case]] = {
    "vnnlib-grammar-acas": grammar_case("vnnlib-grammar-acas", "acas"),
    "vnnlib-grammar-tiny": grammar_case("vnnlib-grammar-tiny", "tiny"),
    "vnnlib-numeric-edge": st.sampled_from(["tiny", "tiny", "acas"]).flatmap(
        lambda m: grammar_case("vnnlib-numeric-edge", m, extreme=True)),
    "vnnlib-invalid": invalid_case(),
    "vnnlib-mutate-real": mutated_spec_case("vnnlib-mutate-real", tuple(
        m for m in vnnlib_mutations.MUTATORS if m != "leading-comments")),
    "vnnlib-comments": mutated_spec_case("vnnlib-comments", ("leading-comments",)),
    "vnnlib-deep-nesting": deep_nesting_case(),
    "onnx-mutate-acas": onnx_case("acas"),
    "onnx-mutate-tiny": onnx_case("tiny"),
    "cli-values": cli_case(),
    "sigint": sigint_case(),
}


E2E_TIMEOUT = 20.0
"""``--timeout`` of a case run as a real process: longer than start-up (torch's import takes
seconds), so that the input is read before the limit passes. A shorter limit may rightly end
in ``timeout`` before the input has been read, whatever the input."""


E2E_FIRST_SIGINT = 0.3
"""Earliest Ctrl-C in a real process: before that the interpreter itself is starting (our code
has not run yet, and Python prints its own KeyboardInterrupt traceback)."""


def _as_process(case: Case) -> Case:
    """``case`` as a real process: its finite ``--timeout`` raised to :data:`E2E_TIMEOUT`, a
    Ctrl-C no earlier than :data:`E2E_FIRST_SIGINT`."""
    options = list(case.options)
    timeout = case.timeout
    if timeout is not None and "--timeout" in options:
        timeout = max(timeout, E2E_TIMEOUT)
        options[options.index("--timeout") + 1] = f"{timeout:g}"
    sigint = None if case.sigint_after is None else max(case.sigint_after, E2E_FIRST_SIGINT)
    return replace(case, category="e2e-subprocess", label=f"{case.category}/{case.label}", subprocess=True,
                   options=tuple(options), timeout=timeout, sigint_after=sigint)


def e2e_case() -> st.SearchStrategy[Case]:
    """A case of any category, run as a real ``python -m verifier.cli`` process."""
    return st.sampled_from(sorted(CATEGORIES)).flatmap(lambda name: CATEGORIES[name]).map(_as_process)


CATEGORIES["e2e-subprocess"] = e2e_case()


def describe(case: Case) -> str:
    """A one-line summary."""
    model = case.model if isinstance(case.model, str) else f"<{len(case.model)} model bytes>"
    return f"[{case.category}] {case.label} model={model} options={' '.join(case.options)} expect={case.expect.value}"

