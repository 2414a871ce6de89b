"""Removal jobs and model versions in the same database as the forget requests (SQLAlchemy).

    >>> registry = Registry(ForgetStore("sqlite:///:memory:").engine)
    >>> job = registry.create_job("npo", {}, ["fr_1"], parent=None)
    >>> (job.status, registry.next_queued().id == job.id)
    ('queued', True)

A job is queued, then running, then succeeded (with the version it produced), failed (with the
error) or cancelled. A version is a LoRA adapter folder plus its lineage: parent version, method,
params, and the forget requests it removed (cumulatively, parent's included).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, String, Text, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled",
)  # fmt: skip
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
VERSION_PREFIX = "removal-"


class Base(DeclarativeBase):
    pass


class RemovalJob(Base):
    __tablename__ = "removal_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forget_request_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    parent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    version_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forget_request_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Every request this version removed, its ancestors' included."""
    path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(String(40))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    def __init__(self, engine: Engine):
        self.engine = engine
        Base.metadata.create_all(engine)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # Jobs

    def create_job(
        self, method: str, params: dict[str, Any], request_ids: list[str], parent: str | None
    ) -> RemovalJob:
        job = RemovalJob(
            id=f"rj_{uuid.uuid4().hex}",
            method=method,
            params=params,
            forget_request_ids=request_ids,
            parent_version=parent,
            status=QUEUED,
            created_at=_now(),
        )
        with self._session() as session, session.begin():
            session.add(job)
        return job

    def job(self, job_id: str) -> RemovalJob | None:
        with self._session() as session:
            return session.get(RemovalJob, job_id)

    def jobs(self) -> list[RemovalJob]:
        with self._session() as session:
            return list(session.scalars(select(RemovalJob).order_by(RemovalJob.created_at)))

    def next_queued(self) -> RemovalJob | None:
        query = select(RemovalJob).where(RemovalJob.status == QUEUED)
        with self._session() as session:
            return session.scalar(query.order_by(RemovalJob.created_at).limit(1))

    def update_job(self, job_id: str, **fields: Any) -> RemovalJob | None:
        """Set fields of a job that has not finished; returns it (None if it had finished)."""
        if fields.get("status") == RUNNING:
            fields["started_at"] = _now()
        if fields.get("status") in FINISHED:
            fields["finished_at"] = _now()
        with self._session() as session, session.begin():
            changed = session.execute(
                update(RemovalJob)
                .where(RemovalJob.id == job_id, RemovalJob.status.not_in(FINISHED))
                .values(**fields)
            ).rowcount
        return self.job(job_id) if changed else None

    def fail_unfinished(self, reason: str) -> None:
        """At start: a job left running by a stopped gateway has no process any more."""
        with self._session() as session, session.begin():
            session.execute(
                update(RemovalJob)
                .where(RemovalJob.status == RUNNING)
                .values(status=FAILED, error=reason, finished_at=_now())
            )

    # Versions

    def next_version_id(self) -> str:
        """The id the next version gets (one runner creates versions, so it stays free)."""
        with self._session() as session:
            last = session.scalar(select(ModelVersion.number).order_by(ModelVersion.number.desc()))
        return f"{VERSION_PREFIX}{(last or 0) + 1}"

    def create_version(
        self, version_id: str, job: RemovalJob, path: str, metrics: dict[str, Any]
    ) -> ModelVersion:
        with self._session() as session, session.begin():
            parent = session.get(ModelVersion, job.parent_version) if job.parent_version else None
            inherited = parent.forget_request_ids if parent else []
            version = ModelVersion(
                id=version_id,
                number=int(version_id.removeprefix(VERSION_PREFIX)),
                parent=job.parent_version,
                method=job.method,
                params=job.params,
                forget_request_ids=sorted(set(inherited) | set(job.forget_request_ids)),
                path=path,
                job_id=job.id,
                metrics=metrics,
                created_at=_now(),
            )
            session.add(version)
        return version

    def version(self, version_id: str) -> ModelVersion | None:
        with self._session() as session:
            return session.get(ModelVersion, version_id)

    def versions(self) -> list[ModelVersion]:
        with self._session() as session:
            return list(session.scalars(select(ModelVersion).order_by(ModelVersion.number)))

    def latest_version(self) -> ModelVersion | None:
        query = select(ModelVersion).order_by(ModelVersion.number.desc()).limit(1)
        with self._session() as session:
            return session.scalar(query)

    def delete_version(self, version_id: str) -> None:
        with self._session() as session, session.begin():
            version = session.get(ModelVersion, version_id)
            if version is not None:
                session.delete(version)
