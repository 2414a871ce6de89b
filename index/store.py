"""Durable forget requests in SQLAlchemy (SQLite in the data directory by default, WAL mode).

    >>> store = ForgetStore("sqlite:///:memory:")
    >>> record, created = store.create({"subject": "Ada"}, chunks=[])
    >>> (record.status, created, store.get(record.id).subject)
    ('suppressed', True, 'Ada')

Each request's chunks are stored with their embeddings, so the vector index (derived data) can be
rebuilt from the store alone without re-embedding.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from index.errors import ObliviateError
from index.schema import upgrade

SUPPRESSED, REMOVED, REVOKED = "suppressed", "removed", "revoked"


class Base(DeclarativeBase):
    pass


class ForgetRequest(Base):
    __tablename__ = "forget_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    concepts: Mapped[list[str]] = mapped_column(JSON, default=list)
    documents: Mapped[list[str]] = mapped_column(JSON, default=list)
    qa: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=SUPPRESSED, index=True)
    removed_in_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    body_hash: Mapped[str] = mapped_column(String(64))


class Chunk(Base):
    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("forget_requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class Change(Base):
    """One row per enforcement change (a request added or revoked), in commit order of ``seq``:
    every gateway replica polls it to keep its in-memory index in step with the store."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class Lifecycle:
    """A request's state without its content."""

    id: str
    status: str
    removed_in_version: str | None
    body_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewChunk:
    kind: str
    text: str
    embedding: np.ndarray


class LifecycleReads:
    """When a round that follows the requests' states reads all of them: at its first round,
    every ``full_s`` and after the clock went back; between those, only the requests changed
    since ``recent_s`` before the last round that succeeded (indexed times), so a round costs what
    changed, not every request. ``recent_s`` covers the writers' clocks differing; a change
    stamped earlier than that waits for the next full read.

        reads = LifecycleReads(recent_s=660, full_s=3600)
        since = reads.since(now)               # None: read every request
        states, purged = store.lifecycle(since), store.purged_ids(since)
        ...                                    # use them
        reads.done(now, since)                 # only once used: a failed round reads them again
    """

    def __init__(self, recent_s: float, full_s: float):
        self.recent = timedelta(seconds=recent_s)
        self.full = timedelta(seconds=full_s)
        self._full_at: datetime | None = None
        self._last_at: datetime | None = None

    def since(self, now: datetime) -> datetime | None:
        if self._full_at is None or self._last_at is None:
            return None
        if now - self._full_at >= self.full or now < self._last_at:
            return None
        return self._last_at - self.recent

    def done(self, now: datetime, since: datetime | None) -> None:
        self._last_at = now
        if since is None:
            self._full_at = now


class IdempotencyConflict(ObliviateError):
    """The idempotency key was used before with a different body."""


def body_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class ForgetStore:
    def __init__(self, url: str):
        # A pooled connection that a database restart cut is replaced, not handed out to fail.
        self.engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)

    def create(
        self,
        fields: dict[str, Any],
        chunks: list[NewChunk],
        idempotency_key: str | None = None,
    ) -> tuple[ForgetRequest, bool]:
        """Commit a request and its chunks; returns (record, created). Committed on return."""
        digest = body_hash(fields)
        if idempotency_key is not None and (first := self._by_key(idempotency_key)):
            return self._replay(first, digest), False
        now = _now()
        record = ForgetRequest(
            id=f"fr_{uuid.uuid4().hex}",
            status=SUPPRESSED,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            body_hash=digest,
            **fields,
        )
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.add(record)
                session.flush()
                session.add_all(
                    Chunk(
                        request_id=record.id,
                        kind=c.kind,
                        text=c.text,
                        embedding=c.embedding.astype(np.float32).tobytes(),
                    )
                    for c in chunks
                )
                session.add(Change(request_id=record.id, at=now))
        except IntegrityError:
            # A concurrent retry with the same key won the race: answer with its result.
            if idempotency_key is not None and (first := self._by_key(idempotency_key)):
                return self._replay(first, digest), False
            raise
        return record, True

    def _by_key(self, key: str) -> ForgetRequest | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.scalar(select(ForgetRequest).where(ForgetRequest.idempotency_key == key))

    @staticmethod
    def _replay(first: ForgetRequest, digest: str) -> ForgetRequest:
        if first.body_hash != digest:
            raise IdempotencyConflict(first.id)
        return first

    def get(self, request_id: str) -> ForgetRequest | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(ForgetRequest, request_id)

    def page(
        self, limit: int, after: str | None = None, status: str | None = None, q: str = ""
    ) -> list[ForgetRequest]:
        """Oldest first, ``limit`` records after the record ``after`` (cursor pagination), of
        ``status`` only if given, whose id is ``q`` or whose subject or note contains it."""
        query = select(ForgetRequest).order_by(ForgetRequest.created_at, ForgetRequest.id)
        if status is not None:
            query = query.where(ForgetRequest.status == status)
        if q:
            query = query.where(
                (ForgetRequest.id == q)
                | ForgetRequest.subject.icontains(q, autoescape=True)
                | ForgetRequest.note.icontains(q, autoescape=True)
            )
        with Session(self.engine, expire_on_commit=False) as session:
            if after is not None and (cursor := session.get(ForgetRequest, after)):
                query = query.where(
                    (ForgetRequest.created_at > cursor.created_at)
                    | ((ForgetRequest.created_at == cursor.created_at) & (ForgetRequest.id > after))
                )
            return list(session.scalars(query.limit(limit)))

    def lifecycle(self, since: datetime | None = None) -> list[Lifecycle]:
        """Every request's state and times, without its content (oldest first); with ``since``,
        only those changed (filed, revoked, removed) since then."""
        query = select(
            ForgetRequest.id, ForgetRequest.status, ForgetRequest.removed_in_version,
            ForgetRequest.body_hash, ForgetRequest.created_at, ForgetRequest.updated_at,
        ).order_by(ForgetRequest.created_at, ForgetRequest.id)  # fmt: skip
        if since is not None:  # SQLite compares the digits: both in UTC
            query = query.where(ForgetRequest.updated_at >= since.astimezone(UTC))
        with self.engine.connect() as connection:
            return [Lifecycle(*row) for row in connection.execute(query)]

    def purged_ids(self, since: datetime | None = None) -> set[str]:
        """Requests the change sequence names that no longer exist (hard-deleted); with
        ``since``, only those purged since then (a purge is a request's last change)."""
        known = select(ForgetRequest.id)
        query = select(Change.request_id).where(Change.request_id.not_in(known)).distinct()
        if since is not None:
            query = query.where(Change.at >= since.astimezone(UTC))
        with self.engine.connect() as connection:
            return set(connection.scalars(query))

    def revoke(self, request_id: str) -> ForgetRequest | None:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            record = session.get(ForgetRequest, request_id)
            if record is not None and record.status != REVOKED:
                record.status = REVOKED
                session.add(Change(request_id=record.id, at=_now()))
                record.updated_at = _now()
        return record

    def purge(self, request_id: str) -> bool:
        """Delete a request's text and embeddings (a hard delete); replicas drop it at their next
        sync. Whether it existed."""
        with Session(self.engine) as session, session.begin():
            record = session.get(ForgetRequest, request_id)
            if record is None:
                return False
            session.execute(delete(Chunk).where(Chunk.request_id == request_id))
            session.delete(record)
            session.add(Change(request_id=request_id, at=_now()))
        if self.engine.dialect.name == "sqlite":
            # secure_delete zeroed the pages; the write-ahead log still holds the old ones.
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def mark_removed(self, request_ids: list[str], version_id: str) -> None:
        """Requests removed by a new model version (the first version that removed one keeps it);
        they stay enforced by suppression too, for the arms that serve the base weights."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ForgetRequest)
                .where(ForgetRequest.id.in_(request_ids), ForgetRequest.status == SUPPRESSED)
                .values(status=REMOVED, removed_in_version=version_id, updated_at=_now())
            )

    def unmark_removed(self, version_id: str) -> None:
        """The version is deleted: its requests are suppressed only, again."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ForgetRequest)
                .where(ForgetRequest.removed_in_version == version_id)
                .where(ForgetRequest.status == REMOVED)
                .values(status=SUPPRESSED, removed_in_version=None, updated_at=_now())
            )

    def active(self) -> list[ForgetRequest]:
        """Requests still enforced (suppressed, or removed but still suppressed too)."""
        query = select(ForgetRequest).where(ForgetRequest.status != REVOKED)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def active_ids(self) -> set[str]:
        """Ids of the requests ``active`` returns, without loading their contents."""
        query = select(ForgetRequest.id).where(ForgetRequest.status != REVOKED)
        with Session(self.engine) as session:
            return set(session.scalars(query))

    def chunk_ids(self, request_id: str) -> np.ndarray:
        with Session(self.engine) as session:
            ids = session.scalars(select(Chunk.id).where(Chunk.request_id == request_id))
            return np.fromiter(ids, np.int64)

    def active_chunk_owners(self) -> dict[int, str]:
        """Chunk id -> request id, for every chunk of an active request."""
        query = select(Chunk.id, Chunk.request_id).join(ForgetRequest)
        with Session(self.engine) as session:
            rows = session.execute(query.where(ForgetRequest.status != REVOKED))
            return {chunk_id: request_id for chunk_id, request_id in rows}

    def chunks_of(self, request_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, embeddings) of one request."""
        query = select(Chunk.id, Chunk.embedding).where(Chunk.request_id == request_id)
        with Session(self.engine) as session:
            rows = session.execute(query.order_by(Chunk.id)).all()
        ids = np.array([r[0] for r in rows], np.int64)
        return ids, np.stack([np.frombuffer(r[1], np.float32) for r in rows]) if rows else ids

    def last_change(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(Change.seq))) or 0

    def changes_after(self, seq: int) -> list[tuple[int, str]]:
        """(seq, request id) of the changes after ``seq``, oldest first. Every replica polls it
        five times a second: read on a connection, not an ORM session (half the CPU)."""
        query = select(Change.seq, Change.request_id).where(Change.seq > seq).order_by(Change.seq)
        with self.engine.connect() as connection:
            return [(row[0], row[1]) for row in connection.execute(query)]

    def active_chunks(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, embeddings) of active requests, in batches."""
        query = (
            select(Chunk.id, Chunk.embedding)
            .join(ForgetRequest)
            .where(ForgetRequest.status != REVOKED)
            .order_by(Chunk.id)
            .execution_options(yield_per=batch)
        )
        with Session(self.engine) as session:
            for rows in session.execute(query).partitions():
                ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                vectors = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                yield ids, vectors


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed (acknowledged) request survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A purged request's text is overwritten on disk, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
