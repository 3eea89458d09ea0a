"""Refining passes that end at exact forms (``CrownConfig.form_end_inputs``) against passes that
walk on to the inputs (``form_end_inputs=0``), the same code otherwise: whole-pipeline time and
branch-and-bound domains per second on ACAS Xu instances that search and on dist_shift.

    python benchmarks/bench_form_ends.py [--root ../shared/benchmarks] [--timeout 120]
        [--out benchmarks/results/form_ends.md]

One thread, this process only; each instance runs once per setting, walking first. The
searches build their own CROWN options (defaults but for their fields), so the setting reaches
them through the ``CrownConfig`` those modules construct (patched here, nowhere else).
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import torch
from report import add_row, emit, header, instance_parser  # benchmarks/report.py

import verifier.bab.input_split
import verifier.bab.relu_bounding
import verifier.bab.relu_split
from verifier.api import verify_problem
from verifier.config import CrownConfig, default_config
from verifier.problem import load_problem

INSTANCES = [("acasxu", f"onnx/ACASXU_run2a_{net}_batch_2000.onnx", f"vnnlib/{prop}.vnnlib")
             for net, prop in [("1_9", "prop_7"), ("5_3", "prop_2"), ("3_3", "prop_2"), ("1_1", "prop_3"),
                               ("4_5", "prop_2")]]
INSTANCES += [("dist_shift", "onnx/mnist_concat.onnx", "vnnlib/index9830_delta0.13.vnnlib")]


def main() -> None:
    parser = instance_parser(__doc__, 120.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = header("Passes ending at exact forms vs walking to the inputs", f", timeout {args.timeout:g} s",
                   ["instance", "form_end_inputs", "verdict", "seconds", "domains bounded", "bounding s", "domains/s"])
    totals = {0: 0.0, 64: 0.0}
    for benchmark, onnx, vnnlib in INSTANCES:
        problem = load_problem(args.root / benchmark / onnx, args.root / benchmark / vnnlib)
        for ends in (0, 64):
            config = default_config("cpu", 0)
            config = replace(config, crown=replace(config.crown, form_end_inputs=ends))
            for module in (verifier.bab.input_split, verifier.bab.relu_bounding, verifier.bab.relu_split):
                module.CrownConfig = functools.partial(CrownConfig, form_end_inputs=ends)  # type: ignore[attr-defined]
            start = time.monotonic()
            result = verify_problem(problem, args.timeout, config)
            seconds = time.monotonic() - start
            totals[ends] += seconds
            bab = result.stats.get("bab", {})
            domains, bounding = bab.get("domains_bounded", 0), bab.get("seconds_bounding", 0.0)
            rate = domains / bounding if bounding else 0.0
            add_row(lines, f"{benchmark} {Path(onnx).stem} {Path(vnnlib).stem}", ends, result.status.value,
                    f"{seconds:.1f}", domains, f"{bounding:.1f}", f"{rate:.1f}")
    lines += ["", f"Total seconds: walking {totals[0]:.1f}, ending at forms {totals[64]:.1f}."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
