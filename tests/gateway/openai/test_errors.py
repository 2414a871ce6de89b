"""Every error is OpenAI-shaped with the right status, from the gateway or normalised from vLLM."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import MODEL, LiveGateway

HI = [{"role": "user", "content": "hi"}]


def assert_openai_shape(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and "Error" not in error["type"]  # OpenAI's, not vLLM's
    if code is not None:
        assert error["code"] == code
    return error


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=2)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


def test_unknown_model_on_stream_is_404_before_streaming(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HI, stream=True)


def test_bad_body_names_the_field(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "x"}])
    assert info.value.param == "messages.0.role"


def test_vllm_validation_is_normalised(gateway: LiveGateway) -> None:
    with gateway.http() as http:
        body = {"model": MODEL, "messages": HI, "max_tokens": 100_000}
        error = assert_openai_shape(http.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "max_tokens"


BODY = b'{"model": "%s", "messages": [{"role": "user", "content": %s}], "temperature": %s}'


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"model": "x"}', b'{"model": "x", "messages": []}',
     # Not JSON, or nothing the engine could be sent: vLLM would get null (its default) for
     # NaN and 1e999 (Python reads infinity), and an unpaired surrogate has no UTF-8.
     BODY % (MODEL.encode(), b'"hi"', b"NaN"), BODY % (MODEL.encode(), b'"hi"', b"1e999"),
     BODY % (MODEL.encode(), b'"hi \\ud800"', b"0")],
)  # fmt: skip
def test_malformed_bodies_are_400(gateway: LiveGateway, content: bytes) -> None:
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )
    assert_openai_shape(response, 400)


def test_context_too_long(client: OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=long, max_tokens=4)
    assert info.value.code == "context_length_exceeded"


def test_body_too_large_is_413(gateway: LiveGateway) -> None:
    huge = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 5_000_000}]}
    with gateway.http() as http:
        assert_openai_shape(http.post("/v1/chat/completions", json=huge), 413, "request_too_large")


def test_bad_api_key_is_401(gateway: LiveGateway) -> None:
    bad = OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.code == "invalid_api_key"
    response = httpx.get(f"{gateway.url}/v1/models")  # no key at all
    assert_openai_shape(response, 401, "invalid_api_key")


def test_unknown_route_is_404(gateway: LiveGateway) -> None:
    with gateway.http() as http:
        assert_openai_shape(http.get("/v1/nothing-here"), 404, "not_found")
