"""Bodies of the removal admin API: jobs (``/admin/v1/removal-jobs``) and model versions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.admin.protocol import unix
from removal.registry import ModelVersion, RemovalJob


class RemovalJobCreate(BaseModel):
    """``POST /admin/v1/removal-jobs``."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(
        description="ga, graddiff, npo, simnpo, rmu, idkdpo, wga, satimp, memsel, undial or "
        "task_arithmetic (removal/methods/)."
    )
    forget_requests: list[str] | Literal["pending"] = Field(
        "pending",
        description="Forget request ids, or 'pending': every active request the parent version "
        "has not removed yet.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Fields of the method's config (steps, beta, ...)."
    )
    parent: str = Field(
        "latest", description="Version to start from: 'latest', 'base', or a version id."
    )


class RemovalJobRecord(BaseModel):
    id: str
    object: Literal["removal_job"] = "removal_job"
    method: str
    params: dict[str, Any]
    forget_requests: list[str]
    parent: str | None
    status: str
    progress: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error: str | None
    model_version: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None

    @classmethod
    def of(cls, job: RemovalJob) -> RemovalJobRecord:
        return cls(
            id=job.id,
            method=job.method,
            params=job.params,
            forget_requests=job.forget_request_ids,
            parent=job.parent_version,
            status=job.status,
            progress=job.progress,
            metrics=job.metrics,
            error=job.error,
            model_version=job.version_id,
            created_at=unix(job.created_at),
            started_at=unix(job.started_at) if job.started_at else None,
            finished_at=unix(job.finished_at) if job.finished_at else None,
        )


class ModelVersionRecord(BaseModel):
    id: str
    object: Literal["model_version"] = "model_version"
    parent: str | None
    method: str
    params: dict[str, Any]
    forget_requests: list[str]
    job: str
    metrics: dict[str, Any]
    path: str
    """The adapter's folder (``obliviate-eval merge`` takes it)."""
    created_at: int

    @classmethod
    def of(cls, version: ModelVersion) -> ModelVersionRecord:
        return cls(
            id=version.id,
            parent=version.parent,
            method=version.method,
            params=version.params,
            forget_requests=version.forget_request_ids,
            job=version.job_id,
            metrics=version.metrics,
            path=version.path,
            created_at=unix(version.created_at),
        )


class RemovalJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RemovalJobRecord]


class ModelVersionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelVersionRecord]
