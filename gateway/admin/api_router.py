"""Routes of the admin API; every route needs ``Authorization: Bearer <admin token>``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.admin.protocol import (
    ForgetRequestCreate,
    ForgetRequestList,
    ForgetRequestRecord,
    Status,
)
from gateway.auth import bearer_token, require_admin_token
from gateway.body import documented, parse_body
from gateway.errors import NotFound
from gateway.evidence.protocol import Purged
from gateway.evidence.serving import EvidenceService
from index.forget_index import ForgetIndex
from index.store import REVOKED, ForgetRequest
from suppressors.artifacts import Artifacts

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin_token)])


def _index(request: Request) -> ForgetIndex:
    return request.app.state.forget_index


def _evidence(request: Request) -> EvidenceService:
    return request.app.state.evidence


def _record(request: Request, record: ForgetRequest) -> ForgetRequestRecord:
    """The record as the API shows it, with whether its in-model layers' files are built."""
    artifacts: Artifacts = request.app.state.artifacts
    if not artifacts.files or record.status == REVOKED:
        return ForgetRequestRecord.of(record)
    return ForgetRequestRecord.of(record, artifacts.complete(record.id))


def _not_found(request_id: str) -> NotFound:
    return NotFound(
        f"No forget request {request_id!r}.", param="id", code="forget_request_not_found"
    )


@router.post("/forget-requests", status_code=201, openapi_extra=documented(ForgetRequestCreate))
async def create_forget_request(request: Request) -> Response:
    body = await parse_body(request, ForgetRequestCreate, request.app.state.settings.max_body_bytes)
    key = request.headers.get("idempotency-key") or None
    # Returns once the record is committed: the 201 is the acknowledgement.
    record, created = await asyncio.to_thread(_index(request).add, body.fields(), key)
    if created:
        await _evidence(request).filed(record, bearer_token(request) or "", key)
    payload = _record(request, record).model_dump()
    # A replay answers like the first time, and says it is one (as Stripe's API does).
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return JSONResponse(payload, status_code=201, headers=headers)


@router.get("/forget-requests")
async def list_forget_requests(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None, Query(description="Id of the last record of the previous page.")
    ] = None,
    status: Annotated[Status | None, Query(description="Only records with this status.")] = None,
    q: Annotated[
        str, Query(max_length=500, description="Id, or text in the subject or note.")
    ] = "",
) -> ForgetRequestList:
    store = _index(request).store
    records = await asyncio.to_thread(store.page, limit + 1, after, status, q.strip())
    data = [_record(request, r) for r in records[:limit]]
    return ForgetRequestList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(records) > limit,
    )


@router.get("/forget-requests/{request_id}")
async def get_forget_request(request: Request, request_id: str) -> ForgetRequestRecord:
    record = await asyncio.to_thread(_index(request).store.get, request_id)
    if record is None:
        raise _not_found(request_id)
    return _record(request, record)


@router.delete("/forget-requests/{request_id}")
async def revoke_forget_request(request: Request, request_id: str) -> ForgetRequestRecord:
    record = await asyncio.to_thread(_index(request).revoke, request_id)
    if record is None:
        raise _not_found(request_id)
    await _evidence(request).revoked(record, bearer_token(request) or "")
    return _record(request, record)


@router.post("/forget-requests/{request_id}/purge")
async def purge_forget_request(request: Request, request_id: str) -> Purged:
    """A hard delete: the request's text and embeddings leave every table and the index (and
    its in-model files, at the next artifacts round); its evidence stays verifiable, its
    digests now naming nothing."""
    if not await asyncio.to_thread(_index(request).purge, request_id):
        raise _not_found(request_id)
    await _evidence(request).purged(request_id, bearer_token(request) or "")
    return Purged(id=request_id)
