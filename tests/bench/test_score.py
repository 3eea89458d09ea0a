"""Scoring on a hand-made results file whose score is worked out by hand, and the report and
cactus plot drawn from it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from verifier.bench.cli import main as bench_main
from verifier.bench.plot import solve_times
from verifier.bench.results import read_results
from verifier.bench.score import tally

HAND_MADE = """tool,benchmark,onnx,vnnlib,status,time,expected,correct,timeout,witness,note
a,b1,n.onnx,p1.vnnlib,unsat,1.0,unsat,yes,10,,
a,b1,n.onnx,p2.vnnlib,sat,2.0,sat,yes,10,valid,
a,b1,n.onnx,p3.vnnlib,unsat,3.0,sat,no,10,,
a,b1,n.onnx,p4.vnnlib,timeout,10.0,unsat,,10,,
a,b2,m.onnx,q1.vnnlib,unsat,4.0,unknown,,10,,
a,b2,m.onnx,q2.vnnlib,sat,1.5,unknown,yes,10,valid,
b,b1,n.onnx,p1.vnnlib,sat,0.5,unsat,no,10,invalid,forged
b,b1,n.onnx,p2.vnnlib,sat,0.5,sat,yes,10,valid,
b,b1,n.onnx,p3.vnnlib,error,0.1,sat,,10,,crash
b,b1,n.onnx,p4.vnnlib,unsat,6.0,unsat,yes,10,,
b,b2,m.onnx,q1.vnnlib,sat,2.0,unknown,yes,10,valid,
b,b2,m.onnx,q2.vnnlib,unknown,1.0,unknown,,10,,
"""


def test_hand_made_results_score_as_worked_out(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(HAND_MADE)
    table = tally(read_results(path))
    # tool a: b1 has 2 correct (p1, p2) and 1 wrong (p3): 20 - 150 = -130; on b2, q1's unsat
    # meets tool b's valid witness (wrong: -150) and q2's sat is valid (+10): -140
    assert (table[("a", "b1")].correct, table[("a", "b1")].wrong, table[("a", "b1")].score) == (2, 1, -130)
    assert (table[("a", "b2")].correct, table[("a", "b2")].wrong, table[("a", "b2")].score) == (1, 1, -140)
    assert table[("a", "all")].score == -270
    # tool b: b1 has p2, p4 correct and the invalid witness p1 wrong: 20 - 150; b2: q1 valid: +10
    assert table[("b", "b1")].score == -130 and table[("b", "b2")].score == 10 and table[("b", "all")].score == -120
    assert table[("b", "b1")].error == 1 and table[("a", "b1")].timeout == 1
    assert table[("a", "all")].mean_solved_time == (1.0 + 2.0 + 1.5) / 3
    assert solve_times(read_results(path)) == {"a": [1.0, 1.5, 2.0], "b": [0.5, 2.0, 6.0]}


def test_report_and_cactus_plot(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(HAND_MADE)
    report = tmp_path / "report.md"
    assert bench_main(["report", str(path), "--out", str(report)]) == 0
    text = report.read_text()
    assert "| a | **all** | 6 |" in text and "| -270 |" in text and "forged" in text and "crash" in text
    plot = tmp_path / "cactus.png"
    assert bench_main(["plot", str(path), "--out", str(plot)]) == 0
    image = matplotlib.image.imread(plot)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert bench_main(["plot", str(tmp_path / "none.csv"), "--out", str(plot)]) == 3
