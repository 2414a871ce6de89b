"""Ask and score a served system over HTTP, black-box, as a user or auditor would.

    scorer = GatewayScorer("http://127.0.0.1:8000", "smollm2-135m-instruct", tokenizer_dir)
    scorer.answer_logprobs("Where is the Eiffel Tower?", "Paris")   # per-token log-probs
    scorer.ask("Where is the Eiffel Tower?")                         # greedy chat answer

Scoring uses ``/v1/completions`` with ``echo`` + ``logprobs`` on the chat-formatted question plus
the answer, so it passes through the same suppression as chat. A suppressed request comes back
with the suppression answer and no log-probabilities: ``answer_logprobs`` then returns None, and
the harness scores it as that answer would (no preference between true and wrong answers).
With a ``Checkpoint``, answers already on disk are not asked again (resumable runs). The client is
thread-safe: the harness asks many questions at once, as vLLM batches them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import torch
from transformers import AutoTokenizer

from evals.checkpoint import Checkpoint
from index.pairs import collate

T = TypeVar("T")


SUPPRESSING_LAYERS = ("retrieval",)


def was_suppressed(layers: str) -> bool:
    """Whether a reply's ``x-obliviate-layers`` header names a layer that answers on its own."""
    return any(layer in layers.split(",") for layer in SUPPRESSING_LAYERS)


class Scorer(Protocol):
    """What the harness's set scoring asks of a system (``harness.score_set``)."""

    def answers_logprobs(self, question: str, answers: list[str]) -> list[list[float] | None]: ...

    def chat(
        self, messages: list[dict[str, str]], max_tokens: int = 64, fresh: bool = False
    ) -> tuple[str, str]: ...


class GatewayScorer:
    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer_dir: Path | str,
        api_key: str | None = None,
        checkpoint: Checkpoint | None = None,
        arm: str | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if arm:
            headers["x-obliviate-arm"] = arm  # the gateway's arm to measure (admin key needed)
        limits = httpx.Limits(max_connections=64)
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=600, limits=limits
        )
        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.checkpoint = checkpoint

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        read: Any,
        fresh: bool = False,
        suppressed: Any = None,
    ) -> Any:
        """``read(response)`` of POST ``path``, from the checkpoint unless ``fresh``;
        ``suppressed()`` where the gateway refuses it as touching forgotten content."""

        def ask() -> Any:
            response = self.http.post(path, json=body)
            if suppressed is not None and _content_suppressed(response):
                return suppressed()
            if not response.is_success:  # say why: a run that stops on it is rerun after a fix
                raise httpx.HTTPStatusError(
                    f"{response.status_code} from {path}: {response.text[:500]}",
                    request=response.request,
                    response=response,
                )
            return read(response)

        return ask() if fresh else self.remember({"path": path, **body}, ask)

    def remember(self, payload: Any, compute: Callable[[], T]) -> T:
        """``compute()``, kept in the checkpoint (when there is one) under ``payload``."""
        return compute() if self.checkpoint is None else self.checkpoint.cached(payload, compute)

    def answer_logprobs(self, question: str, answer: str) -> list[float] | None:
        """Log-probabilities of the answer's tokens given the question; None if suppressed."""
        return self.answers_logprobs(question, [answer])[0]

    def answers_logprobs(self, question: str, answers: list[str]) -> list[list[float] | None]:
        """``answer_logprobs`` of several answers to one question, in one request (vLLM scores
        the prompts in one batch)."""
        prompt = chat_prompt(self.tokenizer, question)
        body = {
            "model": self.model,
            "prompt": [prompt + answer for answer in answers],
            "max_tokens": 0,
            "echo": True,
            "logprobs": 0,
            "temperature": 0,
        }

        def read(response: httpx.Response) -> list[Any]:
            choices = sorted(response.json()["choices"], key=lambda c: c["index"])
            return [choice["logprobs"] for choice in choices]

        # A blocked scoring request is a 400 (its log-probabilities are withheld).
        scored = self._post("/v1/completions", body, read, suppressed=lambda: [None] * len(answers))
        return [_answer_part(lp, len(prompt)) for lp in scored]

    def chat(
        self, messages: list[dict[str, str]], max_tokens: int = 64, fresh: bool = False
    ) -> tuple[str, str]:
        """(greedy answer, the layers that acted) for a conversation; ``fresh`` always asks."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        }

        def read(response: httpx.Response) -> tuple[str, str]:
            text = response.json()["choices"][0]["message"]["content"] or ""
            return text, response.headers.get("x-obliviate-layers", "")

        text, layers = self._post("/v1/chat/completions", body, read, fresh)
        return text, layers

    def replies(
        self, messages: list[dict[str, str]], max_tokens: int, extra: dict[str, Any]
    ) -> list[str]:
        """Every text the answers to a conversation carry (each sampled choice's content and its
        tool calls' arguments), for a request with ``extra`` fields (sampling, tools, ...)."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0, **extra}  # fmt: skip

        def read(response: httpx.Response) -> list[str]:
            messages = [choice["message"] for choice in response.json()["choices"]]
            calls = [c["function"].get("arguments") or "" for m in messages
                     for c in m.get("tool_calls") or []]  # fmt: skip
            return [m.get("content") or "" for m in messages] + calls

        return self._post("/v1/chat/completions", body, read, suppressed=lambda: [])

    def ask(self, question: str, max_tokens: int = 64) -> str:
        return self.chat([{"role": "user", "content": question}], max_tokens)[0]

    def close(self) -> None:
        self.http.close()


class WeightsScorer(GatewayScorer):
    """Answers through the gateway, answer log-probabilities from the served weights loaded here:
    ``weights`` (an HF folder) plus the model version's LoRA ``adapter``, if any.

    For a gateway that serves LoRA versions on vLLM's CPU build, which refuses prompt
    log-probabilities. Where the arm runs the suppression stack (``stack``), a question it
    suppresses scores as through the gateway (None); the stack is asked with the same question
    as a chat of one token.
    """

    def __init__(
        self,
        *args: Any,
        weights: Path | str,
        adapter: str | None = None,
        stack: bool = False,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.weights = (str(weights), adapter)
        self.stack = stack

    def answers_logprobs(self, question: str, answers: list[str]) -> list[list[float] | None]:
        if self.stack:
            _, layers = self.chat([{"role": "user", "content": question}], max_tokens=1)
            if was_suppressed(layers):
                return [None] * len(answers)
        payload = {"weights": "+".join(map(str, self.weights)), "q": question, "a": answers}
        return self.remember(payload, lambda: self._logprobs(question, answers))

    def _logprobs(self, question: str, answers: list[str]) -> list[list[float] | None]:
        with _FORWARD:
            model = _loaded(*self.weights)
            return model_logprobs(model, self.tokenizer, question, answers)


def model_logprobs(
    model: Any, tokenizer: Any, question: str, answers: list[str]
) -> list[list[float] | None]:
    """Each answer's token log-probabilities given the chat-formatted question, from ``model``
    (one forward pass, the answers right-padded)."""
    encoded = [token_ids(tokenizer, question, answer) for answer in answers]
    ids, mask, _ = collate([(i, len(prompt)) for prompt, i in encoded], tokenizer.pad_token_id or 0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    return [answer_logprobs(row[: len(i)], i, len(prompt)) or None
            for row, (prompt, i) in zip(logits, encoded, strict=True)]  # fmt: skip


def chat_prompt(tokenizer: Any, question: str) -> str:
    """The text the model sees before its answer (the served chat template)."""
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def token_ids(tokenizer: Any, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(the chat prompt's token ids, those followed by the answer's)."""
    prompt = tokenizer(chat_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    return prompt, prompt + tokenizer(answer, add_special_tokens=False)["input_ids"]


def answer_logprobs(logits: torch.Tensor, ids: list[int], prompt_tokens: int) -> list[float]:
    """The answer tokens' log-probabilities, from the logits of one forward pass over ``ids``
    (the prompt's ``prompt_tokens`` tokens, then the answer's)."""
    picked = torch.log_softmax(logits[:-1].float(), -1)[torch.arange(len(ids) - 1), ids[1:]]
    return picked[prompt_tokens - 1 :].tolist()


_FORWARD = threading.Lock()
"""One load or forward pass at a time: torch already uses every core for one."""


def load_model(weights: str, adapter: str | None = None) -> Any:
    """The weights (with the adapter merged) in float32, ready for forward passes."""
    from removal.trainer import load_merged

    return load_merged(weights, adapter).eval()


_loaded = functools.lru_cache(maxsize=2)(load_model)
"""``load_model``, loaded once for every scorer that uses the same weights."""


def _answer_part(logprobs: dict[str, Any] | None, prompt_chars: int) -> list[float] | None:
    """The answer's token log-probabilities from an echoed prompt's; None when suppressed."""
    if not logprobs or not logprobs.get("token_logprobs"):
        return None
    pairs = zip(logprobs["text_offset"], logprobs["token_logprobs"], strict=True)
    return [lp for offset, lp in pairs if offset >= prompt_chars and lp is not None]


def _content_suppressed(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        return response.json()["error"]["code"] == "content_suppressed"
    except (ValueError, KeyError, TypeError):
        return False
