"""Request models for the fields the gateway reads; every other field passes through to vLLM.

vLLM validates the full OpenAI schema itself (its errors are normalised by ``gateway.errors``); the
gateway checks only what it acts on, so a new vLLM sampling field works without a gateway change.
Each request type also knows where its text lives in the conversation, and how to write a
choice of the answer (``message``/``delta`` for chat, ``text`` for completions); every field of
a choice that carries text is read by ``gateway.openai.watch``.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any, ClassVar, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

DONE = b"data: [DONE]\n\n"
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


class _PassThrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class PassThroughBody(_PassThrough):
    """A JSON object relayed to vLLM as it is."""


class ChatMessage(_PassThrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A string, a list of content parts, or null (assistant tool calls).
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(
                str(p.get("text", "")) for p in self.content if p.get("type") == "text"
            )
        return self.content or ""


class StreamOptions(_PassThrough):
    include_usage: bool | None = None


class _GenerationRequest(_PassThrough):
    object_name: ClassVar[str]
    chunk_object_name: ClassVar[str]
    id_prefix: ClassVar[str]

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)

    def texts(self) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def set_choice_text(choice: dict[str, Any], text: str, streaming: bool) -> None:
        raise NotImplementedError

    def blank_choice(self, choice: dict[str, Any], text: str, streaming: bool) -> None:
        """``choice`` saying only ``text``: no tool calls, reasoning or log-probabilities left."""
        choice.pop("delta" if streaming else "message", None)
        self.set_choice_text(choice, text, streaming)
        choice.update(finish_reason="stop", logprobs=None)

    def prompt_count(self) -> int:
        """Prompts in the request; a response has ``n`` choices per prompt."""
        return 1

    def wants_prompt_logprobs(self) -> bool:
        """Whether vLLM must score the prompt's tokens (``prompt_logprobs``, or echo+logprobs)."""
        extra = self.model_extra or {}
        echoed = extra.get("echo") and extra.get("logprobs") is not None
        return extra.get("prompt_logprobs") is not None or bool(echoed)

    def only_scores(self) -> bool:
        """Whether the request scores its prompt: it asks for the log-probabilities of its own
        prompt tokens with at most the top alternative, and generates at most one token.
        TOFU: ``max_tokens=0``, echo, ``logprobs=0`` (or ``prompt_logprobs=0``); lm-eval's
        loglikelihood: ``max_tokens=1``, echo, ``logprobs=1`` (it reads the top alternative to
        tell whether the text is the greedy one, and drops the generated token)."""
        extra = self.model_extra or {}
        asked = [extra.get("prompt_logprobs")]
        if extra.get("echo"):
            asked.append(extra.get("logprobs"))
        wanted = [n for n in asked if n is not None]
        at_most_top = all(type(n) is int and 0 <= n <= 1 for n in wanted)
        generates = extra.get("max_tokens")
        return type(generates) is int and generates <= 1 and bool(wanted) and at_most_top

    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def add_note(self, body: dict[str, Any], note: str) -> None:
        """Put the stack's system instruction into ``body`` (where the API has one)."""

    def abstention(self, text: str) -> dict[str, Any]:
        """A whole response whose every choice says ``text``."""
        return self.answer(text, streaming=False) | {"usage": ZERO_USAGE}

    def abstention_events(
        self,
        text: str,
        skeleton: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> list[bytes]:
        """A stream's last events when it ends saying ``text``; ``skeleton``: the id, model and
        other fields of the stream's chunks so far; ``usage``: what was generated."""
        chunk = self.answer(text, streaming=True) | (skeleton or {})
        stop = copy.deepcopy(chunk)
        for choice in chunk["choices"]:
            choice["finish_reason"] = None
        for choice in stop["choices"]:
            self.set_choice_text(choice, "", streaming=True)
        events = [sse(chunk), sse(stop)]
        if self.wants_usage():
            events.append(sse({**stop, "choices": [], "usage": usage or ZERO_USAGE}))
        return [*events, DONE]

    def answer(self, text: str, streaming: bool) -> dict[str, Any]:
        """A whole response (or, streaming, one chunk) whose every choice says ``text``."""
        choices = []
        for index in range(self.n * self.prompt_count()):
            choice: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": "stop"}
            self.set_choice_text(choice, text, streaming)
            choices.append(choice)
        return {
            "id": f"{self.id_prefix}-{uuid.uuid4().hex}",
            "object": self.chunk_object_name if streaming else self.object_name,
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
        }


class ChatCompletionRequest(_GenerationRequest):
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    messages: list[ChatMessage] = Field(min_length=1)

    def texts(self) -> list[str]:
        return [m.text() for m in self.messages]

    def add_note(self, body: dict[str, Any], note: str) -> None:
        messages = body["messages"]
        if messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
            messages[0] = {**messages[0], "content": f"{note}\n\n{messages[0]['content']}"}
        else:
            body["messages"] = [{"role": "system", "content": note}, *messages]

    @staticmethod
    def set_choice_text(choice: dict[str, Any], text: str, streaming: bool) -> None:
        key = "delta" if streaming else "message"
        choice.setdefault(key, {"role": "assistant"})
        choice[key]["content"] = text


class CompletionRequest(_GenerationRequest):
    object_name = chunk_object_name = "text_completion"
    id_prefix = "cmpl"

    # Text, texts, token ids, or lists of token ids, as in OpenAI's API.
    prompt: str | list[str] | list[int] | list[list[int]]

    def texts(self) -> list[str]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        return [p for p in self.prompt if isinstance(p, str)]

    def prompt_count(self) -> int:
        return len(self.texts()) + len(self.token_prompts())

    def token_prompts(self) -> list[list[int]]:
        """Prompts given as token ids (their text needs vLLM's detokenizer)."""
        if self.prompt and all(isinstance(t, int) for t in self.prompt):
            return [self.prompt]  # type: ignore[list-item]
        return [p for p in self.prompt if isinstance(p, list)]  # type: ignore[misc]

    @staticmethod
    def set_choice_text(choice: dict[str, Any], text: str, streaming: bool) -> None:
        choice["text"] = text


GenerationRequest = ChatCompletionRequest | CompletionRequest
