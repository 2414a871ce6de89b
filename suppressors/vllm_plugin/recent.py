"""What the worker's hooks read from disk, kept while it is in use.

    files = Recent(capacity=1024, idle_s=300)
    head = files.get(("fr_1", "assistant.safetensors"), lambda: (read(), True))

A forward pass asks for the same forget requests' files step after step, so they are read once.
A request the gateway stopped naming (revoked, or no longer asked about) is dropped once it has
not been asked for in ``idle_s``, and the least recently used go past ``capacity``: device memory
does not grow with every request ever served. A value that is not final (a file not built yet)
is looked up again after ``RETRY_S``, not on every step.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")
RETRY_S = 1.0
"""How long a missing file stays missing before the disk is asked again."""


@dataclass
class _Entry(Generic[V]):
    value: V
    final: bool
    loaded: float
    used: float


class Recent(Generic[V]):
    def __init__(self, capacity: int, idle_s: float):
        self.capacity = capacity
        self.idle_s = idle_s
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], tuple[V, bool]]) -> V:
        """The kept value of ``key``, or ``load()``'s ``(value, final)``, kept."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or not (entry.final or now - entry.loaded < RETRY_S):
            value, final = load()
            entry = self._entries[key] = _Entry(value, final, loaded=now, used=now)
        entry.used = now
        self._entries.move_to_end(key)
        self.drop_idle(now)
        return entry.value

    def drop_idle(self, now: float | None = None) -> None:
        """Drop what was not asked for in ``idle_s``, and the oldest past ``capacity``."""
        now = time.monotonic() if now is None else now
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if len(self._entries) <= self.capacity and now - oldest.used <= self.idle_s:
                break
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def values(self) -> list[V]:
        return [entry.value for entry in self._entries.values()]
