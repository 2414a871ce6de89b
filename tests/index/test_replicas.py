"""Replicas on one PostgreSQL (started for real, see ``tests/conftest.py``): migrations, the
change sequence that keeps each replica's index in step, and removal-job claims."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from index.embedder import Embedder
from index.forget_index import ChangeFeed, ForgetIndex
from index.matcher import MatcherConfig
from index.schema import upgrade
from index.store import ForgetRequest, ForgetStore
from removal.registry import RUNNING, Registry


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_migrations_make_the_schema_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    upgrade(engine)
    upgrade(engine)  # again at the next start: nothing to do
    tables = set(inspect(engine).get_table_names())
    assert {"forget_requests", "chunks", "changes", "removal_jobs", "model_versions"} <= tables
    assert {"lease_owner", "lease_expires"} <= {
        c["name"] for c in inspect(engine).get_columns("removal_jobs")
    }


def test_a_replica_applies_the_other_replicas_changes(
    postgres_url: str, embedder: Embedder, tmp_path: Path
) -> None:
    a, b = (
        ForgetIndex.open(tmp_path / name, postgres_url, embedder, MatcherConfig()) for name in "ab"
    )
    record, _ = a.add({"subject": "Zorblax Quintavalle", "documents": ["He farms eels."]})
    assert not b.matcher.match(["Tell me about Zorblax Quintavalle"])
    assert b.sync() == 1 and b.sync() == 0  # applied once
    (match,) = b.matcher.match(["Tell me about Zorblax Quintavalle"])
    assert match.request_id == record.id
    assert a.sync() == 0  # its own change, seen again, changes nothing
    a.revoke(record.id)
    assert b.sync() == 1 and not b.matcher.match(["Tell me about Zorblax Quintavalle"])
    # A replica started later loads the state, then sees nothing left to apply.
    c = ForgetIndex.open(tmp_path / "c", postgres_url, embedder, MatcherConfig())
    assert c.sync() == 0 and len(c.matcher) == 0


def test_a_revoke_during_a_sync_stays_revoked(embedder: Embedder, tmp_path: Path) -> None:
    """The sync reads a record, then a local revoke commits and applies before the sync takes
    the lock: the sync must not re-enforce what it read (it did, until its next round)."""
    index = ForgetIndex.open(tmp_path, f"sqlite:///{tmp_path}/store.db", embedder, MatcherConfig())
    record, _ = index.add({"subject": "Zorblax Quintavalle"})
    read = index.store.get
    later: list[threading.Thread] = []

    def read_then_revoke(request_id: str) -> ForgetRequest | None:
        seen = read(request_id)
        revoking = threading.Thread(target=index.revoke, args=(request_id,))
        revoking.start()
        revoking.join(timeout=0.5)  # done, unless the sync holds the lock
        index.store.get = read  # type: ignore[method-assign]
        later.append(revoking)
        return seen

    index.store.get = read_then_revoke  # type: ignore[method-assign]
    index.matcher.remove(record.id)  # as if the add had not been applied here yet
    index.sync()
    later[0].join()
    assert record.id not in index.matcher.terms
    assert index.sync() == 0 and record.id not in index.matcher.terms


def test_a_late_commit_of_an_earlier_number_is_not_skipped() -> None:
    feed = ChangeFeed()
    feed.mark(2)  # 1 is taken by a transaction that has not committed yet
    feed.advance()
    assert feed.floor == 0  # 1 is asked for again
    feed.mark(1)
    feed.advance()
    assert feed.floor == 2
    feed.mark(4)
    feed.GAP_S = 0.0  # 3 was rolled back: given up on
    feed.advance()
    assert feed.floor == 4


def test_concurrent_claims_have_one_winner(postgres_url: str) -> None:
    store = ForgetStore(postgres_url)
    registry = Registry(store.engine)
    job = registry.create_job("npo", {}, [], None)
    runners = [f"replica-{i}" for i in range(8)]
    start = threading.Barrier(len(runners))

    def claim(runner: str) -> str | None:
        start.wait()
        won = Registry(create_engine(postgres_url)).claim(runner, lease_s=30)
        return won.id if won else None

    with ThreadPoolExecutor(len(runners)) as pool:
        results = list(pool.map(claim, runners))
    assert results.count(job.id) == 1 and results.count(None) == 7
    claimed = registry.job(job.id)
    winner = runners[results.index(job.id)]
    assert claimed.status == RUNNING and claimed.lease_owner == winner
    assert registry.renew(job.id, "replica-x", 30) is None  # only the winner renews
    assert registry.renew(job.id, winner, 30) is not None
    # A lease that runs out fails the job: its runner stopped.
    registry.renew(job.id, winner, -1)
    registry.fail_abandoned("its runner stopped (lease)")
    assert registry.job(job.id).status == "failed"
