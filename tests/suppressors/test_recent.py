"""The worker's file cache: read once, looked up again only after a while when missing, and
emptied of what no request names any more (a revoked request's files)."""

from __future__ import annotations

import pytest

from suppressors.vllm_plugin import recent
from suppressors.vllm_plugin.recent import RETRY_S, Recent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(recent.time, "monotonic", clock)
    return clock


def test_a_file_is_read_once_and_a_missing_one_once_a_second(clock: Clock) -> None:
    reads: list[str] = []

    def read(name: str, exists: bool):
        return lambda: (reads.append(name), (name if exists else None, exists))[1]

    files: Recent[str | None] = Recent(capacity=10, idle_s=60)
    for _ in range(50):  # steps of one forward pass after another
        assert files.get("built", read("built", True)) == "built"
        assert files.get("missing", read("missing", False)) is None
    assert reads == ["built", "missing"]
    clock.now += RETRY_S
    assert files.get("missing", read("missing", True)) == "missing"  # built since
    files.get("missing", read("missing", True))
    assert reads == ["built", "missing", "missing"]


def test_what_nobody_asks_for_leaves(clock: Clock) -> None:
    files: Recent[str] = Recent(capacity=3, idle_s=60)
    for name in ("revoked", "kept"):
        files.get(name, lambda name=name: (name, True))
    clock.now += 40
    files.get("kept", lambda: ("kept", True))
    clock.now += 30  # "revoked" idle for 70 s, "kept" for 30 s
    files.drop_idle()
    assert len(files) == 1
    for name in ("a", "b", "c"):  # past capacity: the least recently used goes
        files.get(name, lambda name=name: (name, True))
    assert len(files) == 3
    assert files.get("kept", lambda: ("read again", True)) == "read again"
