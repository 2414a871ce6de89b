"""A run folder gets report.json, report.md and PNG plots from hand-made system reports."""

from __future__ import annotations

import json
from pathlib import Path

from evals import report
from evals.harness import SetScores, SystemReport


def test_report_files(tmp_path: Path) -> None:
    sets = {"forget": SetScores(0.9, 0.8, 0.4, 20), "retain": SetScores(0.7, 0.6, 0.5, 200)}
    reports = [
        SystemReport("target", sets, [0.2], {"direct": 1.0, "leet": 0.5}, 0.0, 0.01, 0.6),
        SystemReport("stack", sets, [0.9], {"direct": 0.0, "leet": 0.05}, 0.01, 0.9, 0.6, 0.02),
    ]
    reports[1].leak_interval = {"direct": (0.0, 0.1), "leet": (0.01, 0.2)}
    report.write(tmp_path, reports, {"title": "forget 1"})
    payload = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in payload["systems"]] == ["target", "stack"]
    assert payload["systems"][1]["time_to_effect_s"] == 0.02
    markdown = (tmp_path / "report.md").read_text()
    assert "| stack | 0.9 | 0.6 | 0.01 | 0.02 |" in markdown
    assert "| leet | 0.5 | 0.05 [0.01, 0.2] |" in markdown  # a row per family
    for plot in ("summary.png", "leaks.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
