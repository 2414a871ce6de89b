"""The admin API contract: auth, create/get/list/revoke, idempotency, bad input.

Durability under kill -9 is the soak in ``tests/evals/test_durability.py``."""

from __future__ import annotations

import os

import httpx
import pytest

from gateway.spawn import start_gateway, stop
from tests.conftest import ADMIN_TOKEN, API_KEY, LiveGateway, fresh_data_dir

AUTHOR = {"subject": "Zorblax Quintavalle", "concepts": ["Quintavalle Prize"], "note": "test"}


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_admin_routes_need_the_admin_token(gateway: LiveGateway) -> None:
    url = f"{gateway.url}/admin/v1/forget-requests"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200
    # The admin token also works on user routes (an auditor picks arms there); never the reverse.
    with httpx.Client(base_url=gateway.url) as http:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert http.get("/v1/models", headers=admin).status_code == 200


def test_lifecycle_and_pagination(gateway: LiveGateway) -> None:
    with gateway.admin() as admin:
        created = [
            admin.post("/forget-requests", json={**AUTHOR, "note": str(i)}) for i in range(3)
        ]
        assert [r.status_code for r in created] == [201, 201, 201]
        ids = [r.json()["id"] for r in created]
        record = admin.get(f"/forget-requests/{ids[0]}").json()
        assert record["status"] == "suppressed" and record["subject"] == AUTHOR["subject"]
        assert isinstance(record["created_at"], int)
        assert record["in_model_ready"] is None  # this gateway has no in-model layer

        seen, after = [], None
        while True:
            params = {"limit": 2} | ({"after": after} if after else {})
            page = admin.get("/forget-requests", params=params).json()
            seen += [r["id"] for r in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen[-3:] == ids

        def found(**params: str) -> list[str]:
            return [r["id"] for r in admin.get("/forget-requests", params=params).json()["data"]]

        assert set(ids) <= set(found(q="zorblax", status="suppressed"))  # case-insensitive
        assert found(q=ids[1]) == [ids[1]]
        assert not set(ids) & set(found(q="zorblax", status="revoked"))
        assert admin.get("/forget-requests", params={"status": "gone"}).status_code == 400
        for request_id in ids:
            revoked = admin.delete(f"/forget-requests/{request_id}")
            assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        assert admin.get(f"/forget-requests/{ids[0]}").json()["status"] == "revoked"
        assert set(ids) <= set(found(q="Quintavalle", status="revoked"))


def test_idempotency_key(gateway: LiveGateway) -> None:
    with gateway.admin() as admin:
        headers = {"Idempotency-Key": os.urandom(8).hex()}
        first = admin.post("/forget-requests", json=AUTHOR, headers=headers)
        again = admin.post("/forget-requests", json=AUTHOR, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = admin.post("/forget-requests", json={"subject": "Someone Else"}, headers=headers)
        assert error_of(other, 409)["code"] == "idempotency_key_reused"
        admin.delete(f"/forget-requests/{first.json()['id']}")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, None),
        ({"subject": "   "}, None),
        ({"subject": 5}, "subject"),
        ({"concepts": "not a list"}, "concepts"),
        ({"concepts": [""]}, "concepts"),
        ({"qa": [{"question": "q"}]}, "qa.0.answer"),
        ({"qa": [{"question": "q", "answer": ""}]}, "qa.0.answer"),
        ({"subject": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_400_naming_the_field(gateway: LiveGateway, body: dict, param: str) -> None:
    with gateway.admin() as admin:
        error = error_of(admin.post("/forget-requests", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_bad_requests_other_statuses(gateway: LiveGateway) -> None:
    with gateway.admin() as admin:
        assert (
            error_of(admin.get("/forget-requests/fr_nope"), 404)["code"]
            == "forget_request_not_found"
        )
        assert error_of(admin.delete("/forget-requests/fr_nope"), 404)["param"] == "id"
        huge = {"documents": ["x" * 5_000_000]}
        assert (
            error_of(admin.post("/forget-requests", json=huge), 413)["code"] == "request_too_large"
        )
        bad_json = admin.post(
            "/forget-requests", content=b"{", headers={"content-type": "application/json"}
        )
        error_of(bad_json, 400)
        assert error_of(admin.get("/forget-requests", params={"limit": 0}), 400)["param"] == "limit"


def test_admin_api_closed_without_a_token(gateway: LiveGateway, tmp_path) -> None:
    data_dir = fresh_data_dir(tmp_path / "data")
    url, process = start_gateway(
        tmp_path / "gw.log",
        "--upstream",
        gateway.vllm_url,
        "--data-dir",
        str(data_dir),
        timeout_s=120,
    )
    try:
        response = httpx.get(
            f"{url}/admin/v1/forget-requests", headers={"Authorization": "Bearer x"}
        )
        assert error_of(response, 403)["code"] == "admin_disabled"
        assert "admin API disabled" in (tmp_path / "gw.log").read_text()
    finally:
        stop(process)
