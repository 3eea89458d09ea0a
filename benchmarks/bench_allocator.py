"""The C allocator's settings (verifier.allocator) on one ACAS Xu search: time and page faults.

Runs the same instance in fresh processes, alternately without and with
:func:`verifier.allocator.keep_freed_memory` (one thread each, the default configuration,
``--seconds`` budget), and prints per run the verdict, wall time of ``verify_problem``, the
minor page faults it caused and the search's domain count (the same work in both modes: the
settings change no value). Whole-run times on a shared VM drift by 10-30 % between runs, so
the modes alternate and the page-fault counts, which do not drift, are printed beside them.

    python benchmarks/bench_allocator.py                      # 3_3 prop_2, 2 runs per mode
    python benchmarks/bench_allocator.py --network 4_2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from verifier.allocator import keep_freed_memory
applied = keep_freed_memory() if {keep} else False
from verifier.api import verify_problem
from verifier.config import default_config
from verifier.problem import load_problem
problem = load_problem({model!r}, {spec!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
result = verify_problem(problem, {seconds}, default_config("cpu", 0))
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
bab = result.stats.get("bab") or {{}}
print(json.dumps({{"applied": applied, "status": result.status.value, "seconds": seconds, "faults": faults,
                  "domains": bab.get("domains_bounded")}}))
"""


def _run(model: Path, spec: Path, seconds: float, keep: bool) -> dict:
    """One run in a fresh interpreter; its JSON line."""
    code = _RUN.format(root=str(ROOT), keep=keep, model=str(model), spec=str(spec), seconds=seconds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="3_3")
    parser.add_argument("--prop", default="prop_2")
    parser.add_argument("--seconds", type=float, default=150.0, help="the verification budget (default 150)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (default 2)")
    args = parser.parse_args()
    acas = ROOT / "benchmarks" / "acasxu"
    model = acas / f"onnx/ACASXU_run2a_{args.network}_batch_2000.onnx"
    spec = acas / f"vnnlib/{args.prop}.vnnlib"
    times: dict[bool, list[float]] = {False: [], True: []}
    print(f"# {args.network} {args.prop}, budget {args.seconds:g} s, one thread")
    print("| settings | verdict | seconds | minor page faults | domains bounded |")
    print("|---|---|---|---|---|")
    for _ in range(args.repeats):
        for keep in (False, True):
            found = _run(model, spec, args.seconds, keep)
            times[keep].append(found["seconds"])
            label = "kept (keep_freed_memory)" if found["applied"] else "glibc defaults"
            print(f"| {label} | {found['status']} | {found['seconds']:.1f} | {found['faults']} | {found['domains']} |",
                  flush=True)
    default, kept = statistics.median(times[False]), statistics.median(times[True])
    print(f"\nmedian seconds: defaults {default:.1f}, kept {kept:.1f} ({kept / default:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
