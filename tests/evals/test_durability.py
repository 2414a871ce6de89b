"""Durability: acknowledged forget requests survive kill -9, once each, and are enforced.

A bounded run of the soak in ``evals.durability`` (two kills; the documented soak runs 200)."""

from __future__ import annotations

from pathlib import Path

from evals.durability import run
from tests.conftest import LiveGateway


def test_acknowledged_requests_survive_kill_9(gateway: LiveGateway, tmp_path: Path) -> None:
    soak = run(trials=2, upstream=gateway.vllm_url, work=tmp_path, seed=1)
    assert soak.acked and soak.posted >= len(soak.acked)  # checks passed inside run()
