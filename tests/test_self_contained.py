"""A clone of the repository alone runs its tests and benchmarks: no path reaches out of it."""

from __future__ import annotations

import subprocess

from evals.data import TOFU
from gateway.spawn import REPO


def test_tofu_ships_inside_the_repository() -> None:
    assert TOFU.is_relative_to(REPO)
    for name in ("forget_authors.jsonl", "retain_authors.jsonl", "LICENSE-TOFU"):
        assert (TOFU / name).is_file()


def test_no_tracked_file_reads_beside_the_clone() -> None:
    tracked = subprocess.run(
        ["git", "grep", "-l", "-F", "-e", "../shared", "-e", 'parent / "shared"'],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert [path for path in tracked if path != "tests/test_self_contained.py"] == []
