"""Results of finished requests kept on disk, so an interrupted run resumes where it stopped.

    checkpoint = Checkpoint(run_dir / "cache" / "target.jsonl")
    reply = checkpoint.cached({"path": "/v1/chat/completions", **body}, lambda: post(body))

Each result is appended as one JSON line keyed by a digest of its request; a rerun with the same
requests reads them back instead of asking again. A line cut short by a crash is ignored.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class Checkpoint:
    def __init__(self, path: Path):
        self.path = path
        self.results: dict[str, Any] = {}
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a killed run
                self.results[entry["key"]] = entry["value"]

    def cached(self, payload: Any, compute: Callable[[], T]) -> T:
        """The stored result for ``payload``, or ``compute()`` stored for the next run."""
        key = digest(payload)
        with self.lock:
            if key in self.results:
                return self.results[key]
        value = compute()
        with self.lock:
            self.results[key] = value
            with self.path.open("a") as out:
                out.write(json.dumps({"key": key, "value": value}) + "\n")
        return value
