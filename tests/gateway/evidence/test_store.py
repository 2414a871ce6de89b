"""The evidence chain: verifies untouched, names the row changed or deleted by hand, appends
from racing replicas without forking, keeps forgotten text as digests only."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from gateway.config import Settings
from gateway.evidence.audit import Auditor, facts_of
from gateway.evidence.serving import FULL_SCAN_S, RECENT_S, SETTLE_S, EvidenceService
from gateway.evidence.store import AUDIT, FILED, REVOKED, EvidenceLog
from index.schema import upgrade
from index.store import ForgetStore
from removal.registry import Registry


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    upgrade(create_engine(url))
    return url


def filled(url: str) -> EvidenceLog:
    log = EvidenceLog(create_engine(url))
    for i in range(3):
        log.append(f"fr_{i}", FILED, {"body": f"{i}"}, key=f"filed:fr_{i}")
    log.append("fr_1", AUDIT, {"arm": "suppression", "leaks": 0})
    log.append("fr_1", REVOKED, {})
    return log


def test_an_untouched_chain_verifies_and_an_event_is_recorded_once(url: str) -> None:
    log = filled(url)
    assert log.verify() == []
    assert log.append("fr_0", FILED, {"body": "again"}, key="filed:fr_0") is None
    assert [e.kind for e in log.entries("fr_1")] == [FILED, AUDIT, REVOKED]
    entries = [e for i in range(3) for e in log.entries(f"fr_{i}")]
    assert sorted(e.prev for e in entries)[0] == "0" * 64  # one genesis, one chain
    assert len({e.prev for e in entries}) == len(entries) == 5


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("UPDATE evidence SET data = '{\"arm\": \"suppression\", \"leaks\": 3}' WHERE seq = 4",
         "row 4 (audit of fr_1)"),
        ("UPDATE evidence SET at = '2020-01-01T00:00:00+00:00' WHERE seq = 2", "row 2"),
        ("DELETE FROM evidence WHERE seq = 3", "row 4: follows"),
    ],
)  # fmt: skip
def test_a_row_edited_by_hand_is_named(url: str, tamper: str, named: str) -> None:
    filled(url)
    with create_engine(url).begin() as connection:
        connection.execute(text(tamper))
    problems = EvidenceLog(create_engine(url)).verify()
    assert problems and named in problems[0]
    command = [str(Path(sys.executable).parent / "obliviate"), "evidence", "verify",
               "--database-url", url]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and named in result.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_racing_appends_make_one_chain(database: str, request: pytest.FixtureRequest) -> None:
    """Replicas on one PostgreSQL append at the same moment: one wins each position, the others
    retry on the new head."""
    url = request.getfixturevalue("url" if database == "sqlite" else "postgres_url")
    engine = create_engine(url, pool_size=8)
    upgrade(engine)
    replicas = [EvidenceLog(engine) for _ in range(4)]

    def append(i: int) -> None:
        replicas[i % 4].append(f"fr_{i}", FILED, {"n": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(append, range(40)))
    assert replicas[0].verify() == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM evidence")).scalar() == 40


def test_forgotten_text_is_a_digest_that_a_purge_unlinks(url: str) -> None:
    log = EvidenceLog(create_engine(url))
    first = log.keyed("fr_1", ["Where was Ann Lee born?", "In Oslo."])
    assert log.keyed("fr_1", ["Where was Ann Lee born?"])[0] == first[0]  # stable per request
    assert log.keyed("fr_2", ["Where was Ann Lee born?"])[0] != first[0]  # and per request only
    log.forget_salt("fr_1")
    assert log.keyed("fr_1", ["Where was Ann Lee born?"])[0] != first[0]


def test_one_replica_claims_an_audit_until_its_lease_ends(url: str) -> None:
    log = EvidenceLog(create_engine(url))
    assert log.claim("audit:fr_1:suppression:base", "a", lease_s=60)
    assert log.claim("audit:fr_1:suppression:base", "a", lease_s=60)  # its own retry
    assert not log.claim("audit:fr_1:suppression:base", "b", lease_s=60)
    assert log.claim("audit:fr_2:suppression:base", "b", lease_s=-1)  # expired at once
    assert log.claim("audit:fr_2:suppression:base", "a", lease_s=60)


def test_an_export_is_signed_with_the_gateways_key(url: str, tmp_path: Path) -> None:
    log = filled(url)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    (tmp_path / "key.pem").write_bytes(pem)
    export = EvidenceService(log, None, None, tmp_path / "key.pem").export("fr_1")  # type: ignore[arg-type]
    signature = base64.b64decode(export.pop("signature"))
    public = serialization.load_pem_public_key(export.pop("public_key").encode())
    public.verify(signature, json.dumps(export, sort_keys=True, separators=(",", ":")).encode())
    assert [e["kind"] for e in export["entries"]] == [FILED, AUDIT, REVOKED]
    assert export["chain_head"] == log.head()
    unsigned = EvidenceService(log, None, None).export("fr_1")  # type: ignore[arg-type]
    assert unsigned["signature"] is None


def backfilling(store: ForgetStore) -> EvidenceService:
    """The evidence of ``store``'s requests, beside an index that enforces none of them."""
    index = SimpleNamespace(store=store, matcher=SimpleNamespace(terms={}))
    return EvidenceService(EvidenceLog(store.engine), index, Registry(store.engine))  # type: ignore[arg-type]


def test_the_backfill_records_what_only_the_store_shows(url: str) -> None:
    """A request filed and revoked before a crash cut the routes short (older than the
    routes' own window), and one purged: their events are recorded from the store's state."""
    store = ForgetStore(url)
    kept, _ = store.create({"subject": "Ann Lee", "qa": [{"question": "Q?", "answer": "A."}]}, [])
    gone, _ = store.create({"subject": "Bo Kim"}, [])
    store.revoke(kept.id)
    store.purge(gone.id)
    service = backfilling(store)
    later = datetime.now(UTC) + timedelta(seconds=SETTLE_S + 1)
    with patch("gateway.evidence.serving.datetime") as clock:
        clock.now.return_value = later
        service._backfill()
        service._backfill()  # nothing twice
        with patch.object(service.evidence, "recorded", wraps=service.evidence.recorded) as asked:
            service._backfill()
    assert asked.call_args.args[0] == []  # what it saw recorded is not asked for again
    assert [e.kind for e in service.view(kept.id)] == ["filed", "revoked"]
    assert [e.kind for e in service.view(gone.id)] == ["purged"]  # its row is gone, and with it
    assert service.evidence.verify() == []


def test_a_round_reads_what_changed_recently_and_every_request_now_and_then(url: str) -> None:
    """Between full reads (the first round, hourly, after the clock went back) a round reads only
    the requests changed since RECENT_S before the last round that succeeded, however long ago
    that was; a change stamped earlier (a writer's clock far behind) waits for the next full
    read."""
    store = ForgetStore(url)
    first, _ = store.create({"subject": "Ann Lee"}, [])
    skewed, _ = store.create({"subject": "Bo Kim"}, [])
    gone, _ = store.create({"subject": "Cy Dunn"}, [])
    service = backfilling(store)
    now = datetime.now(UTC) + timedelta(seconds=SETTLE_S + 1)
    with patch("gateway.evidence.serving.datetime") as clock:
        clock.now.return_value = now
        service._backfill()
        store.revoke(first.id)  # no route recorded these (a crash)
        store.purge(gone.id)
        store.revoke(skewed.id)
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE forget_requests SET updated_at = :t WHERE id = :i"),
                               {"t": now - timedelta(days=1), "i": skewed.id})  # fmt: skip
        clock.now.return_value = now + timedelta(seconds=RECENT_S * 2)  # a long gap
        with patch.object(store, "lifecycle", wraps=store.lifecycle) as read:
            service._backfill()
        assert read.call_args.args[0] is not None  # only what changed lately
        assert [e.kind for e in service.view(first.id)] == ["filed", "revoked"]
        assert [e.kind for e in service.view(gone.id)] == ["filed", "purged"]
        assert [e.kind for e in service.view(skewed.id)] == ["filed"]
        clock.now.return_value = now + timedelta(seconds=FULL_SCAN_S)
        service._backfill()
        assert [e.kind for e in service.view(skewed.id)] == ["filed", "revoked"]


def test_the_auditor_follows_the_active_requests_from_what_changed(url: str) -> None:
    """The auditor's active requests (oldest first) are read in full at its first round, then
    kept from what changed (filed, revoked, purged): one unchanged for longer than RECENT_S
    stays, and a read that fails changes nothing."""
    store = ForgetStore(url)
    first, _ = store.create({"subject": "Ann Lee"}, [])
    second, _ = store.create({"subject": "Bo Kim"}, [])
    kept, _ = store.create({"subject": "Di Ross"}, [])
    auditor = Auditor(FastAPI(), EvidenceLog(store.engine), store, None, Settings(), "a", bool)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    with patch("gateway.evidence.audit.datetime") as clock:
        clock.now.return_value = now
        assert list(auditor._active()) == [first.id, second.id, kept.id]
        store.revoke(first.id)
        third, _ = store.create({"subject": "Cy Dunn"}, [])
        store.purge(second.id)
        clock.now.return_value = now + timedelta(seconds=RECENT_S + 5)
        failing = patch.object(store, "purged_ids", side_effect=OSError("database gone"))
        with failing, pytest.raises(OSError):
            auditor._active()
        assert list(auditor.active) == [first.id, second.id, kept.id]
        assert list(auditor._active()) == [kept.id, third.id]
        clock.now.return_value = now + timedelta(seconds=RECENT_S + 10)
        with patch.object(store, "lifecycle", wraps=store.lifecycle) as read:
            assert list(auditor._active()) == [kept.id, third.id]  # none of them read again
        assert read.call_args.args[0] > datetime.now(UTC)


def test_a_request_without_facts_gets_an_audit_of_nothing() -> None:
    record = SimpleNamespace(qa=[], documents=[], subject="Ann Lee", concepts=[])
    assert facts_of(record) == []  # type: ignore[arg-type]
    documents = SimpleNamespace(qa=[], documents=["Ann Lee was born in Oslo."], subject="Ann Lee",
                                concepts=[])  # fmt: skip
    assert facts_of(documents)[0].answer == "Ann Lee was born in Oslo."  # type: ignore[arg-type]
