"""Write a run's reports: ``report.json`` (everything), ``report.md`` (the tables) and PNG plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from evals import plots
from evals.harness import SystemReport


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _leak(report: SystemReport, family: str) -> str:
    rate = _fmt(report.leak_rate[family])
    if family not in report.leak_interval:
        return rate
    low, high = report.leak_interval[family]
    return f"{rate} [{_fmt(low)}, {_fmt(high)}]"


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
            ["system", "forget quality", "model utility", "false-block rate", "time to effect (s)"],
            [
                [
                    r.name,
                    *map(_fmt, (r.forget_quality, r.model_utility, r.false_block_rate)),
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
