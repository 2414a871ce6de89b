"""The evidence of a forget request as the admin API shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class EvidenceEntry(BaseModel):
    seq: int = Field(description="Position in the store's one chain.")
    kind: Literal["filed", "enforced", "audit", "removed", "revoked", "purged"]
    at: str = Field(description="When, ISO 8601 in UTC.")
    data: dict[str, Any] = Field(
        description="What happened, with forgotten text only as digests keyed by the request."
    )
    prev: str = Field(description="The digest of the entry before it in the chain.")
    digest: str = Field(description="SHA-256 over prev, request, kind, at and data.")


class Evidence(BaseModel):
    object: Literal["forget_request.evidence"] = "forget_request.evidence"
    request_id: str
    entries: list[EvidenceEntry]
    chain_head: str = Field(description="The digest of the chain's last entry, of any request.")


class Purged(BaseModel):
    id: str
    object: Literal["forget_request.purged"] = "forget_request.purged"
    purged: bool = True
