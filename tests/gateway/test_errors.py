"""Normalisation of vLLM's error bodies (shapes seen from vLLM 0.32) to OpenAI's."""

from __future__ import annotations

from gateway.errors import from_upstream


def test_vllm_not_found_becomes_model_not_found() -> None:
    vllm = {"error": {"message": "The model `nope` does not exist.", "type": "NotFoundError",
                      "param": "model", "code": 404}}  # fmt: skip
    body = from_upstream(404, vllm).body()["error"]
    assert body == {"message": "The model `nope` does not exist.", "type": "invalid_request_error",
                    "param": "model", "code": "model_not_found"}  # fmt: skip


def test_context_length_gets_openai_code() -> None:
    message = "This model's maximum context length is 2048 tokens. However, your prompt ..."
    vllm = {"error": {"message": message, "type": "BadRequestError", "param": "input_tokens",
                      "code": 400}}  # fmt: skip
    error = from_upstream(400, vllm)
    assert (error.status, error.code) == (400, "context_length_exceeded")


def test_non_json_and_server_errors() -> None:
    error = from_upstream(500, "Internal Server Error")
    assert (error.status, error.body()["error"]["type"]) == (502, "server_error")
    assert from_upstream(503, None).status == 503
    assert from_upstream(422, {"error": {"message": "x", "code": 422}}).status == 422
