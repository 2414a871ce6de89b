"""Write a run's reports: ``report.json`` (everything), ``report.md`` (the tables) and PNG plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from evals import metrics, plots
from evals.harness import SystemReport


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _with(value: float | None, interval: tuple[float, float] | None) -> str:
    """A value and its 95 % interval, where there is one."""
    if interval is None:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _recovered(after: list[float], before: list[float], top: list[float]) -> str:
    """An attack's recovery share (``metrics.gap_closed``) with its 95 % interval."""
    return _with(metrics.gap_closed(after, before, top),
                 metrics.gap_closed_interval(after, before, top))  # fmt: skip


def _leak(report: SystemReport, family: str) -> str:
    return _with(report.leak_rate[family], report.leak_interval.get(family))


def write(run_dir: Path, reports: list[SystemReport], meta: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "systems": [asdict(r) for r in reports]}
    (run_dir / "report.json").write_text(json.dumps(payload, indent=2))

    sets = list(reports[0].sets)
    families = list(reports[0].leak_rate)
    lines = [
        f"# Evaluation: {meta.get('title', 'run')}",
        "",
        *_table(
            [
                "system",
                "forget quality",
                "model utility [95 % CI]",
                "false-block rate [95 % CI]",
                "time to effect (s)",
            ],
            [
                [
                    r.name,
                    _fmt(r.forget_quality),
                    _with(r.model_utility, r.utility_interval),
                    _with(r.false_block_rate, r.false_block_interval),
                    _fmt(r.time_to_effect_s),
                ]
                for r in reports
            ],
        ),
        "",
        "Probability / ROUGE-L recall / truth-ratio statistic per set:",
        "",
        *_table(
            ["system", *sets],
            [
                [
                    r.name,
                    *(
                        f"{_fmt(s.probability)} / {_fmt(s.rouge)} / {_fmt(s.truth_ratio)}"
                        for s in r.sets.values()
                    ),
                ]
                for r in reports
            ],
        ),
        "",
        "Leak rate on the forget set per attack family [95 % Wilson interval]:",
        "",
        *_table(
            ["family", *(r.name for r in reports)],
            [[f, *(_leak(r, f) for r in reports)] for f in families],
        ),
        "",
        "![summary](summary.png) ![leaks](leaks.png)",
        "",
    ]
    (run_dir / "report.md").write_text("\n".join(lines))
    plots.write(run_dir, reports)
