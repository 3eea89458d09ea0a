"""The command line under hostile input (issue 20): a parser hang that defeated ``--timeout``, two
wrong ``sat`` answers on extreme constants, command-line values, and Ctrl-C.

Each case runs the real ``main`` (in-process, or as a process where signals and time limits
matter) and checks the exit code from the README's table, the message, and that no traceback
or verdict appears where none may.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.cli import main

REPO = Path(__file__).resolve().parents[1]
ACAS = REPO / "benchmarks" / "acasxu"
MODEL = ACAS / "onnx" / "ACASXU_run2a_4_5_batch_2000.onnx"  # prop_3 proven in about a second
MODEL_P1 = ACAS / "onnx" / "ACASXU_run2a_1_8_batch_2000.onnx"  # prop_1 proven in a few seconds
PROP_1 = (ACAS / "vnnlib" / "prop_1.vnnlib").read_text()
PROP_3 = (ACAS / "vnnlib" / "prop_3.vnnlib").read_text()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.out, captured.err


def spec_file(tmp_path: Path, text: str, name: str = "spec.vnnlib") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_comment_semicolons_before_the_property_cannot_stall_the_timeout(capsys: pytest.CaptureFixture[str],
                                                                       tmp_path: Path) -> None:
    """26 semicolons (and eight realistic header lines) made the version regex backtrack for
    minutes while holding the GIL; now the header costs nothing and the verdict comes at once."""
    header = ";" * 26 + "\n" + "; author: x; date: y; license: MIT\n" * 8
    start = time.monotonic()
    code, out, _ = run(capsys, str(MODEL), spec_file(tmp_path, header + PROP_3), "--timeout", "30", "--json")
    assert time.monotonic() - start < 30 + 1
    assert (code, json.loads(out)["status"]) == (0, "unsat")


def test_a_constant_float64_made_nan_is_folded_exactly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``X_0 <= (- (+ 1e308 1e308) (+ 1e308 1e308))`` is ``X_0 <= 0`` in real arithmetic: with
    prop_1's ``X_0 >= 0.6`` no input is left, so the property holds (it was a wrong ``sat``)."""
    extra = "(assert (<= X_0 (- (+ 1e308 1e308) (+ 1e308 1e308))))\n"
    code, out, _ = run(capsys, str(MODEL_P1), spec_file(tmp_path, PROP_1 + extra), "--timeout", "20", "--json")
    assert (code, json.loads(out)["status"]) == (0, "unsat")


def test_the_issue_s_tiny_products_give_unsat(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """prop_1 with ``(>= (* 1e-200 1e-200 Y_0) (* 1e-200 1e-200 3.99...))``: float64 folding
    made the row ``0 <= 0`` and the answer a wrong ``sat``; exactly it is prop_1 itself."""
    text = PROP_1.replace("(assert (>= Y_0 3.991125645861615))",
                          "(assert (>= (* 1e-200 1e-200 Y_0) (* 1e-200 1e-200 3.991125645861615)))")
    code, out, _ = run(capsys, str(MODEL_P1), spec_file(tmp_path, text), "--timeout", "60", "--json")
    assert (code, json.loads(out)["status"]) == (0, "unsat")


def test_rows_scaled_below_float64_keep_their_meaning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """prop_3 with every output row multiplied by ``1e-200 * 1e-200`` (float64 folding made the
    rows ``0 <= 0`` and the answer ``sat``): the rows are scaled back exactly and settled with
    output bounds, and the proof goes through as for prop_3 itself."""
    scaled = PROP_3
    for j in range(1, 5):
        scaled = scaled.replace(f"(assert (<= Y_0 Y_{j}))",
                                f"(assert (<= (* 1e-200 1e-200 Y_0) (* 1e-200 Y_{j} 1e-200)))")
    assert scaled.count("1e-200") == 16
    code, out, _ = run(capsys, str(MODEL), spec_file(tmp_path, scaled), "--timeout", "30", "--json")
    assert (code, json.loads(out)["status"]) == (0, "unsat")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e10", "0", "-1", "abc", ""])
def test_bad_timeouts_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(MODEL), spec_file(tmp_path, PROP_3), "--timeout", value])
    captured = capsys.readouterr()
    assert caught.value.code == 2 and "--timeout" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("target", ["missing/result.txt", "."])
@pytest.mark.parametrize("spec_text", [PROP_3, "(assert"])
def test_an_unwritable_result_file_is_refused_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                              target: str, spec_text: str) -> None:
    """Before, a bad spec gave a traceback and a good one a full run and then a silent exit 4."""
    start = time.monotonic()
    with pytest.raises(SystemExit) as caught:
        main([str(MODEL), spec_file(tmp_path, spec_text), "--out", str(tmp_path / target)])
    captured = capsys.readouterr()
    assert caught.value.code == 2 and "--out" in captured.err and "Traceback" not in captured.err
    assert time.monotonic() - start < 1.0 and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5"])
def test_bad_seeds_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, seed: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(MODEL), spec_file(tmp_path, PROP_3), "--seed", seed])
    assert caught.value.code == 2 and "--seed" in capsys.readouterr().err


def test_bad_input_writes_error_to_the_result_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    code, stdout, err = run(capsys, str(MODEL), spec_file(tmp_path, "(assert"), "--out", str(out))
    assert code == 3 and stdout == "" and "spec.vnnlib:1:1" in err
    assert out.read_text() == "error\n"


@pytest.mark.parametrize("delay", [0.3, 1.0, 6.0])
def test_ctrl_c_ends_with_exit_130_and_no_traceback(tmp_path: Path, delay: float) -> None:
    """SIGINT through the console script's function during start-up (0.3 s, 1 s: the imports of
    the command line, onnx, numpy and torch) and during the search (6 s; 3_3 prop_2 is the
    hardest ACAS Xu instance, undecided after 60 s): exit 130, one ``error: interrupted`` line,
    no traceback, no verdict, no result file."""
    out = tmp_path / "result.txt"
    command = [sys.executable, "-c", "import sys; from verifier.entry import verify; sys.exit(verify())",
               str(ACAS / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx"), str(ACAS / "vnnlib" / "prop_2.vnnlib"),
               "--timeout", "120", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    os.kill(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and stderr.strip().endswith("error: interrupted")
    assert stdout == "" and not out.exists()


def test_a_result_file_that_is_a_device_is_written_not_replaced(tmp_path: Path) -> None:
    """``--out /dev/stdout`` (or a pipe): the answer goes into it; a rename over it would
    replace the device node by a regular file (as root, even ``/dev/null``)."""
    from verifier.report import write_vnncomp

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = subprocess.Popen(["cat", str(pipe)], stdout=subprocess.PIPE, text=True)
    write_vnncomp(pipe, None, error=True)
    assert reader.communicate(timeout=10)[0] == "error\n"
    assert pipe.is_fifo()


def test_a_reader_that_goes_away_leaves_the_verdict_and_its_exit_code(tmp_path: Path) -> None:
    """``verify ... | head -1``: standard output is a pipe nobody reads any more when the answer
    is printed. The verdict stands: its exit code (10, sat), the result file, and no error
    message or traceback (before: exit 4, "internal error", without a word)."""
    out = tmp_path / "result.txt"
    command = [sys.executable, "-m", "verifier.cli", str(ACAS / "onnx" / "ACASXU_run2a_2_1_batch_2000.onnx"),
               str(ACAS / "vnnlib" / "prop_2.vnnlib"), "--out", str(out)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the answer comes
    process = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    os.close(write_end)
    assert process.returncode == 10, process.stderr
    assert "Traceback" not in process.stderr and "error" not in process.stderr
    assert out.read_text().startswith("sat")
