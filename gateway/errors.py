"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every failure the gateway reports is an ``APIError``, or another ``ObliviateError`` that
``as_api_error`` turns into one, so clients see the same shape whether the gateway or vLLM
refused the request::

    >>> raise ModelNotFound("The model `gpt-x` does not exist.", param="model")
    Traceback (most recent call last):
    ...
    gateway.errors.ModelNotFound: The model `gpt-x` does not exist.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from fastapi.responses import JSONResponse

from index.errors import ObliviateError
from index.store import IdempotencyConflict
from removal.registry import VersionPinned
from suppressors.stack import StackFailed

# The `type` OpenAI gives each status; vLLM sends exception names ("BadRequestError") instead.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")


class APIError(ObliviateError):
    """An error answered to the client; subclasses fix the status and code."""

    status: ClassVar[int] = 500
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or type(self).code
        self.status = status or type(self).status

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    def sse_event(self) -> bytes:
        """The error as one server-sent event, for a stream whose headers are already sent."""
        return b"data: " + json.dumps(self.body()).encode() + b"\n\n"


class InvalidRequest(APIError):
    status = 400


class ContextLengthExceeded(APIError):
    status = 400
    code = "context_length_exceeded"


class ContentSuppressed(APIError):
    """The request or its answer touches a forget request (response style ``error``)."""

    status = 400
    code = "content_suppressed"


class InvalidAPIKey(APIError):
    status = 401
    code = "invalid_api_key"


class AdminDisabled(APIError):
    status = 403
    code = "admin_disabled"


class PermissionDenied(APIError):
    status = 403
    code = "permission_denied"


class NotFound(APIError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class RequestTooLarge(APIError):
    status = 413
    code = "request_too_large"


class EngineUnavailable(APIError):
    """vLLM is starting, restarting or unreachable."""

    status = 503
    code = "engine_unavailable"


class SuppressionUnavailable(APIError):
    """The suppression stack cannot check the request (fail closed)."""

    status = 503
    code = "suppression_unavailable"


class UpstreamError(APIError):
    """vLLM failed in a way that is not the client's fault."""

    status = 502
    code = "upstream_error"


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def invalid_request(error: dict[str, Any]) -> InvalidRequest:
    """A pydantic (or FastAPI) validation error as a 400 naming the field, e.g. ``qa.0.answer``."""
    where = [str(p) for p in error["loc"] if p not in ("body", "query", "path")]
    param = ".".join(where) or None
    return InvalidRequest(f"{param}: {error['msg']}" if param else error["msg"], param=param)


def as_api_error(exc: ObliviateError) -> APIError:
    """The HTTP answer to one of the project's errors: the one place that maps them."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, IdempotencyConflict):
        return Conflict(
            f"Idempotency-Key already used for {exc} with a different body.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    if isinstance(exc, VersionPinned):
        return Conflict(f"Model version {str(exc)!r} is pinned by the routing.")
    if isinstance(exc, StackFailed):
        return SuppressionUnavailable("Forgotten content cannot be checked now; retry shortly.")
    return APIError(f"{type(exc).__name__}: {exc}")


def from_upstream(status: int, payload: Any) -> APIError:
    """Normalise an error answered by vLLM (``code`` is an int there, ``type`` a class name)."""
    error = payload.get("error", payload) if isinstance(payload, dict) else {}
    message = str(error.get("message") or payload or f"upstream answered HTTP {status}")
    param = error.get("param") if isinstance(error.get("param"), str) else None
    if status == 404 and "model" in message.lower():
        return ModelNotFound(message, param="model")
    if status in (400, 413) and "context length" in message.lower():
        return ContextLengthExceeded(message, param=param or "messages")
    if status == 404:
        return NotFound(message, param=param)
    if 400 <= status < 500:
        # Keep vLLM's status (400, 422, ...) but give the OpenAI type.
        return InvalidRequest(message, param=param, status=status)
    if status == 503:
        return EngineUnavailable(message)
    return UpstreamError(message)
