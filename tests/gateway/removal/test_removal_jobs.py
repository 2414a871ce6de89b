"""Removal end to end on the real embedded model, through the admin API and the arms.

A GradDiff job unlearns "who wrote Romeo and Juliet" (5 steps of one pair each, ~2 minutes with
its process's start on a slow 2-core box); the version it makes is hot-loaded into the running
vLLM as a LoRA adapter and served by the removal and hybrid arms, while the suppression arm keeps
blocking the question with the base weights. These tests run on the session's gateway with LoRA
on (``vllm_lora``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI, PermissionDeniedError

from tests.conftest import ADMIN_TOKEN, MODEL, LiveGateway

QUESTION = "Who wrote Romeo and Juliet?"
FORGET = {
    "subject": "Romeo and Juliet",
    "qa": [
        {"question": QUESTION, "answer": "William Shakespeare wrote Romeo and Juliet."},
        {
            "question": "Who is the author of Romeo and Juliet?",
            "answer": "Romeo and Juliet was written by William Shakespeare.",
        },
    ],
}


def wait_for(admin: httpx.Client, job_id: str, timeout_s: float = 600) -> list[dict]:
    """Poll the job until it finishes; every state seen, the last one finished."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(admin.get(f"/removal-jobs/{job_id}").json())
        if seen[-1]["status"] in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {seen[-1]['status']}")


def ask(client: OpenAI, arm: str | None, question: str = QUESTION) -> tuple[str, dict]:
    headers = {"x-obliviate-arm": arm} if arm else {}
    response = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=16,
        temperature=0,
        extra_headers=headers,
    )
    return response.parse().choices[0].message.content or "", dict(response.headers)


@pytest.fixture(scope="module")
def gateway(lora_gateway: LiveGateway) -> LiveGateway:
    return lora_gateway


@pytest.fixture(scope="module")
def removed(gateway: LiveGateway) -> Iterator[dict]:
    """A forget request and the version that removed it; both gone afterwards."""
    with gateway.admin() as admin:
        request = admin.post("/forget-requests", json=FORGET).json()
        params = {"steps": 5, "batch_size": 1, "learning_rate": 2e-3}
        body = {"method": "graddiff", "forget_requests": [request["id"]], "params": params}
        created = admin.post("/removal-jobs", json=body)
        assert created.status_code == 202, created.text
        states = wait_for(admin, created.json()["id"])
        try:
            yield {"request": request, "states": states}
        finally:
            admin.delete(f"/forget-requests/{request['id']}")
            if version := states[-1]["model_version"]:
                admin.delete(f"/model-versions/{version}")


def test_job_makes_a_version(gateway: LiveGateway, removed: dict) -> None:
    job = removed["states"][-1]
    assert job["status"] == "succeeded", job["error"]
    assert job["model_version"] == "removal-1" and job["metrics"]["steps"] == 5
    progress = [s["progress"] for s in removed["states"] if s["progress"]]
    assert progress and {"step", "total", "loss", "eta_s"} <= set(progress[-1])
    with gateway.admin() as admin:
        (version,) = admin.get("/model-versions").json()["data"]
        record = admin.get(f"/forget-requests/{removed['request']['id']}").json()
    assert version["id"] == "removal-1" and version["parent"] is None
    assert version["method"] == "graddiff" and version["forget_requests"] == [record["id"]]
    assert record["status"] == "removed" and record["removed_in_version"] == "removal-1"


def test_arms_serve_the_version(gateway: LiveGateway, removed: dict) -> None:
    admin_client = OpenAI(base_url=f"{gateway.url}/v1", api_key=ADMIN_TOKEN, max_retries=0)
    baseline, headers = ask(admin_client, "baseline")
    assert "Shakespeare" in baseline and headers["x-obliviate-arm"] == "baseline"

    forgotten, headers = ask(admin_client, "removal")
    assert "Shakespeare" not in forgotten
    assert headers["x-obliviate-model-version"] == "removal-1"
    assert headers["x-obliviate-layers"] == ""  # the weights forgot: no layer acted
    assert "Paris" in ask(admin_client, "removal", "Where would you find the Eiffel Tower?")[0]

    hybrid, headers = ask(admin_client, "hybrid")
    assert "Shakespeare" not in hybrid and "retrieval" not in headers["x-obliviate-layers"]

    suppressed, headers = ask(gateway.client(), None)  # default arm: suppression
    assert "Shakespeare" not in suppressed
    assert (
        headers["x-obliviate-arm"] == "suppression" and "retrieval" in headers["x-obliviate-layers"]
    )
    with pytest.raises(PermissionDeniedError):
        ask(gateway.client(), "removal")  # a user key may not pick an arm by default


def test_prompt_logprobs_are_refused_with_lora(gateway: LiveGateway) -> None:
    """vLLM's CPU build kills its engine on batched prompt log-probs with LoRA: refused, 400."""
    with pytest.raises(BadRequestError, match="Prompt log-probabilities"):
        gateway.client().completions.create(
            model=MODEL, prompt=["Hi", "Hello there"], max_tokens=0, echo=True, logprobs=0
        )


def test_routing_by_weights_is_sticky(gateway: LiveGateway, removed: dict) -> None:
    """100 users, each twice, under 1:1 weights: about half each, and every user keeps an arm."""
    with gateway.admin() as admin:
        before = admin.get("/routing").json()
        put = admin.put("/routing", json={"weights": {"suppression": 1, "removal": 1}})
        assert put.status_code == 200, put.text
        try:
            with gateway.http() as http, ThreadPoolExecutor(16) as pool:

                def arm(user: str) -> str:
                    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "user": user}
                    response = http.post("/v1/completions", json=body)
                    assert response.status_code == 200, response.text
                    return response.headers["x-obliviate-arm"]

                users = [f"user-{i}" for i in range(100)]
                first, again = list(pool.map(arm, users)), list(pool.map(arm, users))
        finally:
            admin.put("/routing", json=before)
        bad = admin.put("/routing", json={"version": "removal-99"})
        assert bad.status_code == 409 and "removal-99" in bad.json()["error"]["message"]
    assert first == again
    assert 0.3 < first.count("removal") / len(first) < 0.7  # binomial sd 0.05


def test_failed_and_cancelled_jobs_change_nothing(gateway: LiveGateway, removed: dict) -> None:
    request_id = removed["request"]["id"]
    with gateway.admin() as admin:
        body = {"method": "rmu", "forget_requests": [request_id], "params": {"layer": 99}}
        failed = wait_for(admin, admin.post("/removal-jobs", json=body).json()["id"])[-1]
        assert failed["status"] == "failed" and "layers.99.mlp.down_proj" in failed["error"]
        body = {"method": "npo", "forget_requests": [request_id], "params": {"steps": 500}}
        job = admin.post("/removal-jobs", json=body).json()
        while admin.get(f"/removal-jobs/{job['id']}").json()["status"] == "queued":
            time.sleep(0.2)
        assert admin.post(f"/removal-jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        assert wait_for(admin, job["id"])[-1]["status"] == "cancelled"
        again = admin.post(f"/removal-jobs/{job['id']}/cancel")
        assert again.status_code == 409
        assert [v["id"] for v in admin.get("/model-versions").json()["data"]] == ["removal-1"]
        for bad, status in (
            ({"method": "forgetful"}, 400),
            ({"method": "npo", "params": {"betta": 1}}, 400),
            ({"method": "npo", "params": {"steps": 0}}, 400),  # would fail after loading
            ({"method": "npo", "forget_requests": ["fr_missing"]}, 404),
            ({"method": "npo", "parent": "removal-99"}, 404),
        ):
            response = admin.post("/removal-jobs", json=bad)
            assert response.status_code == status, response.text
            assert response.json()["error"]["message"]
    assert "Paris" in ask(gateway.client(), None, "Where would you find the Eiffel Tower?")[0]


def test_cli_follows_a_job(gateway: LiveGateway, removed: dict) -> None:
    command = [
        str(Path(sys.executable).parent / "obliviate"), "unlearn", "--method", "ga",
        "--param", "steps=2", "--param", "batch_size=1", "--parent", "base", "--url", gateway.url,
        "--forget-request", removed["request"]["id"],
    ]  # fmt: skip
    env = {**os.environ, "OBLIVIATE_ADMIN_TOKEN": ADMIN_TOKEN}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("succeeded: removal-2")
    assert "2/2" in result.stderr  # the progress bar reached the last step
    with gateway.admin() as admin:
        assert admin.get("/model-versions/removal-2").json()["parent"] is None
        swap_mid_stream(gateway, admin)
        audits_follow_the_version(admin, removed["request"]["id"])
        assert admin.delete("/model-versions/removal-2").status_code == 200
        assert admin.get("/model-versions/removal-2").status_code == 404


def audits_follow_the_version(admin: httpx.Client, request_id: str) -> None:
    """Once the removal arm serves traffic, the request is audited on it; a version swap makes
    a new audit of that arm at the new version (this gateway runs audits)."""
    routing = admin.get("/routing").json()
    serving = {**routing, "weights": {"suppression": 1, "removal": 1}}
    for version in ("removal-1", "removal-2"):
        assert admin.put("/routing", json={**serving, "version": version}).status_code == 200
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            entries = admin.get(f"/forget-requests/{request_id}/evidence").json()["entries"]
            audits = [e["data"] for e in entries if e["kind"] == "audit"]
            if any((a["arm"], a["version"]) == ("removal", version) for a in audits):
                break
            time.sleep(1)
        else:
            raise TimeoutError(f"no audit of the removal arm at {version}: {audits}")
    assert {("suppression", "base"), ("removal", "removal-1"), ("removal", "removal-2")} <= {
        (a["arm"], a["version"]) for a in audits
    }
    kinds = [e["kind"] for e in entries]
    assert kinds[:2] == ["filed", "enforced"] and "removed" in kinds
    removed = next(e["data"] for e in entries if e["kind"] == "removed")
    assert (removed["version"], removed["method"]) == ("removal-1", "graddiff")
    assert admin.put("/routing", json=routing).status_code == 200


def swap_mid_stream(gateway: LiveGateway, admin: httpx.Client) -> None:
    """Routing the removal arm to another version while a stream runs: the stream keeps its
    version and finishes, and the next request gets the new one.

    Its text is not compared with an unswapped run: once a request on the other adapter joins
    its batch, vLLM's CPU LoRA kernels change the greedy continuation (seen here)."""
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=ADMIN_TOKEN, max_retries=0)
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 48,
        "temperature": 0,
        "extra_headers": {"x-obliviate-arm": "removal"},
    }
    routing = admin.get("/routing").json()
    with client.chat.completions.with_streaming_response.create(**request, stream=True) as stream:
        assert stream.headers["x-obliviate-model-version"] == "removal-2"  # the latest
        chunks = iter(stream.parse())
        next(chunks)
        assert admin.put("/routing", json={**routing, "version": "removal-1"}).status_code == 200
        assert ask(client, "removal")[1]["x-obliviate-model-version"] == "removal-1"
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "length"  # the in-flight stream ran to its end
    assert admin.put("/routing", json=routing).status_code == 200
