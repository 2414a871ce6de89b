"""Chunk vectors in faiss: exhaustive inner product while small, IVF (approximate) past a size.

    >>> index = VectorIndex(dim=3)
    >>> index.add(np.array([7]), np.array([[1, 0, 0]], np.float32))
    >>> index.search(np.array([[1, 0, 0]], np.float32), k=1)[1].tolist()
    [[7]]

Ids are the store's chunk ids, so a hit maps back to its forget request. Both kinds support
``remove`` (revoking a forget request removes its vectors at once).
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

_THREADS = faiss.omp_get_max_threads()
_FP16 = faiss.ScalarQuantizer.QT_fp16


class VectorIndex:
    CODES = "fp16"
    """How vectors are stored: a saved index recorded with other codes is rebuilt."""

    def __init__(self, dim: int, approximate_after: int = 20_000, nprobe: int = 64):
        self.dim = dim
        self.approximate_after = approximate_after
        self.nprobe = nprobe
        self._index: faiss.Index = self._exhaustive()

    # Half-precision codes, exhaustive or in IVF lists: a query reads half the memory, which is
    # what a scan waits on (exhaustive: about 4x faster at 2*10^4 vectors; IVF: about 1.7x at
    # 10^6), for scores within ~1e-3 of float32's.
    def _exhaustive(self) -> faiss.Index:
        return faiss.IndexIDMap2(
            faiss.IndexScalarQuantizer(self.dim, _FP16, faiss.METRIC_INNER_PRODUCT)
        )

    @property
    def approximate(self) -> bool:
        return isinstance(self._index, faiss.IndexIVF)

    def __len__(self) -> int:
        return self._index.ntotal

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents; picks exhaustive or IVF by size."""
        faiss.omp_set_num_threads(_THREADS)  # training and adding use every core
        if len(ids) <= self.approximate_after:
            self._index = self._exhaustive()
        else:
            # ~4·sqrt(n) lists, trained on a sample: k-means over all 10^6 would take minutes here.
            nlist = int(4 * math.sqrt(len(ids)))
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, self.dim, nlist, _FP16, faiss.METRIC_INNER_PRODUCT
            )
            sample = vectors[np.random.default_rng(0).permutation(len(vectors))[: nlist * 40]]
            ivf.train(sample)
            self._index = ivf
            self.set_nprobe(self.nprobe)
        self.add(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(ids.astype(np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k); missing hits have id -1."""
        if not len(self):
            shape = (len(queries), k)
            return np.full(shape, -np.inf, np.float32), np.full(shape, -1, np.int64)
        # One thread: OpenMP's threads, spinning around one request's few queries, cost about ten
        # times the CPU of the search itself, and concurrent requests already search in parallel.
        faiss.omp_set_num_threads(1)
        return self._index.search(np.ascontiguousarray(queries, np.float32), k)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        faiss.write_index(self._index, str(tmp))
        tmp.replace(path)  # atomic: a crash leaves the old file or the new one

    def load(self, path: Path) -> None:
        self._index = faiss.read_index(str(path))
        self.set_nprobe(self.nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        """IVF lists searched per query (an exhaustive index ignores it)."""
        self.nprobe = nprobe
        if self.approximate:
            self._index.nprobe = nprobe
