"""Cactus plot: for each tool, the number of instances solved correctly within a time, against
that time (the curve of its sorted solve times)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from verifier.bench.results import ResultRow
from verifier.bench.score import rescore


def solve_times(rows: Sequence[ResultRow]) -> dict[str, list[float]]:
    """``tool -> sorted times`` of its correct answers (wrong and unscored answers are left out)."""
    times: dict[str, list[float]] = defaultdict(list)
    for row, verdict in zip(rows, rescore(rows), strict=True):
        times[row.tool]  # every tool gets a line, even with nothing solved
        if verdict == "yes":
            times[row.tool].append(row.time)
    return {tool: sorted(values) for tool, values in times.items()}


def cactus_plot(rows: Sequence[ResultRow], out: Path, title: str | None = None) -> None:
    """Writes the cactus plot of ``rows`` to ``out`` (format from its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tool, values in sorted(solve_times(rows).items()):
        ax.step(values, range(1, len(values) + 1), where="post", label=f"{tool} ({len(values)} solved)")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved correctly")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))  # 2 and 5 times a power of ten
    benchmarks = sorted({r.benchmark for r in rows})
    ax.set_title(title or f"{', '.join(benchmarks[:4])}{' ...' if len(benchmarks) > 4 else ''}: "
                 f"{len({(r.benchmark, r.onnx, r.vnnlib) for r in rows})} instances")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
