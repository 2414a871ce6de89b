"""Reading JSON request bodies with a size limit, errors naming the offending field."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest, RequestTooLarge, invalid_request

Model = TypeVar("Model", bound=BaseModel)


async def parse_body(request: Request, model: type[Model], max_bytes: int) -> Model:
    """Read and validate a JSON body: 413 past ``max_bytes``, else 400 naming the field."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise RequestTooLarge(f"Request body over {max_bytes} bytes.")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise RequestTooLarge(f"Request body over {max_bytes} bytes.")
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc.errors()[0]) from exc
