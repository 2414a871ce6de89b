"""The sequential experiment: its runner's handling of refused jobs, and end to end at toy
scale, on the real embedded model: 2 forget requests, removal jobs of 2 steps, 1 question per
subject, then the white-box attacks on its removal versions (``eval whitebox``: relearning,
8/4-bit quantisation, GCG of 2 steps). The gateway (LoRA on) serves the embedded model as the
target; its baseline arm stands in for the retain model.

The toy run is marked heavy (`make test-heavy`): about 15 minutes on 2 cores, mostly vLLM's CPU
LoRA path (3.4 s for an 8-token answer on an adapter, 1.2 s on the base with LoRA on, seen
here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from evals.sequential import REGIMES, Gateway, Sequential, SequentialConfig
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.evidence.leaks import wilson
from tests.conftest import ADMIN_TOKEN, REPO, LiveGateway


@pytest.mark.heavy
def test_sequential_toy_run(lora_gateway: LiveGateway, tmp_path: Path) -> None:
    weights = str(ensure_embedded_model(REPO / ".obliviate"))
    out = tmp_path / "sequential"
    command = [
        str(Path(sys.executable).parent / "obliviate-eval"), "sequential",
        "--url", lora_gateway.url, "--target", weights,
        "--reference", f"{lora_gateway.url}#baseline", "--reference-weights", weights,
        "--out", str(out), "--subjects", "2", "--batch-every", "2", "--param", "steps=2",
        "--max-questions", "1", "--max-per-set", "2", "--max-tokens", "8",
        "--data-dir", str(REPO / ".obliviate"),
    ]  # fmt: skip
    env = {**os.environ, "OBLIVIATE_ADMIN_TOKEN": ADMIN_TOKEN}
    admin = httpx.Client(
        base_url=f"{lora_gateway.url}/admin/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    routing = admin.get("/routing").json()
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=1200, env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads((out / "sequential.json").read_text())
        # Resumed: a second run redoes nothing (no new job, same results).
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                               env=env)  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads((out / "sequential.json").read_text())["results"] == report["results"]
        whitebox = [
            str(Path(sys.executable).parent / "obliviate-eval"), "whitebox", "--run", str(out),
            "--url", lora_gateway.url, "--target", weights, "--reference-weights", weights,
            "--relearn-questions", "2", "--gcg-questions", "1", "--gcg-steps", "2",
            "--gcg-candidates", "4", "--max-tokens", "8", "--data-dir", str(REPO / ".obliviate"),
        ]  # fmt: skip
        attacked = subprocess.run(whitebox, cwd=REPO, capture_output=True, text=True,
                                  timeout=1200, env=env)  # fmt: skip
        assert attacked.returncode == 0, attacked.stderr[-3000:]
    finally:
        admin.put("/routing", json=routing)
        versions = admin.get("/model-versions").json()["data"]
        for version in sorted(versions, key=lambda v: -int(v["id"].split("-")[1])):
            admin.delete(f"/model-versions/{version['id']}")
        for request in report_requests(out):
            admin.delete(f"/forget-requests/{request['id']}")
        admin.close()

    assert report["ks"] == [1, 2]
    for curve in report["curves"].values():
        assert set(curve) == set(REGIMES)
        assert all(len(points) == 2 for points in curve.values())  # one point per step
    jobs = report["state"]["jobs"]
    assert [j["k"] for j in jobs["removal-seq"]] == [1, 2] and len(jobs["removal-batch"]) == 1
    assert jobs["removal-seq"][1]["version"] != jobs["removal-batch"][0]["version"]
    for k in (1, 2):
        suppression = report["results"][f"{k}:suppression"]
        assert suppression["leak_rate"]["direct"] == 0.0  # the stack blocks every request so far
        assert suppression["mia_auc"] is None  # suppressed: no log-probabilities to attack
        assert report["results"][f"{k}:removal-seq"]["compute_s"] > 0
        assert 0 <= report["results"][f"{k}:hybrid"]["model_utility"] <= 1
    assert (
        report["results"]["1:hybrid"]["leak_rate"]
        == report["results"]["1:suppression"]["leak_rate"]
    )  # before the first batch the hybrid arm is the suppression arm
    assert report["state"]["requests"][0]["time_to_effect_s"] < 5
    markdown = (out / "report.md").read_text()
    assert "| 2 | removal-batch |" in markdown and "First k where utility" in markdown
    for plot in ("utility.png", "forget_quality.png", "leak.png"):
        assert (out / plot).stat().st_size > 0

    rows = json.loads((out / "whitebox" / "whitebox.json").read_text())["rows"]
    versions = ["removal-seq@k2", "removal-batch@k2"]
    attacks = ["none", "relearn", "int8", "int4", "gcg"]
    assert set(rows) == {
        "target:none", "retain:none", "retain:relearn", "target:gcg", "suppression:none",
        "suppression:gcg", *(f"{v}:{a}" for v in versions for a in attacks),
    }  # fmt: skip
    assert len(rows["removal-seq@k2:int4"]["replies"]) == 2  # every forgotten question
    assert len(rows["target:gcg"]["suffixes"]) == 1
    # The stack blocks the forgotten question with or without the suffix.
    assert rows["suppression:none"]["suppressed"] == rows["suppression:gcg"]["suppressed"] == [True]
    assert "| suppression | gcg | 1 |" in (out / "whitebox" / "report.md").read_text()


def report_requests(out: Path) -> list[dict]:
    state = out / "state.json"
    return json.loads(state.read_text())["requests"] if state.exists() else []


def _refusing_admin(request: httpx.Request) -> httpx.Response:
    if request.method == "POST" and request.url.path.endswith("/removal-jobs"):
        if b"fr_2" in request.content:
            return httpx.Response(201, json={"id": "rj_2", "status": "queued"})
        message = "lora_rank 128 > vllm_max_lora_rank 64: lower it, or raise the limit."
        return httpx.Response(400, json={"error": {"message": message, "code": "invalid"}})
    return httpx.Response(200, json={"id": "rj_2", "status": "failed", "error": "out of memory"})


def test_a_refused_or_failed_job_ends_its_regime(tmp_path: Path) -> None:
    """A removal job the gateway refuses (400: one job's rank past vLLM's limit) or that
    fails ends its regime at that step: the run goes on with the others, and the report says
    why. The admin API is an httpx MockTransport: no model or gateway is involved."""
    gateway = Gateway("http://gw", "token", "m", tmp_path, "http://ref", tmp_path, tmp_path)
    run = Sequential(tmp_path, SequentialConfig(subjects=2), gateway, [], [], {}, log=str)
    run.admin = httpx.Client(base_url="http://gw/admin/v1",
                             transport=httpx.MockTransport(_refusing_admin))  # fmt: skip
    run.state["requests"] = [{"id": "fr_1"}, {"id": "fr_2"}]

    run._train("removal-seq", 1, [1])
    run._train("removal-batch", 2, [2])

    assert run.ended == {
        "removal-seq": {"k": 1, "reason": "job refused (400): lora_rank 128 > "
                        "vllm_max_lora_rank 64: lower it, or raise the limit."},
        "removal-batch": {"k": 2, "reason": "job failed: out of memory"},
    }  # fmt: skip
    assert [r for r in REGIMES if run._running(r)] == ["suppression", "hybrid"]
    assert run.state["jobs"]["removal-batch"] == []  # a resumed run files it again
    assert run.write()["ended"] == run.ended
    report = (tmp_path / "report.md").read_text()
    assert "removal-seq ended at k = 1: job refused (400)" in report
    assert "removal-batch ended at k = 2: job failed: out of memory" in report


def test_the_report_names_each_regimes_crossings_with_intervals(tmp_path: Path) -> None:
    """Where utility falls under 95 % of the target's and the worst family leaks over 1 %, by
    the point and by its interval, in plain words, with the bands drawn (results made by hand:
    no model involved)."""
    gateway = Gateway("http://gw", "token", "m", tmp_path, "http://ref", tmp_path, tmp_path)
    config = SequentialConfig(subjects=3, regimes=("suppression",))
    run = Sequential(tmp_path, config, gateway, [], [], {}, log=str)
    run.admin.close()

    def result(utility: float, width: float, leaks: int, n: int) -> dict:
        return {"model_utility": utility, "utility_interval": [utility - width, utility + width],
                "leak_rate": {"direct": leaks / n, "json": 0.0},
                "leak_interval": {"direct": list(wilson([True] * leaks + [False] * (n - leaks))),
                                  "json": [0.0, 0.009]},
                "false_block_rate": 0.0, "false_block_interval": [0.0, 0.05],
                "forget_quality": 0.5, "mia_auc": None, "time_to_effect_s": 1.0,
                "compute_s": 0.0}  # fmt: skip

    run.results = {
        "0:target": {"model_utility": 0.5},
        "1:suppression": result(0.5, 0.01, 0, 400),  # keeps all, leaks nothing
        "2:suppression": result(0.47, 0.01, 2, 400),  # 0.94 of the target; interval reaches
        "3:suppression": result(0.40, 0.01, 40, 400),  # below, entirely; leaks 10 %
    }
    run.results["3:suppression"]["sets"] = {"hard_negatives": {"blocked": 0.05, "questions": 40}}
    payload = run.write()
    report = (tmp_path / "report.md").read_text()
    assert ("**suppression**: utility below 95% of the target's at k = 2 (the interval entirely "
            "past it from k = 3; reaching it from k = 2); worst attack family's leak above 1% at "
            "k = 3 (the interval entirely past it from k = 3; reaching it from k = 2)."
            ) in report  # fmt: skip
    assert "| 3 | suppression | 0.5 | 0.4 (0.39 .. 0.41) | 0.8 |" in report
    assert "| 0 (0 .. 0.05) | 0.05 (0.0138 .. 0.165) |" in report  # false blocks, hard negatives
    # The worst family is whichever interval reaches highest: 1 of 20 (interval 0.009-0.24)
    # against 40 of 1000 (0.030-0.054) is entirely past 1 % by the second.
    run.results["1:suppression"]["leak_interval"] = {"a": [0.009, 0.24], "b": [0.030, 0.054]}
    assert run._interval(1, "suppression", "worst_leak") == (0.030, 0.24)
    assert payload["intervals"]["model_utility"]["suppression"][0] == (0.49, 0.51)
    for plot in ("utility.png", "leak.png", "false_blocks.png", "hard_negatives.png"):
        assert (tmp_path / plot).stat().st_size > 0
