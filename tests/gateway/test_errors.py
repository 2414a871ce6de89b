"""Normalisation of vLLM's error bodies (shapes seen from vLLM 0.32) to OpenAI's, and the
project's one exception root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from gateway.errors import APIError, as_api_error, from_upstream
from index.errors import ObliviateError


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


def test_every_error_of_the_project_has_one_root_and_an_http_answer() -> None:
    """Each exception class the service defines is an ``ObliviateError``, which the gateway
    answers with its status in one place (``as_api_error``)."""
    defined = []
    for package in ("gateway", "suppressors", "index", "removal"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".migrations" in info.name:
                continue  # alembic's scripts run only inside alembic
            module = importlib.import_module(info.name)
            defined += [c for _, c in inspect.getmembers(module, inspect.isclass)
                        if issubclass(c, BaseException) and c.__module__ == info.name]  # fmt: skip
    assert len(defined) > 10
    assert [c for c in defined if not issubclass(c, ObliviateError)] == []
    for error in defined:
        if not issubclass(error, APIError):
            assert isinstance(as_api_error(error("x")), APIError)
