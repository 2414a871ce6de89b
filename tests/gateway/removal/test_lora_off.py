"""Without LoRA in vLLM there is nowhere to serve a version: removal jobs are refused up front."""

from __future__ import annotations

from tests.conftest import LiveGateway


def test_removal_needs_lora(gateway: LiveGateway) -> None:
    with gateway.admin() as admin:
        response = admin.post("/removal-jobs", json={"method": "npo"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert "vllm_lora" in error["message"] and error["code"] == "conflict"
