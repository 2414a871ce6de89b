"""Routes of removal jobs and model versions (admin token required).

POST /admin/v1/removal-jobs               {"method": "npo", "forget_requests": "pending"}
GET  /admin/v1/removal-jobs[/{id}]        status, progress (step, loss, ETA), version made
POST /admin/v1/removal-jobs/{id}/cancel
GET  /admin/v1/model-versions[/{id}]      lineage, removed forget requests, metrics
DELETE /admin/v1/model-versions/{id}
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.auth import require_admin_token
from gateway.body import documented, parse_body
from gateway.removal.protocol import (
    ModelVersionList,
    ModelVersionRecord,
    RemovalJobCreate,
    RemovalJobList,
    RemovalJobRecord,
)
from gateway.removal.serving import RemovalService

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin_token)])


def _service(request: Request) -> RemovalService:
    return request.app.state.removal


@router.post("/removal-jobs", status_code=202, openapi_extra=documented(RemovalJobCreate))
async def create_removal_job(request: Request) -> JSONResponse:
    body = await parse_body(request, RemovalJobCreate, request.app.state.settings.max_body_bytes)
    job = await asyncio.to_thread(_service(request).create_job, body)
    return JSONResponse(RemovalJobRecord.of(job).model_dump(), status_code=202)


@router.get("/removal-jobs")
async def list_removal_jobs(request: Request) -> RemovalJobList:
    jobs = await asyncio.to_thread(_service(request).registry.jobs)
    return RemovalJobList(data=[RemovalJobRecord.of(j) for j in jobs])


@router.get("/removal-jobs/{job_id}")
async def get_removal_job(request: Request, job_id: str) -> RemovalJobRecord:
    return RemovalJobRecord.of(await asyncio.to_thread(_service(request).job, job_id))


@router.post("/removal-jobs/{job_id}/cancel")
async def cancel_removal_job(request: Request, job_id: str) -> RemovalJobRecord:
    return RemovalJobRecord.of(await asyncio.to_thread(_service(request).cancel, job_id))


@router.get("/model-versions")
async def list_model_versions(request: Request) -> ModelVersionList:
    versions = await asyncio.to_thread(_service(request).registry.versions)
    return ModelVersionList(data=[ModelVersionRecord.of(v) for v in versions])


@router.get("/model-versions/{version_id}")
async def get_model_version(request: Request, version_id: str) -> ModelVersionRecord:
    return ModelVersionRecord.of(await asyncio.to_thread(_service(request).version, version_id))


@router.delete("/model-versions/{version_id}")
async def delete_model_version(request: Request, version_id: str) -> ModelVersionRecord:
    version = await _service(request).delete_version(version_id)
    return ModelVersionRecord.of(version)
