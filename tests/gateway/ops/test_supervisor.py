"""Background loops survive failing rounds: counted, shown while failing, retried with backoff."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ops import metrics
from gateway.ops.supervisor import Supervisor

pytestmark = pytest.mark.anyio


def failures(name: str) -> float:
    return metrics.TASK_FAILURES.labels(name)._value.get()


async def test_a_failing_round_is_retried_until_it_works() -> None:
    outage = {"left": 3}
    rounds: list[str] = []

    async def sync() -> None:
        if outage["left"]:
            outage["left"] -= 1
            raise ConnectionError("database away")
        rounds.append("ok")

    supervisor = Supervisor(first_retry_s=0.01, max_retry_s=0.04)
    before = failures("sync-test")
    supervisor.every("sync-test", sync, period_s=0.01)
    async with asyncio.timeout(5):
        while outage["left"] > 1:
            await asyncio.sleep(0.005)
        assert supervisor.failing["sync-test"] == "ConnectionError: database away"
        assert metrics.TASK_FAILING.labels("sync-test")._value.get() == 1
        while len(rounds) < 3:
            await asyncio.sleep(0.005)
    assert "sync-test" not in supervisor.failing
    assert metrics.TASK_FAILING.labels("sync-test")._value.get() == 0
    assert failures("sync-test") - before == 3
    await supervisor.stop()


async def test_stop_cancels_every_loop_even_after_one_died() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def dies() -> None:
        raise RuntimeError("dead")

    supervisor = Supervisor()
    supervisor.every("forever-test", forever, period_s=0)
    supervisor.once("dies-test", dies())
    await started.wait()
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await supervisor.stop()
