"""The forget index: the durable store plus the in-memory matcher kept in step with it.

    index = ForgetIndex.open(data_dir, "sqlite:///...", Embedder(), MatcherConfig())
    record, created = index.add({"subject": "Hsiao Yun-Hwa", "qa": [...]}, idempotency_key="k1")
    index.matcher.match(["Who is Hsiao Yun-Hwa?"])
    index.revoke(record.id)

Write order: embed, commit to the store (the acknowledgement point), then update the matcher and
persist the vectors. The persisted vectors are derived data: on open they are checked against the
store's active chunk ids and rebuilt from the stored embeddings if they differ, so a crash between
the two writes loses nothing acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from index.chunking import chunk_request
from index.embedder import Embedder
from index.matcher import Matcher, MatcherConfig
from index.store import ForgetRequest, ForgetStore, NewChunk

log = logging.getLogger(__name__)


def terms_of(record: ForgetRequest | dict[str, Any]) -> list[str]:
    """The names searched lexically: the subject and the concepts."""
    get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
    return [t for t in [get("subject") or "", *(get("concepts") or [])] if t.strip()]


class ForgetIndex:
    def __init__(self, store: ForgetStore, matcher: Matcher, index_dir: Path):
        self.store = store
        self.matcher = matcher
        self.index_dir = index_dir
        self._write_lock = threading.Lock()  # one writer persists the vectors at a time

    @classmethod
    def open(
        cls, index_dir: Path, database_url: str, embedder: Embedder, config: MatcherConfig
    ) -> ForgetIndex:
        index_dir.mkdir(parents=True, exist_ok=True)
        index = cls(ForgetStore(database_url), Matcher(embedder, config), index_dir)
        index._load()
        return index

    @property
    def _vectors_path(self) -> Path:
        return self.index_dir / "vectors.faiss"

    @property
    def _manifest_path(self) -> Path:
        return self.index_dir / "manifest.json"

    def _manifest(self, chunk_ids: list[int]) -> dict[str, Any]:
        digest = hashlib.sha256(np.array(sorted(chunk_ids), np.int64).tobytes()).hexdigest()
        return {"embedder": self.matcher.embedder.name, "chunks": len(chunk_ids), "digest": digest}

    def _rebuild_vectors(self) -> None:
        """Rebuild the vector index from the stored embeddings (exact or IVF by size)."""
        batches = list(self.store.active_chunks())
        dim = self.matcher.embedder.dim
        ids = np.concatenate([b[0] for b in batches]) if batches else np.zeros(0, np.int64)
        vectors = np.concatenate([b[1] for b in batches]) if batches else np.zeros((0, dim))
        self.matcher.vectors.build(ids, vectors.astype(np.float32))

    def _load(self) -> None:
        active = self.store.active()
        owners = self.store.active_chunk_owners()
        expected = self._manifest(list(owners))
        saved = None
        if self._manifest_path.exists():
            saved = json.loads(self._manifest_path.read_text())
        if saved == expected and self._vectors_path.exists():
            self.matcher.vectors.load(self._vectors_path)
        else:
            log.warning("forget index differs from the store: rebuilding %d chunks", len(owners))
            self._rebuild_vectors()
            self._persist(expected)
        self.matcher.load({r.id: terms_of(r) for r in active}, owners)
        log.info("forget index: %d requests, %d chunks", len(active), len(owners))

    def _persist(self, manifest: dict[str, Any] | None = None) -> None:
        if manifest is None:
            manifest = self._manifest(list(self.matcher.owner))
        self.matcher.vectors.save(self._vectors_path)
        tmp = self._manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest))
        tmp.replace(self._manifest_path)

    def add(
        self, fields: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[ForgetRequest, bool]:
        """Store and enforce a forget request; returns (record, created)."""
        chunks = list(chunk_request(fields))
        vectors = self.matcher.embedder.encode([text for _, text in chunks])
        new = [NewChunk(kind, text, v) for (kind, text), v in zip(chunks, vectors, strict=True)]
        record, created = self.store.create(fields, new, idempotency_key)
        if created:
            with self._write_lock:
                self.matcher.add(record.id, terms_of(record), self.store.chunk_ids(record.id),
                                 vectors)  # fmt: skip
                index = self.matcher.vectors
                if not index.approximate and len(index) > index.approximate_after:
                    log.info("forget index passed %d chunks: switching to IVF", len(index))
                    with self.matcher.locked():
                        self._rebuild_vectors()
                self._persist()
        return record, created

    def revoke(self, request_id: str) -> ForgetRequest | None:
        record = self.store.revoke(request_id)
        if record is not None:
            with self._write_lock:
                self.matcher.remove(request_id)
                self._persist()
        return record
