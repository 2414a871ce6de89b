"""The index benchmark's embedding cache: an hour of embedding at 10^4 subjects is done once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evals import index_benchmark
from index.embedder import Embedder


def test_embeddings_are_kept_in_batches_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = Embedder()
    texts = [f"Question number {i} about an author" for i in range(5)]
    monkeypatch.setattr(index_benchmark, "CACHE_BATCH", 2)
    first = index_benchmark.embedded(embedder, texts, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 3  # 2 + 2 + 1: an interrupted run keeps some
    np.testing.assert_allclose(first, embedder.encode(texts), rtol=1e-5, atol=1e-6)

    def refuse(batch: list[str]) -> np.ndarray:
        raise AssertionError(f"embedded again: {batch}")

    monkeypatch.setattr(embedder, "encode", refuse)
    np.testing.assert_array_equal(index_benchmark.embedded(embedder, texts, tmp_path), first)
