"""``GET/PUT /admin/v1/routing``: the arms' traffic shares, default arm and served version."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from gateway.auth import require_admin_token
from gateway.body import documented, parse_body
from gateway.routing.protocol import RoutingConfig
from gateway.routing.serving import Router

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin_token)])


def _router(request: Request) -> Router:
    return request.app.state.router


@router.get("/routing")
async def get_routing(request: Request) -> RoutingConfig:
    return _router(request).config


@router.put("/routing", openapi_extra=documented(RoutingConfig))
async def put_routing(request: Request) -> RoutingConfig:
    config = await parse_body(request, RoutingConfig, request.app.state.settings.max_body_bytes)
    await asyncio.to_thread(_router(request).save, config)
    return config
