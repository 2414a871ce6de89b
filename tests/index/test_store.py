"""The store's reads by time: in UTC whatever zone they are given, and the cadence of full and
recent reads that the evidence backfill and the auditor follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from index.store import ForgetStore, LifecycleReads


def test_reads_since_a_time_compare_it_in_utc(tmp_path: Path) -> None:
    store = ForgetStore(f"sqlite:///{tmp_path / 'forget.db'}")
    record, _ = store.create({"subject": "Ann Lee"}, [])
    store.purge((store.create({"subject": "Bo Kim"}, []))[0].id)
    before = datetime.now(timezone(timedelta(hours=2))) - timedelta(seconds=5)
    assert [state.id for state in store.lifecycle(before)] == [record.id]
    assert len(store.purged_ids(before)) == 1
    after = datetime.now(timezone(timedelta(hours=-5))) + timedelta(seconds=5)
    assert store.lifecycle(after) == [] and store.purged_ids(after) == set()


def test_a_round_reads_every_request_first_hourly_and_after_the_clock_went_back() -> None:
    reads = LifecycleReads(recent_s=60, full_s=3600)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert reads.since(start) is None
    reads.done(start, None)
    assert reads.since(start + timedelta(seconds=5)) == start - timedelta(seconds=60)
    # Rounds that failed (no done) leave the window where the last good one was.
    later = start + timedelta(seconds=900)
    assert reads.since(later) == start - timedelta(seconds=60)
    reads.done(later, start - timedelta(seconds=60))
    assert reads.since(later + timedelta(seconds=5)) == later - timedelta(seconds=60)
    assert reads.since(start + timedelta(seconds=100)) is None  # the clock went back
    assert reads.since(start + timedelta(seconds=3600)) is None  # an hour after the full read
