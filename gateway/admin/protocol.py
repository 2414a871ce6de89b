"""Bodies of the admin API (the contract other tools script against)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from index.store import ForgetRequest

_MAX_ITEMS = 1000
Status = Literal["suppressed", "removed", "revoked"]


class QAPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(min_length=1, max_length=4000)


class ForgetRequestCreate(BaseModel):
    """``POST /admin/v1/forget-requests``: at least one of subject/concepts/documents/qa."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject: str = Field("", max_length=500)
    concepts: list[str] = Field(default_factory=list, max_length=_MAX_ITEMS)
    documents: list[str] = Field(default_factory=list, max_length=_MAX_ITEMS)
    qa: list[QAPair] = Field(default_factory=list, max_length=_MAX_ITEMS)
    note: str = Field("", max_length=4000)

    @field_validator("concepts", "documents")
    @classmethod
    def no_blank_items(cls, items: list[str]) -> list[str]:
        if any(not item.strip() for item in items):
            raise ValueError("items must not be blank")
        return [item.strip() for item in items]

    @model_validator(mode="after")
    def something_to_forget(self) -> ForgetRequestCreate:
        if not (self.subject or self.concepts or self.documents or self.qa):
            raise ValueError("give at least one of subject, concepts, documents or qa")
        return self

    def fields(self) -> dict:
        return self.model_dump(exclude_none=True)


class ForgetRequestRecord(BaseModel):
    id: str
    object: Literal["forget_request"] = "forget_request"
    status: Status
    removed_in_version: str | None = None
    subject: str
    concepts: list[str]
    documents: list[str]
    qa: list[QAPair]
    note: str
    created_at: int
    updated_at: int
    in_model_ready: bool | None = None
    """Whether the files of the in-model layers (steering vectors, assistant head, n-gram ids) are
    built for this request: until then the text layers act alone, and a request that only scores
    a text about it is withheld. None when no in-model layer is configured, or once revoked."""

    @classmethod
    def of(cls, record: ForgetRequest, in_model_ready: bool | None = None) -> ForgetRequestRecord:
        return cls(
            id=record.id,
            status=record.status,
            removed_in_version=record.removed_in_version,
            subject=record.subject,
            concepts=record.concepts,
            documents=record.documents,
            qa=[QAPair(**pair) for pair in record.qa],
            note=record.note,
            created_at=unix(record.created_at),
            updated_at=unix(record.updated_at),
            in_model_ready=in_model_ready,
        )


class ForgetRequestList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ForgetRequestRecord]
    first_id: str | None
    last_id: str | None
    has_more: bool


def unix(moment: datetime) -> int:
    # SQLite hands back naive datetimes; they were written in UTC.
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
