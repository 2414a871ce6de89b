"""Reading JSON request bodies with a size limit, errors naming the offending field, and
documenting them in the OpenAPI document.

    @router.post("/forget-requests", openapi_extra=documented(ForgetRequestCreate))
    async def create(request: Request) -> Response:
        body = await parse_body(request, ForgetRequestCreate, max_bytes)
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
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
        # msgspec, which re-encodes bodies for the engine, reads only what it can write back:
        # not NaN, Infinity, numbers past float64 or int64, or unpaired UTF-16 surrogates.
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"The body is not valid JSON (UTF-8; no NaN, Infinity, unpaired surrogates or "
            f"out-of-range numbers): {exc}"
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc.errors()[0]) from exc


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` naming ``model`` as its JSON body (routes read bodies with
    ``parse_body``, so FastAPI does not see them): what clients and the fuzz test generate from."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    body = {
        "required": True,
        "content": {"application/json": {"schema": _inline(schema, definitions)}},
    }
    return {"requestBody": body}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with its ``$ref``s to ``definitions`` replaced by what they name."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(definitions[node["$ref"].rsplit("/", 1)[1]], definitions)
    return {key: _inline(value, definitions) for key, value in node.items()}
