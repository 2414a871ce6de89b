"""The evidence of each forget request: one hash-chained record of what happened to it.

    >>> log = EvidenceLog(engine)                                   # doctest: +SKIP
    >>> log.append("fr_1", FILED, {"body": log.keyed("fr_1", [body])[0]}, key="filed:fr_1")
    >>> log.verify()                   # [] while untouched; else each problem names its row

Entries form one chain over the whole store: each holds the digest of the one before (unique, so
two replicas appending at once cannot fork it: the later one retries on the new head), and its
own digest over (previous digest, request, kind, time, data). A row changed, deleted or moved by
hand breaks the chain at that row. An entry's optional ``key`` is unique too: an event is recorded
once however many replicas see it.

Entries hold no forgotten content, only digests of it, keyed per request (HMAC with a salt of the
request's own). A purge deletes the salt: the digests then name nothing, and the chain, which
never held the content, still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from index.errors import ObliviateError

FILED, ENFORCED, AUDIT, REMOVED, REVOKED, PURGED = (
    "filed",
    "enforced",
    "audit",
    "removed",
    "revoked",
    "purged",
)
GENESIS = "0" * 64
"""What the first entry follows."""
APPEND_ATTEMPTS = 20


class ChainBusy(ObliviateError):
    """Other replicas kept appending first; the event was not recorded."""


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "evidence"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[str] = mapped_column(String(40))
    """ISO 8601 in UTC: a string, so the digest reads back the same from any database."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    prev: Mapped[str] = mapped_column(String(64), unique=True)
    digest: Mapped[str] = mapped_column(String(64))

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "request_id": self.request_id, "kind": self.kind, "at": self.at,
                "data": self.data, "prev": self.prev, "digest": self.digest}  # fmt: skip


class Salt(Base):
    __tablename__ = "evidence_salts"

    request_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))


class Claim(Base):
    """Which replica runs an audit, until when (an expired claim is taken over)."""

    __tablename__ = "audit_claims"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def entry_digest(prev: str, request_id: str, kind: str, at: str, data: dict[str, Any]) -> str:
    canonical = json.dumps(
        [prev, request_id, kind, at, data], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat()


class EvidenceLog:
    def __init__(self, engine: Engine):
        """``engine``: a database migrated by ``index.schema.upgrade`` (ForgetStore does it)."""
        self.engine = engine

    def append(
        self,
        request_id: str,
        kind: str,
        data: dict[str, Any],
        key: str | None = None,
        at: str | None = None,
    ) -> Entry | None:
        """Record an event at the chain's head; None when ``key`` was recorded before."""
        at = at or now()
        for _ in range(APPEND_ATTEMPTS):
            try:
                with Session(self.engine, expire_on_commit=False) as session, session.begin():
                    if key is not None and session.scalar(
                        select(Entry.seq).where(Entry.key == key)
                    ):
                        return None
                    head = session.scalar(select(Entry.digest).order_by(Entry.seq.desc()).limit(1))
                    prev = head or GENESIS
                    entry = Entry(
                        request_id=request_id,
                        kind=kind,
                        at=at,
                        data=data,
                        key=key,
                        prev=prev,
                        digest=entry_digest(prev, request_id, kind, at, data),
                    )
                    session.add(entry)
                return entry
            except IntegrityError:
                continue  # another replica appended first (or recorded the same key)
        raise ChainBusy(f"could not append evidence for {request_id} in {APPEND_ATTEMPTS} tries")

    def entries(self, request_id: str) -> list[Entry]:
        query = select(Entry).where(Entry.request_id == request_id).order_by(Entry.seq)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def recorded(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have an entry."""
        found: set[str] = set()
        with Session(self.engine) as session:
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                found |= set(session.scalars(select(Entry.key).where(Entry.key.in_(batch))))
        return found

    def head(self) -> str:
        """The last entry's digest: publishing it pins every entry before it."""
        with Session(self.engine) as session:
            return (
                session.scalar(select(Entry.digest).order_by(Entry.seq.desc()).limit(1)) or GENESIS
            )

    def verify(self) -> list[str]:
        """Every break in the chain, each naming its row; [] when the store is untouched."""
        problems, expected = [], GENESIS
        with Session(self.engine) as session:
            for row in session.scalars(select(Entry).order_by(Entry.seq)).yield_per(1000):
                if row.prev != expected:
                    problems.append(
                        f"row {row.seq}: follows {row.prev[:16]}, but the row before "
                        f"it ends {expected[:16]} (a row was changed or deleted)"
                    )
                if entry_digest(row.prev, row.request_id, row.kind, row.at, row.data) != row.digest:
                    problems.append(
                        f"row {row.seq} ({row.kind} of {row.request_id}): its contents "
                        "do not match its digest (changed)"
                    )
                expected = row.digest
        return problems

    def keyed(self, request_id: str, texts: list[str]) -> list[str]:
        """Digests of forgotten ``texts`` that only this request's salt links back to them."""
        with Session(self.engine) as session, session.begin():
            salt = session.get(Salt, request_id)
            if salt is None:
                salt = Salt(request_id=request_id, salt=secrets.token_hex(32))
                session.add(salt)
            key = bytes.fromhex(salt.salt)
        return [hmac.new(key, text.encode(), hashlib.sha256).hexdigest() for text in texts]

    def forget_salt(self, request_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(Salt).where(Salt.request_id == request_id))

    def claim(self, key: str, owner: str, lease_s: float) -> bool:
        """Whether ``owner`` may run the audit ``key`` now: no claim, its own (a retry), or an
        expired one (its replica died). Of racing replicas exactly one wins."""
        at = datetime.now(UTC)
        expires = at + timedelta(seconds=lease_s)
        try:
            with Session(self.engine) as session, session.begin():
                if session.get(Claim, key) is None:
                    session.add(Claim(key=key, owner=owner, expires=expires))
                    return True
                return bool(
                    session.execute(
                        update(Claim)
                        .where(Claim.key == key, (Claim.expires < at) | (Claim.owner == owner))
                        .values(owner=owner, expires=expires)
                    ).rowcount
                )
        except IntegrityError:
            return False  # another replica inserted it first
