"""The forget index: the durable store plus the in-memory matcher kept in step with it.

    index = ForgetIndex.open(data_dir, "sqlite:///...", Embedder(), MatcherConfig())
    record, created = index.add({"subject": "Hsiao Yun-Hwa", "qa": [...]}, idempotency_key="k1")
    index.matcher.match(["Who is Hsiao Yun-Hwa?"])
    index.revoke(record.id)

Write order: embed, commit to the store (the acknowledgement point), then update the matcher.
The vectors on disk are derived data, saved by ``save()`` when the gateway stops (saving them on
every write cost a write of the whole index per forget request: 46 MB each at 10^4 requests). On
open they are checked against the store's active chunk ids and rebuilt from the stored embeddings
if they differ, so a crash loses nothing acknowledged; it costs a rebuild at the next start.

Replicas sharing one database: every add and revoke also writes a row of the store's change
sequence, and ``sync()`` (run every ``index_sync_s`` by the gateway) applies the changes this
replica has not seen, from the stored embeddings (nothing is embedded again). Applying is
idempotent, so a replica's own changes, seen again, change nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from index.chunking import chunk_request
from index.embedder import Embedder
from index.files import write_json_atomic
from index.lexicon import MIN_PART_CHARS, normalise
from index.matcher import Matcher, MatcherConfig, known_words, numbers
from index.store import REVOKED, ForgetRequest, ForgetStore, NewChunk
from index.vectors import VectorIndex

log = logging.getLogger(__name__)


def terms_of(record: ForgetRequest) -> list[str]:
    """The names searched lexically: the subject and the concepts."""
    return [t for t in [record.subject or "", *(record.concepts or [])] if t.strip()]


_NAME_RUN = re.compile(
    r"[A-Z][\w'\u2019-]*(?:(?:\s+(?:of|the|and|de|del|da|van|von|der|du|la|le|al|bin|y))*\s+[A-Z][\w'\u2019-]*)*"
)
_LEADING = re.compile(r"^(?:The|A|An|Her|His|Their|She|He|They|It|In|On|At|As|By)\s+")


def details_of(record: ForgetRequest) -> list[str]:
    """The request's other distinctive names: capitalised phrases of its answers and documents
    (relatives, works, places, awards), less its own names and leading articles, of at least
    ``MIN_PART_CHARS`` letters. Alone they are often common words or other people's names, so
    they count only in answers to conversations related to the request."""
    own = {"".join(normalise(t)) for t in terms_of(record) for t in (t, *t.split())}
    texts = [qa["answer"] for qa in record.qa or []] + list(record.documents or [])
    details: list[str] = []
    for text in texts:
        for run in _NAME_RUN.findall(text):
            phrase = _LEADING.sub("", run).removesuffix("'s").removesuffix("\u2019s")
            key = "".join(normalise(phrase))
            if len(key) >= MIN_PART_CHARS and key not in own and phrase not in details:
                details.append(phrase)
    return details


def numbers_of(fields: dict[str, Any]) -> frozenset[str]:
    """The numbers in a forget request's texts (``fields`` as in its body): a text naming only
    other numbers is likely not about it."""
    return numbers("\n".join(text for _, text in chunk_request(fields)), within_dates=True)


def words_of(fields: dict[str, Any]) -> frozenset[str]:
    """Every word of a forget request's texts, as lexicon keys: a written name with none of
    them is someone else's (``Matcher``)."""
    return known_words([text for _, text in chunk_request(fields)])


def _fields(record: ForgetRequest) -> dict[str, Any]:
    return {
        "subject": record.subject,
        "concepts": record.concepts or [],
        "documents": record.documents or [],
        "qa": record.qa or [],
    }


class ForgetIndex:
    def __init__(self, store: ForgetStore, matcher: Matcher, index_dir: Path):
        self.store = store
        self.matcher = matcher
        self.index_dir = index_dir
        self._write_lock = threading.Lock()  # one writer changes the matcher at a time
        self._unsaved = False
        self._feed = ChangeFeed()

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
        return {
            "embedder": self.matcher.embedder.name,
            "codes": self.matcher.vectors.CODES,
            "chunks": len(chunk_ids),
            "digest": digest,
        }

    def _rebuild_vectors(self) -> None:
        """Rebuild the vector index from the stored embeddings (exhaustive or IVF by size).
        Readers keep the old one while the new one trains: the lock is held for the swap only."""
        batches = list(self.store.active_chunks())
        dim = self.matcher.embedder.dim
        ids = np.concatenate([b[0] for b in batches]) if batches else np.zeros(0, np.int64)
        vectors = np.concatenate([b[1] for b in batches]) if batches else np.zeros((0, dim))
        config = self.matcher.config
        rebuilt = VectorIndex(dim, config.approximate_after, config.nprobe)
        rebuilt.build(ids, vectors.astype(np.float32))
        with self.matcher.locked():
            self.matcher.vectors = rebuilt

    def _load(self) -> None:
        # Read before the state: changes committed meanwhile are applied again by sync().
        self._feed.start(self.store.last_change())
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
        request_numbers = {r.id: numbers_of(_fields(r)) for r in active}
        terms = {r.id: terms_of(r) for r in active}
        details = {r.id: details_of(r) for r in active}
        words = {r.id: words_of(_fields(r)) for r in active}
        self.matcher.load(terms, owners, request_numbers, details, words)
        log.info("forget index: %d requests, %d chunks", len(active), len(owners))

    def _persist(self, manifest: dict[str, Any] | None = None) -> None:
        if manifest is None:
            manifest = self._manifest(list(self.matcher.owner))
        self.matcher.vectors.save(self._vectors_path)
        write_json_atomic(self._manifest_path, manifest)

    def save(self) -> None:
        """Write the vectors and their manifest if they changed since the last save."""
        with self._write_lock:
            if self._unsaved:
                self._persist()
                self._unsaved = False

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
                self._enforce(record, self.store.chunk_ids(record.id), vectors)
        return record, created

    def revoke(self, request_id: str) -> ForgetRequest | None:
        record = self.store.revoke(request_id)
        if record is not None:
            with self._write_lock:
                self.matcher.remove(request_id)
                self._unsaved = True
        return record

    def purge(self, request_id: str) -> bool:
        """Delete a request everywhere it is stored (``ForgetStore.purge``, and the vectors on
        disk at once) and stop enforcing it."""
        if not self.store.purge(request_id):
            return False
        with self._write_lock:
            self.matcher.remove(request_id)
            self._persist()
            self._unsaved = False
        return True

    def sync(self) -> int:
        """Apply the store's changes this replica has not applied yet; how many changed it."""
        changed = 0
        for seq, request_id in self.store.changes_after(self._feed.floor):
            if self._feed.applied(seq):
                continue
            # Read under the lock: a record read before a local revoke commits would re-add it.
            with self._write_lock:
                record = self.store.get(request_id)
                active = record is not None and record.status != REVOKED
                if active and request_id not in self.matcher.terms:
                    self._enforce(record, *self.store.chunks_of(request_id))
                    changed += 1
                elif not active and request_id in self.matcher.terms:
                    self.matcher.remove(request_id)
                    self._unsaved = True
                    changed += 1
                if record is None and self._unsaved:  # purged: its vectors leave the disk now
                    self._persist()
                    self._unsaved = False
            self._feed.mark(seq)
        self._feed.advance()
        return changed

    def _enforce(self, record: ForgetRequest, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add one request to the matcher (held: ``_write_lock``); once only."""
        if record.id in self.matcher.terms:
            return
        fields = _fields(record)
        self.matcher.add(record.id, terms_of(record), ids, vectors, numbers_of(fields),
                         details_of(record), words_of(fields))  # fmt: skip
        self._unsaved = True
        index = self.matcher.vectors
        if not index.approximate and len(index) > index.approximate_after:
            log.info("forget index passed %d chunks: switching to IVF", len(index))
            self._rebuild_vectors()


class ChangeFeed:
    """Which changes of the store's sequence were applied. Sequence numbers are handed out at
    insert, not at commit, so a later number may be seen before an earlier one commits; a
    missing number is therefore asked for again until it appears, or for ``GAP_S`` (a rolled
    back insert never appears). ``floor``: every change up to it was applied."""

    GAP_S = 30.0

    def __init__(self) -> None:
        self.floor = 0
        self._applied: set[int] = set()
        self._gaps: dict[int, float] = {}

    def start(self, last: int) -> None:
        """Before loading the state: the last few changes are looked at again after it."""
        self.floor = max(0, last - 256)

    def applied(self, seq: int) -> bool:
        return seq in self._applied

    def mark(self, seq: int) -> None:
        self._applied.add(seq)

    def advance(self) -> None:
        now = time.monotonic()
        top = max(self._applied, default=self.floor)
        for seq in range(self.floor + 1, top):
            if seq not in self._applied:
                self._gaps.setdefault(seq, now)
        while True:
            following = self.floor + 1
            if following in self._applied:
                self._applied.discard(following)
            elif following in self._gaps and now - self._gaps[following] >= self.GAP_S:
                del self._gaps[following]
            else:
                break
            self.floor = following
