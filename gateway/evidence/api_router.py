"""``GET /admin/v1/forget-requests/{id}/evidence`` (and ``/export``, signed when a key is set)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.auth import require_admin_token
from gateway.errors import NotFound
from gateway.evidence.protocol import Evidence, EvidenceEntry
from gateway.evidence.serving import EvidenceService

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin_token)])


def _service(request: Request) -> EvidenceService:
    return request.app.state.evidence


def _no_evidence(request_id: str) -> NotFound:
    return NotFound(
        f"No evidence of a forget request {request_id!r}.", param="id",
        code="forget_request_not_found",
    )  # fmt: skip


@router.get("/forget-requests/{request_id}/evidence")
async def get_evidence(request: Request, request_id: str) -> Evidence:
    service = _service(request)
    entries = await asyncio.to_thread(service.view, request_id)
    if not entries:
        raise _no_evidence(request_id)
    head = await asyncio.to_thread(service.evidence.head)
    return Evidence(
        request_id=request_id,
        entries=[EvidenceEntry.model_validate(e.as_dict()) for e in entries],
        chain_head=head,
    )


@router.get("/forget-requests/{request_id}/evidence/export")
async def export_evidence(request: Request, request_id: str) -> JSONResponse:
    """A file to hand over: the entries, the chain's head, and the gateway's signature."""
    export = await asyncio.to_thread(_service(request).export, request_id)
    if not export["entries"]:
        raise _no_evidence(request_id)
    disposition = f'attachment; filename="evidence-{request_id}.json"'
    return JSONResponse(export, headers={"Content-Disposition": disposition})
