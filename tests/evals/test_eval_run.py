"""One end-to-end evaluation through a live gateway produces a complete report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from evals.cli import app
from evals.data import TOFU, load_subjects, split
from tests.conftest import ADMIN_TOKEN, API_KEY, REPO, LiveGateway


def test_eval_run_report(gateway: LiveGateway, tmp_path: Path) -> None:
    """The run files the forgotten subject itself (--suppress), times its effect, and a rerun
    of the same command resumes from the run folder without asking the gateway again (it is
    pointed at a closed port)."""
    forgotten, _ = split(load_subjects([TOFU / "forget_authors.jsonl"]), 1, seed=0)
    out = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "obliviate-eval"), "run",
        "--system", f"suppressed={gateway.url}", "--reference", "suppressed",
        "--suppress", "suppressed", "--admin-token", ADMIN_TOKEN,
        "--out", str(out), "--max-questions", "2", "--max-tokens", "16", "--api-key", API_KEY,
        "--data-dir", str(REPO / ".obliviate"),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        cache = out / "cache" / "suppressed.jsonl"
        answered = cache.read_text()
        closed = "http://127.0.0.1:9"
        rerun = [arg.replace(gateway.url, closed) for arg in command]
        again = subprocess.run(rerun, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert cache.read_text() == answered  # resumed: nothing asked twice
        assert again.stdout.replace(closed, gateway.url) == result.stdout
    finally:
        with gateway.admin() as admin:
            for record in admin.get("/forget-requests?limit=100").json()["data"]:
                if record["subject"] == forgotten[0].name and record["status"] != "revoked":
                    admin.delete(f"/forget-requests/{record['id']}")

    report = json.loads((out / "report.json").read_text())
    (system,) = report["systems"]
    assert set(system["sets"]) == {"forget", "retain", "real_authors", "world_facts"}
    assert system["forget_quality"] == 1.0  # the reference against itself
    assert 0 <= system["model_utility"] <= 1
    assert system["sets"]["forget"]["probability"] == 0.0  # suppressed: nothing to score
    assert system["leak_rate"]["direct"] == 0.0
    assert set(system["leak_rate"]) >= {
        "jailbreak",
        "multi_turn",
        "spelling",
        "completion",
        "best_of_n",
        "format_shift",
        "chain_of_clues",
        "guard_injection",
        "prefill",
        "json_field",
        "tool_call",
    }
    low, high = system["leak_interval"]["direct"]
    assert low == 0.0 < high < 1  # 0 of n leaked: an interval, not a point
    assert system["false_block_rate"] == 0.0
    assert 0 < system["time_to_effect_s"] < 5
    assert "| suppressed |" in (out / "report.md").read_text()
    assert (out / "summary.png").exists() and (out / "leaks.png").exists()

    # Some attack families only (a quick run), here all answered from the cache; in this
    # process, as the command's own process adds nothing the first runs did not test.
    runner = CliRunner()
    quick = runner.invoke(app, [*rerun[1:], "--family", "direct", "--family", "leet"])
    assert quick.exit_code == 0, (quick.exception, quick.output[-3000:])
    (system,) = json.loads((out / "report.json").read_text())["systems"]
    assert set(system["leak_rate"]) == {"direct", "leet"}
    unknown = runner.invoke(app, [*rerun[1:], "--family", "jailbrake"])
    assert unknown.exit_code == 2 and "jailbrake" in unknown.output
