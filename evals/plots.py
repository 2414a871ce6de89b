"""PNG plots of a run, beside its report: grouped bars per system (matplotlib, no display needed).

write(run_dir, reports)   # -> run_dir/summary.png, run_dir/leaks.png
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in CI
import matplotlib.pyplot as plt

from evals.harness import SystemReport


def bars(path: Path, title: str, groups: list[str], series: dict[str, list[float]]) -> None:
    """One bar per (group, series), groups along x; values are rates or scores in [0, 1]."""
    width = 0.8 / max(1, len(series))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * len(series) ** 0.5), 4))
    for i, (name, values) in enumerate(series.items()):
        axes.bar([g + i * width for g in range(len(groups))], values, width, label=name)
    axes.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    axes.set_ylim(0, 1.05)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(run_dir: Path, reports: list[SystemReport]) -> None:
    bars(
        run_dir / "summary.png",
        "Forget quality, model utility, false-block rate",
        ["forget quality", "model utility", "false-block rate"],
        {
            r.name: [r.forget_quality or 0.0, r.model_utility or 0.0, r.false_block_rate]
            for r in reports
        },
    )
    families = list(reports[0].leak_rate)
    bars(
        run_dir / "leaks.png",
        "Leak rate on the forget set per attack family",
        families,
        {r.name: [r.leak_rate[f] for f in families] for r in reports},
    )


Band = tuple[float, float] | None


def curves(
    path: Path,
    title: str,
    xs: list[int] | list[float],
    series: dict[str, list[float | None]],
    log: bool = False,
    bands: dict[str, list[Band]] | None = None,
    xlabel: str = "forget requests k",
) -> None:
    """One line per series over ``xs`` (missing points are gaps), each with its confidence
    band where ``bands`` gives one (a shaded interval per x)."""
    figure, axes = plt.subplots(figsize=(6.4, 4))
    for name, values in series.items():
        line = axes.plot(xs, [math.nan if v is None else v for v in values], marker="o", label=name)
        band = (bands or {}).get(name)
        if band:
            low = [math.nan if b is None else b[0] for b in band]
            high = [math.nan if b is None else b[1] for b in band]
            axes.fill_between(xs, low, high, color=line[0].get_color(), alpha=0.2, linewidth=0)
    if log:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_xticks(xs)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
