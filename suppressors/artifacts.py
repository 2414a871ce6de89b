"""Per-forget-request artifacts of the in-model layers, computed offline from the served weights.

    artifacts = Artifacts(data_dir / "artifacts", weights_folder, {STEERING_FILE, ASSISTANT_FILE})
    artifacts.build(forget_request)
    artifacts.ready("fr_123", STEERING_FILE)   # the plugin can load fr_123/steering.safetensors
    artifacts.delete("fr_123")                 # on revoke

``steering.safetensors`` holds, for every decoder layer, the forget direction (mean residual-stream
state on the request's answers minus that on neutral answers, unit length) and the median stream
norm on neutral answers, which scales the RMU vector. Both are read at the positions that predict
answer tokens, from the same forward passes as the assistant's training states
(``suppressors.assistant.answer_states``): a plain text's first token is left out there (an
attention sink, ~100x the others' norm, so a mean would mislead). Transformers'
``hidden_states[i + 1]`` is the stream after decoder layer i, the same as vLLM's
``hidden + residual`` there. ``assistant.safetensors`` is the logit-difference head
(``suppressors.assistant``). ``answers.safetensors`` holds the token ids of the request's texts
(answers, name, concepts, documents), each with and without a leading space, for the n-gram
penalty: ``ids`` end to end and their ``lengths``, and the request's ``vocabulary``: those tokens
but the name's and the retain data's ``COMMON_TOKENS`` most frequent; it needs the tokenizer
only. Only the files the layers need are built. A build writes a temporary folder and renames
it, so a reader never sees half an artifact.

The gateway builds them apart (``build_apart``): a child process, ``python -m
suppressors.artifacts``, loads the served weights, builds what is pending and exits, so the
gateway's own memory does not grow with the served model's size.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from index.pairs import RETAIN_DEFAULT, read_pairs
from index.store import ForgetRequest, ForgetStore
from suppressors.base import load_tokenizer, spellings
from suppressors.vllm_plugin import ANSWERS_FILE, ASSISTANT_FILE, STEERING_FILE

if TYPE_CHECKING:  # torch is imported only when a build starts
    from suppressors.assistant import States

log = logging.getLogger(__name__)

MAX_TEXTS = 64
COMMON_TOKENS = 1000
"""The retain data's most frequent tokens (questions and answers), never counted as a forget
request's own vocabulary."""
FROM_STATES = {STEERING_FILE, ASSISTANT_FILE}
REQUEST_FIELDS = ("id", "subject", "concepts", "documents", "qa")
"""What a build reads of a forget request."""


def request_pairs(request: ForgetRequest) -> list[tuple[str, str]]:
    """What a forget request says, as (question, answer) pairs; ("", text) for plain texts."""
    texts = [request.subject, *request.concepts, *request.documents]
    pairs = [(p["question"], p["answer"]) for p in request.qa]
    return (pairs + [("", t) for t in texts if t.strip()])[:MAX_TEXTS]


def neutral_pairs() -> list[tuple[str, str]]:
    return read_pairs(RETAIN_DEFAULT)[:MAX_TEXTS]


def common_tokens(tokenizer: Tokenizer, pairs: list[tuple[str, str]]) -> set[int]:
    """The ``COMMON_TOKENS`` most frequent tokens of the pairs' questions and answers."""
    texts = [text for pair in pairs for text in pair]
    counts = Counter(i for text in texts for s in spellings(tokenizer, text) for i in s)
    return {i for i, _ in counts.most_common(COMMON_TOKENS)}


def own_vocabulary(
    tokenizer: Tokenizer, sequences: list[list[int]], name: str, common: set[int]
) -> list[int]:
    """A forget request's vocabulary: its texts' tokens (``sequences``) but the ``name``'s and the
    ``common`` ones."""
    named = {i for s in spellings(tokenizer, name) for i in s}
    return sorted({i for s in sequences for i in s} - common - named)


RETRY_S = 30.0
"""First pause before a failed build is tried again; it doubles up to ``MAX_RETRY_S``."""
MAX_RETRY_S = 3600.0


class ArtifactKeeper:
    """Builds the artifacts of every enforced forget request and deletes those of revoked ones,
    one ``round`` per poll of the store (the gateway's supervisor runs the rounds).

    Polling the store (not the admin routes) also catches up after a restart. Each round reads
    ids only; a request's contents are loaded when its artifacts are built. A failed build is
    retried, later each time."""

    def __init__(self, artifacts: Artifacts, store: ForgetStore):
        self.artifacts = artifacts
        self.store = store
        self.retry: dict[str, tuple[float, float]] = {}  # request id -> (when, pause after that)

    async def round(self) -> None:
        artifacts, store = self.artifacts, self.store
        active = await asyncio.to_thread(store.active_ids)
        built = await asyncio.to_thread(artifacts.built)
        for request_id in built - active:
            await asyncio.to_thread(artifacts.delete, request_id)
        now = time.monotonic()
        due = [i for i in sorted(active - built) if self.retry.get(i, (0.0, 0.0))[0] <= now]
        pending = [r for i in due if (r := await asyncio.to_thread(store.get, i)) is not None]
        if not pending:
            return
        done = await artifacts.build_apart(pending)
        for request in pending:
            if request.id in done:
                self.retry.pop(request.id, None)
                continue
            pause = min(MAX_RETRY_S, self.retry.get(request.id, (0.0, RETRY_S / 2))[1] * 2)
            self.retry[request.id] = (time.monotonic() + pause, pause)
            log.error("building the artifacts of %s failed; retrying in %.0f s",
                      request.id, pause)  # fmt: skip


class Artifacts:
    def __init__(
        self,
        folder: Path,
        weights: Path | str,
        files: set[str] | frozenset[str],
        retain: list[tuple[str, str]] | None = None,
    ):
        self.folder = folder
        self.weights = weights
        self.files = files
        self.retain = retain or []
        """(question, answer) pairs to keep: their common tokens are no request's vocabulary."""
        self._model: Any = None
        self._neutral: States | None = None  # the same for every request
        self._lock = threading.Lock()  # one build at a time; the model is loaded once

    def path(self, request_id: str) -> Path:
        return self.folder / request_id

    def ready(self, request_id: str, name: str) -> bool:
        return (self.path(request_id) / name).is_file()

    def complete(self, request_id: str) -> bool:
        """Whether the request has every file this configuration needs."""
        return all(self.ready(request_id, name) for name in self.files)

    def built(self) -> set[str]:
        """Requests with every file this configuration needs."""
        return {p.name for p in self.folder.glob("*") if self.complete(p.name)}

    def delete(self, request_id: str) -> None:
        shutil.rmtree(self.path(request_id), ignore_errors=True)

    def build(self, request: ForgetRequest) -> Path:
        # Imported here: the gateway loads torch only when a layer needs artifacts.
        from safetensors.torch import save_file

        from suppressors.assistant import answer_states, train_head

        request_id = request.id
        with self._lock:
            files = {}
            if ANSWERS_FILE in self.files:
                files[ANSWERS_FILE] = self._answers(request)
            if self.files & FROM_STATES:
                model, tokenizer = self._load()
                if self._neutral is None:
                    self._neutral = answer_states(model, tokenizer, neutral_pairs())
                forget = answer_states(model, tokenizer, request_pairs(request))
            if STEERING_FILE in self.files:
                files[STEERING_FILE] = _steering(forget, self._neutral)
            if ASSISTANT_FILE in self.files:
                files[ASSISTANT_FILE] = train_head(model, forget, self._neutral)
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.folder / f".{request_id}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            for name, tensors in files.items():
                save_file({k: v.contiguous() for k, v in tensors.items()}, partial / name)
            self.delete(request_id)
            partial.rename(self.path(request_id))
            return self.path(request_id)

    async def build_apart(self, requests: list[ForgetRequest]) -> set[str]:
        """Build ``requests``' artifacts in a child process (see the module docstring); the ids
        it built. Cancelling kills the child: it writes nothing, and the gateway stops at once."""
        fields = [{k: getattr(r, k) for k in REQUEST_FIELDS} for r in requests]
        job = {"folder": str(self.folder), "weights": str(self.weights),
               "files": sorted(self.files), "retain": self.retain, "requests": fields}  # fmt: skip
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "suppressors.artifacts",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, _ = await child.communicate(json.dumps(job).encode())
        except asyncio.CancelledError:
            child.kill()
            await child.wait()
            for partial in self.folder.glob(".*.partial"):
                shutil.rmtree(partial, ignore_errors=True)
            raise
        return {line.split()[1] for line in out.decode().splitlines() if line.startswith("built ")}

    @functools.cached_property
    def _tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.weights)

    @functools.cached_property
    def _common(self) -> set[int]:
        return common_tokens(self._tokenizer, self.retain)

    def _answers(self, request: ForgetRequest) -> dict[str, Any]:
        import torch

        pairs = request_pairs(request)
        sequences = [s for _, text in pairs for s in spellings(self._tokenizer, text)]
        vocabulary = own_vocabulary(self._tokenizer, sequences, request.subject, self._common)
        return {
            "ids": torch.tensor([i for s in sequences for i in s], dtype=torch.int64),
            "lengths": torch.tensor([len(s) for s in sequences], dtype=torch.int64),
            "vocabulary": torch.tensor(vocabulary, dtype=torch.int64),
        }

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.weights)
            model = AutoModelForCausalLM.from_pretrained(self.weights, dtype="float32").eval()
            self._model = (model, tokenizer)
        return self._model


def _steering(forget: States, neutral: States) -> dict[str, Any]:
    directions = forget.mean - neutral.mean
    return {
        "directions": directions / directions.norm(dim=-1, keepdim=True),
        "median_norm": neutral.norms.median(dim=1).values,
    }


def main() -> None:
    """The child of ``build_apart``: a job (JSON) on stdin; ``built ID`` or ``failed ID`` per
    request on stdout, as each ends."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    job = json.load(sys.stdin)
    retain = [tuple(pair) for pair in job["retain"]]
    artifacts = Artifacts(Path(job["folder"]), job["weights"], set(job["files"]), retain)
    for fields in job["requests"]:
        try:
            artifacts.build(ForgetRequest(**fields))
            print("built", fields["id"], flush=True)
            log.info("built the in-model artifacts of %s", fields["id"])
        except Exception:
            log.exception("building the artifacts of %s failed", fields["id"])
            print("failed", fields["id"], flush=True)


if __name__ == "__main__":
    main()
