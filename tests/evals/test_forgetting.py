"""Time to effect: a text layer acting is not enough while the request's in-model layers are being
built (hermetic: the gateway is an ``httpx.MockTransport``)."""

from __future__ import annotations

import httpx
import pytest

from evals import forgetting
from evals.scoring import GatewayScorer
from tests.conftest import MODEL, REPO


def test_time_to_effect_waits_for_the_in_model_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forgetting, "POLL_S", 0.0)
    records = []

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            reply = {"choices": [{"message": {"content": "I have no information."}}]}
            return httpx.Response(200, json=reply, headers={"x-obliviate-layers": "retrieval"})
        assert request.url.path == "/admin/v1/forget-requests/fr_1"
        records.append(request)
        return httpx.Response(200, json={"id": "fr_1", "in_model_ready": len(records) >= 3})

    transport = httpx.MockTransport(gateway)
    scorer = GatewayScorer("http://gateway", MODEL, REPO / ".obliviate" / "models" / MODEL)
    scorer.http = httpx.Client(base_url="http://gateway", transport=transport)
    admin = httpx.Client(base_url="http://gateway/admin/v1", transport=transport)
    accepted = forgetting.time.monotonic()
    effect = forgetting.time_to_effect(scorer, admin, "fr_1", "Who is X?", accepted, 60)
    assert effect is not None and len(records) == 3  # until the record said it was ready
