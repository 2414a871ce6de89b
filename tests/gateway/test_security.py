"""Security properties of a live gateway: no forgotten content in logs, no CORS by default."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import MODEL, LiveGateway


def test_forget_request_content_stays_out_of_the_logs(gateway: LiveGateway) -> None:
    secret = f"Zorbulon {uuid.uuid4().hex[:8]}"
    answer = f"{secret} lives at {uuid.uuid4().hex}."
    with gateway.admin() as admin:
        created = admin.post("/forget-requests", json={"subject": secret, "qa": [
            {"question": f"Where does {secret} live?", "answer": answer}]})  # fmt: skip
        assert created.status_code == 201
        with gateway.http() as http:
            body = {
                "model": MODEL,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"Where does {secret} live?"}],
            }
            assert http.post("/v1/chat/completions", json=body, timeout=120).status_code == 200
        admin.delete(f"/forget-requests/{created.json()['id']}")
    logs = gateway.log.read_text() + (gateway.log.parent / "data/logs/vllm.log").read_text()
    assert secret not in logs and answer not in logs


def test_cors_is_off_by_default(gateway: LiveGateway) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight = httpx.options(
        f"{gateway.url}/v1/chat/completions",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx.get(f"{gateway.url}/health", headers=origin)
    assert "access-control-allow-origin" not in response.headers
