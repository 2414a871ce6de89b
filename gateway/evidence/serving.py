"""The lifecycle of each forget request in its evidence: filed, enforced, removed in a version,
revoked, purged, beside the audits (``audit.py``).

    service = EvidenceService(log, index, registry, signing_key=None)
    await service.filed(record, admin_token, idempotency_key)     # from the create route
    await service.round()             # backfills what a crash or another path left unrecorded

Every event has a key (``filed:fr_1``, ``removed:fr_1:removal-3``), so it is recorded once
however many replicas see it. The routes record filing, revoking and purging as they happen;
``round`` records what only the store shows (a removal version, a request filed before a crash
cut the route short), from the store's state, never from its content.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.evidence.store import (
    ENFORCED,
    FILED,
    PURGED,
    REMOVED,
    REVOKED,
    Entry,
    EvidenceLog,
)
from index.forget_index import ForgetIndex
from index.store import REVOKED as STATUS_REVOKED
from index.store import ForgetRequest, LifecycleReads
from removal.registry import Registry

log = logging.getLogger(__name__)
SETTLE_S = 60.0
"""Requests younger than this are left to the create route, which knows who filed them."""
RECENT_S = SETTLE_S + 600.0
"""Between full reads a round reads the requests changed since this long before the last round
that succeeded: long enough for one filed just before it to settle and for replicas' clocks to
differ by minutes."""
FULL_SCAN_S = 3600.0
"""How often (and at start) a round reads every request: a full read costs in proportion to
every request ever filed, so it is rare."""


def fingerprint(secret: str) -> str:
    """Which admin token acted, without the token: the start of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _aware(moment: datetime) -> datetime:
    """A stored time in UTC (SQLite gives it back without its zone, PostgreSQL in the
    session's)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _body(record: ForgetRequest) -> dict[str, Any]:
    return {"subject": record.subject, "concepts": record.concepts,
            "documents": record.documents, "qa": record.qa, "note": record.note}  # fmt: skip


async def _after_commit(record: Callable[[], None]) -> None:
    """Record an event whose change is committed already: a failure is logged, not answered
    with a 500 for a change that happened (the backfill records it at its next round)."""
    try:
        await asyncio.to_thread(record)
    except Exception:
        log.exception("recording evidence failed; the backfill will record it")


def _iso(moment: datetime) -> str:
    return _aware(moment).isoformat()


class EvidenceService:
    def __init__(
        self,
        evidence: EvidenceLog,
        index: ForgetIndex,
        registry: Registry,
        signing_key: Path | None = None,
    ):
        self.evidence = evidence
        self.index = index
        self.registry = registry
        self.signing_key = signing_key
        self._known: set[str] = set()
        """Event keys this replica saw recorded: a round neither asks for them again nor dates
        them (with 10^4 requests, that was most of a round every 5 s)."""
        self._reads = LifecycleReads(RECENT_S, FULL_SCAN_S)

    async def filed(self, record: ForgetRequest, token: str, idempotency_key: str | None) -> None:
        """The request was committed and this replica's index enforces it. Its body appears as
        a digest keyed by the request (a plain hash of a short body could be guessed)."""

        def record_it() -> None:
            body = json.dumps(_body(record), sort_keys=True)
            data = {"body": self.evidence.keyed(record.id, [body])[0],
                    "admin_token": fingerprint(token),
                    "idempotency_key": hashlib.sha256(idempotency_key.encode()).hexdigest()
                    if idempotency_key else None}  # fmt: skip
            at = _iso(record.created_at)
            self.evidence.append(record.id, FILED, data, f"filed:{record.id}", at)
            self.evidence.append(record.id, ENFORCED, {}, f"enforced:{record.id}")

        await _after_commit(record_it)

    async def revoked(self, record: ForgetRequest, token: str) -> None:
        data = {"admin_token": fingerprint(token)}
        append = functools.partial(self.evidence.append, record.id, REVOKED, data)
        await _after_commit(functools.partial(append, f"revoked:{record.id}"))

    async def purged(self, request_id: str, token: str) -> None:
        """The request's text and embeddings are gone; its digests now name nothing."""

        def record_it() -> None:
            self.evidence.forget_salt(request_id)
            data = {"admin_token": fingerprint(token)}
            self.evidence.append(request_id, PURGED, data, f"purged:{request_id}")

        await _after_commit(record_it)

    async def round(self) -> None:
        await asyncio.to_thread(self._backfill)

    def _backfill(self) -> None:
        """Record the events the store shows and the evidence lacks."""
        Event = tuple[str, str, dict[str, Any], str | None]  # request, kind, data, when
        events: dict[str, Event] = {}
        now = datetime.now(UTC)
        settled = now - timedelta(seconds=SETTLE_S)
        since = self._reads.since(now)
        backfilled = {"backfilled": True}
        store, known = self.index.store, self._known
        for state in store.lifecycle(since):
            filed, enforced = f"filed:{state.id}", f"enforced:{state.id}"
            # The create route records younger ones.
            if not {filed, enforced} <= known and _aware(state.created_at) < settled:
                if filed not in known:
                    events[filed] = (state.id, FILED, backfilled, _iso(state.created_at))
                if enforced not in known and state.id in self.index.matcher.terms:
                    events[enforced] = (state.id, ENFORCED, backfilled, None)
            revoked = f"revoked:{state.id}"
            if state.status == STATUS_REVOKED and revoked not in known:
                events[revoked] = (state.id, REVOKED, backfilled, _iso(state.updated_at))
            removed = f"removed:{state.id}:{state.removed_in_version}"
            if state.removed_in_version and removed not in known:
                events[removed] = (state.id, REMOVED, {}, None)
        for request_id in store.purged_ids(since):
            if f"purged:{request_id}" not in known:
                events[f"purged:{request_id}"] = (request_id, PURGED, backfilled, None)
        recorded = self.evidence.recorded(list(events))
        for key, (request_id, kind, data, at) in events.items():
            if key not in recorded:
                if kind == REMOVED:
                    data = self._version_facts(key.rsplit(":", 1)[1])
                if kind == PURGED:
                    self.evidence.forget_salt(request_id)
                self.evidence.append(request_id, kind, data, key, at)
            known.add(key)
        self._reads.done(now, since)

    def _version_facts(self, version_id: str) -> dict[str, Any]:
        version = self.registry.version(version_id)
        if version is None:
            return {"version": version_id}
        return {"version": version.id, "number": version.number, "job": version.job_id,
                "method": version.method, "metrics": version.metrics}  # fmt: skip

    def view(self, request_id: str) -> list[Entry]:
        return self.evidence.entries(request_id)

    def export(self, request_id: str) -> dict[str, Any]:
        """The request's entries and the chain's head, signed with the gateway's Ed25519 key
        when one is configured (``signature`` over the JSON of the rest, keys sorted)."""
        body = {
            "object": "forget_request.evidence_export",
            "request_id": request_id,
            "entries": [entry.as_dict() for entry in self.evidence.entries(request_id)],
            "chain_head": self.evidence.head(),
        }
        if self.signing_key is None:
            return {**body, "signature": None, "public_key": None}
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(self.signing_key.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{self.signing_key}: not an Ed25519 private key")
        message = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {**body, "signature": base64.b64encode(key.sign(message)).decode(),
                "public_key": public.decode()}  # fmt: skip
