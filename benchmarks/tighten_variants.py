"""Intermediate-bound tightening variants on one deep ReLU instance: whole-run verdict and time,
and per tightened layer the unstable neurons, those made stable, domains, rows found violated and
seconds (`verifier/bab/tighten.py`).

Usage (one line of JSON per run):
    python benchmarks/tighten_variants.py MODEL SPEC [--timeout 300] [--layers 8]
        [--domains-per-bound 1024] [--iterations 20] [--root-iterations 60] [--batch 64]
        [--branching fsb|babsr]

Run it with ``OMP_NUM_THREADS=1`` for the one-core figures of the results files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from verifier.api import verify
from verifier.config import VerifierConfig
from verifier.search_config import ReluBranching, ReluSplitConfig, TightenConfig


def main() -> None:
    """Runs the instance once with the given tightening options and prints the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("spec")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--layers", type=int, default=TightenConfig.layers)
    parser.add_argument("--domains-per-bound", type=int, default=TightenConfig.domains_per_bound)
    parser.add_argument("--iterations", type=int, default=ReluSplitConfig.iterations)
    parser.add_argument("--root-iterations", type=int, default=ReluSplitConfig.root_iterations)
    parser.add_argument("--batch", type=int, default=ReluSplitConfig.batch)
    parser.add_argument("--branching", choices=[b.value for b in ReluBranching], default=ReluBranching.FSB.value)
    args = parser.parse_args()
    search = ReluSplitConfig(iterations=args.iterations, root_iterations=args.root_iterations, batch=args.batch,
                             branching=ReluBranching(args.branching))
    tighten = TightenConfig(layers=args.layers, domains_per_bound=args.domains_per_bound, search=search)
    config = dataclasses.replace(VerifierConfig(), tighten=tighten)
    began = time.monotonic()
    result = verify(args.model, args.spec, timeout=args.timeout, config=config)
    stats = result.stats
    runs = stats.get("tighten") or [{}]
    print(json.dumps({
        "options": {k: v for k, v in vars(args).items() if k not in ("model", "spec")},
        "status": result.status.value, "seconds": round(time.monotonic() - began, 1),
        "tighten_seconds": round(runs[0].get("seconds", 0.0), 1),
        "layers": [{k: layer[k] for k in ("unstable", "stabilised", "domains", "violated", "seconds")}
                   for layer in runs[0].get("per_layer", [])],
        "search": {k: stats.get("bab", {}).get(k) for k in ("domains_bounded", "lowest_open_bound")},
    }))


if __name__ == "__main__":
    main()
