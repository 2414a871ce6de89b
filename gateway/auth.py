"""User API keys: ``Authorization: Bearer KEY``; with no keys configured the API is open."""

from __future__ import annotations

import hmac

from fastapi import Request

from gateway.errors import InvalidAPIKey


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(token: str | None, keys: list[str]) -> bool:
    """Constant-time comparison against every key, so timing tells nothing."""
    supplied = (token or "").encode()
    return any([hmac.compare_digest(supplied, key.encode()) for key in keys])


async def require_api_key(request: Request) -> None:
    keys = request.app.state.settings.api_keys
    if keys and not key_matches(bearer_token(request), keys):
        raise InvalidAPIKey("Incorrect or missing API key: send `Authorization: Bearer <key>`.")
