"""Resumable runs: finished results come back from disk, a cut-off last line is ignored."""

from __future__ import annotations

from pathlib import Path

from evals.checkpoint import Checkpoint


def test_results_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "system.jsonl"
    calls: list[str] = []

    def compute(value: str):
        return lambda: calls.append(value) or [value, "layers"]

    first = Checkpoint(path)
    assert first.cached({"q": 1}, compute("a")) == ["a", "layers"]
    assert first.cached({"q": 1}, compute("b")) == ["a", "layers"]  # asked once
    with path.open("a") as out:
        out.write('{"key": "cut off by a kil')  # the run died mid-write
    again = Checkpoint(path)
    assert again.cached({"q": 1}, compute("c")) == ["a", "layers"]
    assert again.cached({"q": 2}, compute("d")) == ["d", "layers"]
    assert calls == ["a", "d"]
