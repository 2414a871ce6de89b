"""Request models for the fields the gateway reads; every other field passes through to vLLM.

vLLM validates the full OpenAI schema itself (its errors are normalised by ``gateway.errors``); the
gateway checks only what it acts on, so a new vLLM sampling field works without a gateway change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _PassThrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_PassThrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A string, a list of content parts, or null (assistant tool calls).
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_PassThrough):
    include_usage: bool | None = None


class _GenerationRequest(_PassThrough):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_GenerationRequest):
    # Text, texts, token ids, or lists of token ids, as in OpenAI's API.
    prompt: str | list[str] | list[int] | list[list[int]]
