"""Bearer tokens: user API keys for ``/v1`` (open when none are configured), and the admin token
for ``/admin/v1`` (closed when none is configured). A user key never opens admin routes; the
admin token also works on ``/v1`` (an auditor may pick any arm there)."""

from __future__ import annotations

import hmac

from fastapi import Request

from gateway.errors import AdminDisabled, InvalidAPIKey


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(token: str | None, keys: list[str]) -> bool:
    """Constant-time comparison against every key, so timing tells nothing."""
    supplied = (token or "").encode()
    return any([hmac.compare_digest(supplied, key.encode()) for key in keys])


async def require_api_key(request: Request) -> None:
    """Sets ``request.state.admin``: whether the caller holds the admin token."""
    settings = request.app.state.settings
    token = bearer_token(request)
    admin = settings.admin_token
    request.state.admin = admin is not None and key_matches(token, [admin.get_secret_value()])
    if settings.api_keys and not request.state.admin and not key_matches(token, settings.api_keys):
        raise InvalidAPIKey("Incorrect or missing API key: send `Authorization: Bearer <key>`.")


async def require_admin_token(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if not token:
        raise AdminDisabled("The admin API is disabled: set OBLIVIATE_ADMIN_TOKEN to enable it.")
    if not key_matches(bearer_token(request), [token.get_secret_value()]):
        raise InvalidAPIKey("Incorrect or missing admin token.")
