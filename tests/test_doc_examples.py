"""The usage examples in module docstrings run as written (those that need no model or server)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "index.chunking", "index.vectors", "index.matcher", "index.lexicon",
    "suppressors.vllm_plugin.ngrams", "suppressors.vllm_plugin.controls",
    "suppressors.guard_prompt", "gateway.errors", "gateway.evidence.leaks",
    "gateway.evidence.probes", "evals.metrics",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str) -> None:
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.attempted and not results.failed
