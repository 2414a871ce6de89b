"""``GET /health`` (200 only while the engine answers: readiness), ``GET /health/live`` (200
while the gateway process serves: liveness, so an engine outage does not restart gateways) and
``GET /metrics``.

``/health`` also says which background loops are failing (they are retried with backoff)::

    {"status": "degraded", "failing": {"index_sync": "OperationalError: ..."}}
"""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import EngineUnavailable

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> Response:
    upstream = request.app.state.upstream
    if not upstream.ready or not await upstream.healthy():
        return EngineUnavailable("The engine is not ready.").response()
    failing = dict(request.app.state.supervisor.failing)
    return JSONResponse({"status": "degraded" if failing else "ok", "failing": failing})


@router.get("/health/live")
async def live() -> Response:
    return Response(status_code=200)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
