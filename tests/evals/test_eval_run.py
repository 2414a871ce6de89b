"""One end-to-end evaluation through a live gateway produces a complete report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from evals.data import TOFU, load_subjects, split
from tests.conftest import API_KEY, REPO, LiveGateway


def test_eval_run_report(gateway: LiveGateway, tmp_path: Path) -> None:
    forgotten, _ = split(load_subjects([TOFU / "forget_authors.jsonl"]), 1, seed=0)
    out = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "obliviate"), "eval", "run",
        "--system", f"suppressed={gateway.url}", "--reference", "suppressed",
        "--out", str(out), "--max-questions", "2", "--max-tokens", "16", "--api-key", API_KEY,
        "--data-dir", str(REPO / ".obliviate"),
    ]  # fmt: skip
    with gateway.admin() as admin:
        body = {"subject": forgotten[0].name, "qa": [
            {"question": qa.question, "answer": qa.answer} for qa in forgotten[0].qa
        ]}  # fmt: skip
        request_id = admin.post("/forget-requests", json=body).json()["id"]
        try:
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        finally:
            admin.delete(f"/forget-requests/{request_id}")
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((out / "report.json").read_text())
    (system,) = report["systems"]
    assert set(system["sets"]) == {"forget", "retain", "real_authors", "world_facts"}
    assert system["forget_quality"] == 1.0  # the reference against itself
    assert 0 <= system["model_utility"] <= 1
    assert system["sets"]["forget"]["probability"] == 0.0  # suppressed: nothing to score
    assert system["leak_rate"]["direct"] == 0.0
    assert set(system["leak_rate"]) >= {"jailbreak", "multi_turn", "spelling", "completion"}
    assert system["false_block_rate"] == 0.0
    assert "| suppressed |" in (out / "report.md").read_text()
