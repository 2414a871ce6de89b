"""``GET/PUT /admin/v1/routing``: the arms' traffic shares, default arm and served version."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.auth import require_admin_token
from gateway.body import parse_body
from gateway.routing.protocol import RoutingConfig
from gateway.routing.serving import Router

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin_token)])


def _router(request: Request) -> Router:
    return request.app.state.router


@router.get("/routing")
async def get_routing(request: Request) -> RoutingConfig:
    return _router(request).config


@router.put("/routing")
async def put_routing(request: Request) -> RoutingConfig:
    config = await parse_body(request, RoutingConfig, request.app.state.settings.max_body_bytes)
    router_ = _router(request)
    if config.version is not None or {"removal", "hybrid"} & (
        {a for a, w in config.weights.items() if w > 0} | {config.default_arm}
    ):
        # Refuse a routing that cannot be served: the version must exist now.
        Router(config, router_.path).version(request.app.state.registry)
    router_.save(config)
    return config
