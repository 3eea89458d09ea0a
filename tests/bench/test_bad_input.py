"""Bad input to ``verify bench`` (and ``verify soundness``, which shares its runner): files that
are not UTF-8, corrupt results files, unwritable results paths, instance files outside the
benchmark folder, bad option values, Ctrl-C and internal errors. Each gives its documented exit
code and one clear line on stderr naming the file (and line), never a traceback."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.bench.helpers import fake_template, make_benchmark
from verifier.bench.cli import main as bench_main
from verifier.bench.results import read_results
from verifier.cli import main as verify_main
from verifier.soundness.cli import main as soundness_main

Capsys = pytest.CaptureFixture[str]


def _bench(tmp_path: Path, behaviours: tuple[str, ...] = ("unsat",)) -> Path:
    return make_benchmark(tmp_path / "fakebench", list(behaviours))


def _argv(bench: Path, results: Path, *more: str) -> list[str]:
    return [str(bench), "--tool", fake_template(), "--results", str(results), "--quiet", *more]


def _error(capsys: Capsys) -> str:
    """The stderr of the last command, checked to hold no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# 1. files that are not UTF-8

@pytest.mark.parametrize("data, where", [
    (b"\xff\xfeo\x00n\x00n\x00x\x00", ":1:1: not UTF-8"),                        # UTF-16 with a BOM
    ("onnx/relu.onnx,vnnlib/unsat.vnnlib,5\nonnx/caf\u00e9.onnx,vnnlib/unsat.vnnlib,5\n".encode("latin-1"),
     ":2:9: not UTF-8"),
])
def test_instances_csv_that_is_not_utf8_is_bad_input(tmp_path: Path, capsys: Capsys, fake_log: Path,
                                                     data: bytes, where: str) -> None:
    bench = _bench(tmp_path)
    (bench / "instances.csv").write_bytes(data)
    assert verify_main(["bench", *_argv(bench, tmp_path / "r.csv")]) == 3
    err = _error(capsys)
    assert err.startswith(f"error: {bench / 'instances.csv'}{where}") and "save it as UTF-8" in err
    assert not fake_log.exists() and not (tmp_path / "r.csv").exists()


def test_expected_csv_that_is_not_utf8_is_bad_input(tmp_path: Path, capsys: Capsys, fake_log: Path) -> None:
    bench = _bench(tmp_path)
    (bench / "expected.csv").write_bytes("onnx,vnnlib,expected\nr\u00e9lu.onnx,x.vnnlib,sat\n".encode("latin-1"))
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 3
    assert f"error: {bench / 'expected.csv'}:2:2: not UTF-8" in _error(capsys)
    assert not fake_log.exists()


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, capsys: Capsys, fake_log: Path) -> None:
    bench = _bench(tmp_path)
    for name in ("instances.csv", "expected.csv"):
        (bench / name).write_bytes(b"\xef\xbb\xbf" + (bench / name).read_bytes())
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 0
    assert [(r.onnx, r.expected, r.correct) for r in read_results(tmp_path / "r.csv")] == [
        ("onnx/relu.onnx", "unsat", "yes")]


# 1. corrupt results files on resume (a half-written last line is dropped; anything else is refused)

def test_a_last_line_cut_inside_a_character_is_dropped_on_resume(tmp_path: Path, capsys: Capsys,
                                                                 fake_log: Path) -> None:
    bench = _bench(tmp_path, ("unsat", "sat_valid"))
    results = tmp_path / "r.csv"
    assert bench_main(_argv(bench, results, "--limit", "1")) == 0
    with results.open("ab") as handle:
        handle.write(b"fake,fakebench,onnx/relu.onnx,vnnlib/caf\xc3")  # cut inside a two-byte character
    with results.with_suffix(".jsonl").open("ab") as handle:
        handle.write(b'{"tool": "fake", "bench')
    assert bench_main(_argv(bench, results)) == 0
    assert sorted(r.vnnlib for r in read_results(results)) == ["vnnlib/sat_valid.vnnlib", "vnnlib/unsat.vnnlib"]


@pytest.mark.parametrize("suffix, garbage, where", [
    (".csv", b"fake,fakebench,onnx/relu.onnx,vnnlib/\xe9t\xe9.vnnlib,unsat,1.0,unsat,yes\n", ":3:"),
    (".csv", b"fake,fakebench,onnx/relu.onnx\n", ":3: malformed row"),
    (".csv", b'fake,fakebench,"onnx/relu.onnx,vnnlib/x,unsat,1.0,unsat,yes\n', ""),
    (".jsonl", b"\xff\xff\n", ":2:1: not UTF-8"),
    (".jsonl", b"{not json}\n", ":2: not a details line"),
    (".jsonl", b"[1, 2]\n", ":2: not a details line"),
])
def test_a_corrupt_results_file_is_refused_on_resume(tmp_path: Path, capsys: Capsys, fake_log: Path,
                                                     suffix: str, garbage: bytes, where: str) -> None:
    bench = _bench(tmp_path)
    results = tmp_path / "r.csv"
    assert bench_main(_argv(bench, results)) == 0
    with results.with_suffix(suffix).open("ab") as handle:
        handle.write(garbage)
    calls = fake_log.read_text()
    capsys.readouterr()
    assert bench_main(_argv(bench, results)) == 3
    err = _error(capsys)
    assert f"error: {results.with_suffix(suffix)}{where}" in err
    assert "delete the file or give another --results" in err and len(err.strip().splitlines()) == 1
    assert fake_log.read_text() == calls  # nothing ran


def test_plot_and_report_name_a_results_file_that_is_not_utf8(tmp_path: Path, capsys: Capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"tool,benchmark,onnx,vnnlib,status,time,expected,correct\n\xff\n")
    assert bench_main(["report", str(bad)]) == 3
    assert f"error: {bad}:2:1: not UTF-8" in _error(capsys)
    assert bench_main(["plot", str(bad), "--out", str(tmp_path / "p.png")]) == 3
    assert f"error: {bad}:2:1: not UTF-8" in _error(capsys)


# 2. results paths that cannot be written, refused before any instance runs

@pytest.mark.parametrize("where, message", [
    ("file/r.csv", "is a file, not a folder"),
    ("file/deeper/r.csv", "is a file, not a folder"),
    ("folder", "is a folder or special file"),
    ("folder.csv", "is a folder or special file"),  # its details file folder.jsonl is a folder
    ("r.jsonl", "must not end in .jsonl"),
])
def test_an_unwritable_results_path_is_refused_before_anything_runs(tmp_path: Path, capsys: Capsys,
                                                                    fake_log: Path, where: str,
                                                                    message: str) -> None:
    bench = _bench(tmp_path)
    (tmp_path / "file").write_text("in the way\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.jsonl").mkdir()
    assert bench_main(_argv(bench, tmp_path / where)) == 3
    err = _error(capsys)
    assert err.startswith("error: ") and str(tmp_path) in err and message in err and "--results" in err
    assert not fake_log.exists()


# 3. instance files outside the benchmark folder

@pytest.mark.parametrize("onnx", ["../outside/x.onnx", "onnx/../../outside/x.onnx", "/{tmp}/outside/x.onnx",
                                  "onnx/link.onnx", "onnx/unpacked.onnx"])
def test_instance_files_outside_the_benchmark_folder_are_refused(tmp_path: Path, capsys: Capsys,
                                                                 fake_log: Path, onnx: str) -> None:
    bench = _bench(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.onnx").write_bytes((bench / "onnx" / "relu.onnx").read_bytes())
    (bench / "onnx" / "link.onnx").symlink_to(outside / "x.onnx")
    (bench / "onnx" / "unpacked.onnx.gz").symlink_to(outside / "x.onnx")  # a .gz stored in its place
    onnx = onnx.replace("/{tmp}", str(tmp_path))
    with (bench / "instances.csv").open("a") as handle:
        handle.write(f"{onnx},vnnlib/unsat.vnnlib,5\n")
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 3
    err = _error(capsys)
    assert f"error: {bench / 'instances.csv'}:2: '{onnx}'" in err
    assert "instance files must lie inside the benchmark folder" in err
    assert not fake_log.exists()


@pytest.mark.parametrize("row, message", [(",vnnlib/unsat.vnnlib,5", "an empty file path"),
                                          ("onnx/relu.onnx,vnnlib/unsat.vnnlib,inf", "positive and finite"),
                                          ('"onnx/relu.onnx,vnnlib/unsat.vnnlib,5', "")])
def test_other_malformed_instance_rows_name_the_line(tmp_path: Path, capsys: Capsys, row: str,
                                                     message: str) -> None:
    bench = _bench(tmp_path)
    with (bench / "instances.csv").open("a") as handle:
        handle.write(row + "\n")
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 3
    err = _error(capsys)
    assert err.startswith(f"error: {bench / 'instances.csv'}:2") and message in err


def test_a_truncated_gz_instance_file_is_an_error_row_and_the_run_goes_on(tmp_path: Path, capsys: Capsys,
                                                                          fake_log: Path) -> None:
    bench = _bench(tmp_path, ("unsat", "sat_valid"))
    model = bench / "onnx" / "relu.onnx"
    (bench / "onnx" / "relu.onnx.gz").write_bytes(gzip.compress(model.read_bytes())[:-10])
    model.unlink()
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 0
    rows = read_results(tmp_path / "r.csv")
    assert [r.status for r in rows] == ["error", "error"] and "relu.onnx.gz: cannot unpack it" in rows[0].note
    assert sorted(p.name for p in (bench / "onnx").iterdir()) == ["relu.onnx.gz"]  # no partial file left


# 4. option values: usage errors before any work

@pytest.mark.parametrize("option, value", [
    ("--jobs", "0"), ("--jobs", "two"), ("--timeout-scale", "nan"), ("--timeout-scale", "inf"),
    ("--timeout-scale", "0"), ("--timeout-scale", "-1"), ("--grace", "nan"), ("--grace", "inf"),
    ("--grace", "-1"), ("--limit", "-1"), ("--memory-mb", "0"), ("--threads", "0"),
])
def test_bad_option_values_are_usage_errors(tmp_path: Path, capsys: Capsys, fake_log: Path,
                                            option: str, value: str) -> None:
    with pytest.raises(SystemExit) as stop:
        bench_main(_argv(_bench(tmp_path), tmp_path / "r.csv", option, value))
    assert stop.value.code == 2
    err = _error(capsys)
    assert f"argument {option}: must be a " in err and repr(value) in err
    assert not fake_log.exists() and not (tmp_path / "r.csv").exists()


def test_soundness_check_shares_the_option_checks(tmp_path: Path, capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        soundness_main(["check", str(tmp_path), "--jobs", "0"])
    assert stop.value.code == 2 and "argument --jobs: must be a positive integer" in _error(capsys)


def test_soundness_check_names_a_counterexamples_file_that_is_not_utf8(tmp_path: Path, capsys: Capsys) -> None:
    (tmp_path / "counterexamples.jsonl").write_bytes(b'{"onnx": "caf\xe9"}\n')
    assert soundness_main(["check", str(tmp_path), "--quiet"]) == 3
    assert f"error: {tmp_path / 'counterexamples.jsonl'}:1:14: not UTF-8" in _error(capsys)


# 5. and 6. Ctrl-C anywhere, internal errors: one line, no traceback

@pytest.mark.parametrize("target", ["verifier.bench.cli.select_instances", "verifier.bench.cli.score_table"])
def test_ctrl_c_outside_the_run_exits_130(tmp_path: Path, capsys: Capsys, fake_log: Path,
                                          monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    bench = _bench(tmp_path)

    def interrupt(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupt)
    assert bench_main(_argv(bench, tmp_path / "r.csv")) == 130
    assert _error(capsys).strip().splitlines()[-1] == "error: interrupted"


@pytest.mark.parametrize("command, target", [
    (["bench", "plot", "{results}", "--out", "{tmp}/p.png"], "verifier.bench.plot.cactus_plot"),
    (["bench", "report", "{results}"], "verifier.bench.report.markdown_report"),
    (["soundness", "validate", "{tmp}"], "verifier.soundness.validate.validate"),
    (["soundness", "check", "{tmp}"], "verifier.soundness.check.planted_keys"),
])
@pytest.mark.parametrize("exception, code, line", [
    (KeyboardInterrupt(), 130, "error: interrupted"),
    (RuntimeError("boom"), 4, "error: internal error: RuntimeError: boom (a bug: please report it)"),
])
def test_every_subcommand_has_an_error_boundary(tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch,
                                                command: list[str], target: str, exception: BaseException,
                                                code: int, line: str) -> None:
    results = tmp_path / "r.csv"
    results.write_text("tool,benchmark,onnx,vnnlib,status,time,expected,correct\n"
                       "fake,b,a.onnx,a.vnnlib,unsat,1.0,unsat,yes\n")

    def fail(*_args: object, **_kwargs: object) -> None:
        raise exception

    monkeypatch.setattr(target, fail)
    argv = [a.replace("{results}", str(results)).replace("{tmp}", str(tmp_path)) for a in command]
    assert verify_main(argv) == code
    assert _error(capsys).strip().splitlines()[-1] == line


def test_plot_and_report_outputs_that_cannot_be_written_are_bad_input(tmp_path: Path, capsys: Capsys) -> None:
    results = tmp_path / "r.csv"
    results.write_text("tool,benchmark,onnx,vnnlib,status,time,expected,correct\n"
                       "fake,b,a.onnx,a.vnnlib,unsat,1.0,unsat,yes\n")
    (tmp_path / "file").write_text("in the way\n")
    assert bench_main(["plot", str(results), "--out", str(tmp_path / "p.xyz")]) == 3
    assert "unknown image format '.xyz'" in _error(capsys)
    assert bench_main(["plot", str(results), "--out", str(tmp_path / "file" / "p.png")]) == 3
    assert f"error: --out {tmp_path / 'file' / 'p.png'}: cannot write it" in _error(capsys)
    assert bench_main(["report", str(results), "--out", str(tmp_path)]) == 3
    assert f"error: --out {tmp_path}: cannot write it" in _error(capsys)
