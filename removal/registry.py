"""Removal jobs and model versions in the same database as the forget requests (SQLAlchemy).

    >>> registry = Registry(ForgetStore("sqlite:///:memory:").engine)
    >>> job = registry.create_job("npo", {}, ["fr_1"], parent=None)
    >>> (job.status, registry.claim("replica-a", lease_s=30).id == job.id)
    ('queued', True)

A job is queued, then running, then succeeded (with the version it produced), failed (with the
error) or cancelled. A version is a LoRA adapter folder plus its lineage: parent version, method,
params, and the forget requests it removed (cumulatively, parent's included). The routing of
traffic between arms is one row beside them, so every replica serves the same arms and no
replica deletes a version the routing pins.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, String, Text, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from index.errors import ObliviateError

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
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The runner (gateway replica) that claimed the job."""
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Renewed while the runner follows the job; once past, the job is failed as abandoned."""


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


class Routing(Base):
    """The routing of traffic between arms (``gateway.routing``): one row, its ``revision``
    raised by every change, so replicas notice a change by reading one integer."""

    __tablename__ = "routing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VersionPinned(ObliviateError):
    """A model version the routing serves cannot be deleted."""


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    def __init__(self, engine: Engine):
        """``engine``: a database migrated by ``index.schema.upgrade`` (ForgetStore does it)."""
        self.engine = engine

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

    def claim(self, runner: str, lease_s: float) -> RemovalJob | None:
        """Start the oldest queued job for ``runner``; of racing runners exactly one gets a job
        (a compare-and-set on its status), so replicas sharing the database never both run it."""
        query = select(RemovalJob.id).where(RemovalJob.status == QUEUED)
        with self._session() as session:
            candidates = list(session.scalars(query.order_by(RemovalJob.created_at).limit(8)))
        for job_id in candidates:
            now = _now()
            with self._session() as session, session.begin():
                won = session.execute(
                    update(RemovalJob)
                    .where(RemovalJob.id == job_id, RemovalJob.status == QUEUED)
                    .values(status=RUNNING, started_at=now, lease_owner=runner,
                            lease_expires=now + timedelta(seconds=lease_s))
                ).rowcount  # fmt: skip
            if won:
                return self.job(job_id)
        return None

    def renew(self, job_id: str, runner: str, lease_s: float, **fields: Any) -> RemovalJob | None:
        """Extend ``runner``'s lease (and set ``fields``); None once the job left its hands
        (finished, cancelled from any replica, or failed as abandoned)."""
        expires = _now() + timedelta(seconds=lease_s)
        with self._session() as session, session.begin():
            held = session.execute(
                update(RemovalJob)
                .where(RemovalJob.id == job_id, RemovalJob.status == RUNNING,
                       RemovalJob.lease_owner == runner)
                .values(lease_expires=expires, **fields)
            ).rowcount  # fmt: skip
        return self.job(job_id) if held else None

    def update_job(self, job_id: str, **fields: Any) -> RemovalJob | None:
        """Set fields of a job that has not finished; returns it (None if it had finished)."""
        if fields.get("status") in FINISHED:
            fields["finished_at"] = _now()
        with self._session() as session, session.begin():
            changed = session.execute(
                update(RemovalJob)
                .where(RemovalJob.id == job_id, RemovalJob.status.not_in(FINISHED))
                .values(**fields)
            ).rowcount
        return self.job(job_id) if changed else None

    def fail_abandoned(self, reason: str, runner: str | None = None) -> None:
        """Fail running jobs whose lease has expired (their runner stopped), and those of
        ``runner`` (a runner starting again has no process left from before)."""
        now = _now()
        abandoned = RemovalJob.lease_expires < now
        if runner is not None:
            abandoned |= RemovalJob.lease_owner == runner
        with self._session() as session, session.begin():
            session.execute(
                update(RemovalJob)
                .where(RemovalJob.status == RUNNING, abandoned | RemovalJob.lease_expires.is_(None))
                .values(status=FAILED, error=reason, finished_at=now)
            )

    # Versions

    def next_version_id(self) -> str:
        """The id the next version should get; a runner on another replica may take it first
        (``create_version`` then fails on the unique number, and the caller tries the next)."""
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
        """Delete a version's record; VersionPinned while the shared routing serves it."""
        with self._session() as session, session.begin():
            routing = session.get(Routing, 1, with_for_update=True)
            if routing is not None and routing.config.get("version") == version_id:
                raise VersionPinned(version_id)
            version = session.get(ModelVersion, version_id)
            if version is not None:
                session.delete(version)

    # Routing

    def routing(self) -> Routing | None:
        with self._session() as session:
            return session.get(Routing, 1)

    def routing_revision(self) -> int:
        """0 until a routing is saved; what replicas poll (five times a second: a connection,
        not an ORM session, which costs twice the CPU)."""
        with self.engine.connect() as connection:
            return connection.scalar(select(Routing.revision).where(Routing.id == 1)) or 0

    def save_routing(self, config: dict[str, Any]) -> Routing:
        with self._session() as session, session.begin():
            row = session.get(Routing, 1, with_for_update=True)
            if row is None:
                row = Routing(id=1, revision=0)
                session.add(row)
            row.config, row.revision, row.updated_at = config, row.revision + 1, _now()
        return row
