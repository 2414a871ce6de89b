"""The gateway's background loops, run round by round: a round that raises is logged, counted,
shown in ``/health`` and retried with backoff, so one database error never stops a loop for good.

    supervisor = Supervisor()
    supervisor.every("index_sync", sync_round, period_s=0.25)
    ...
    supervisor.failing          # {"index_sync": "OperationalError: ..."} while it fails
    await supervisor.stop()     # cancels every loop; a dead one never skips the caller's clean-up
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.ops import metrics

log = logging.getLogger(__name__)
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


class Supervisor:
    def __init__(self, first_retry_s: float = FIRST_RETRY_S, max_retry_s: float = MAX_RETRY_S):
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.failing: dict[str, str] = {}
        """Loops whose last round failed, with what it raised."""
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, name: str, round_: Callable[[], Awaitable[object]], period_s: float) -> None:
        """Run ``round_`` now and then ``period_s`` after each round that ends, for good."""
        self._tasks.append(asyncio.create_task(self._loop(name, round_, period_s), name=name))

    def once(self, name: str, work: Awaitable[None]) -> None:
        """Run ``work`` beside the loops, stopped with them (it handles its own failures)."""
        self._tasks.append(asyncio.ensure_future(work))

    async def _loop(
        self, name: str, round_: Callable[[], Awaitable[object]], period_s: float
    ) -> None:
        pause = self.first_retry_s
        metrics.TASK_FAILING.labels(name).set(0)
        while True:
            try:
                await round_()
            except Exception as exc:
                log.exception("background task %s failed; retrying in %.1f s", name, pause)
                metrics.TASK_FAILURES.labels(name).inc()
                metrics.TASK_FAILING.labels(name).set(1)
                self.failing[name] = f"{type(exc).__name__}: {exc}"[:500]
                await asyncio.sleep(pause)
                pause = min(self.max_retry_s, pause * 2)
                continue
            if self.failing.pop(name, None) is not None:
                log.info("background task %s works again", name)
                metrics.TASK_FAILING.labels(name).set(0)
            pause = self.first_retry_s
            await asyncio.sleep(period_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for outcome in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("a background task had failed", exc_info=outcome)
