"""One output watch over every field of a choice that carries generated text.

    watch = ChoiceWatch(ctx, request)
    if not await watch.feed(choice, streaming=True, final=False):
        ...  # blocked: the choice ends with the suppression answer

A choice's text travels in several channels: the content (``message``/``delta`` for chat,
``text`` for completions), the reasoning (``reasoning``, or ``reasoning_content`` in older
vLLM), each tool call's name and arguments, and the tokens of its log-probabilities. Each text
channel has its own ``OutputWatcher``, which releases text only once every layer has checked it.
Log-probability entries (their tokens are text too) wait until every channel has released the text
received with them; a blocked choice never sends the entries it held. Where the conversation is
related to a forget request, the alternatives of each token (``top_logprobs``) are cut to the
token itself: an alternative is text the model did not write, so no watch ever reads it.
"""

from __future__ import annotations

from typing import Any

from gateway.openai.protocol import CompletionRequest, GenerationRequest
from suppressors.base import RequestContext
from suppressors.stack import OutputWatcher

REASONING = ("reasoning", "reasoning_content")


class ChoiceWatch:
    """The watch of one choice (one per ``index``), for a whole answer or a stream."""

    def __init__(self, ctx: RequestContext, request: GenerationRequest):
        self.ctx = ctx
        self.completions = isinstance(request, CompletionRequest)
        self.watchers: dict[str, OutputWatcher] = {}
        self.received: dict[str, int] = {}
        self.pending: list[tuple[dict[str, int], Any]] = []
        """Log-probability entries, each with the text per channel that must be out first."""

    async def feed(
        self, choice: dict[str, Any], streaming: bool, final: bool, check: bool = True
    ) -> bool:
        """Replace ``choice``'s fields by what may be released; False once it is blocked.
        ``check=False``: more of this choice follows at once; release nothing yet."""
        channels = self._channels(choice, streaming)
        for channel in self.watchers.keys() - channels.keys():
            # What earlier chunks left held back in a channel this one does not carry, at the
            # end; or left unchecked (reasoning, then content, in one read), at this check.
            held = self.watchers[channel]
            if final or (check and held.checked < len(held.text)):
                channels[channel] = ("", self._late_setter(choice, streaming, channel))
        for channel, (text, put) in channels.items():
            watcher = self.watchers.setdefault(channel, OutputWatcher(self.ctx))
            self.received[channel] = self.received.get(channel, 0) + len(text)
            released = await watcher.feed(text, final, check)
            if released is None:
                return False
            if released or text:
                put(released)
        self._hold_logprobs(choice)
        return True

    def _late_setter(self, choice: dict[str, Any], streaming: bool, channel: str) -> Any:
        """A setter that adds ``channel``'s field to a choice that lacks it."""
        message = choice.setdefault("delta" if streaming else "message", {})
        if not channel.startswith("tool "):
            return _setter(message, channel)
        _, index, part = channel.split()
        call = {"index": int(index), "function": {}}
        message.setdefault("tool_calls", []).append(call)
        return _setter(call["function"], part)

    def _channels(self, choice: dict[str, Any], streaming: bool) -> dict[str, tuple[str, Any]]:
        """Channel -> (its new text in this choice, a setter for the released text)."""
        if self.completions:
            return {"content": (choice.get("text") or "", _setter(choice, "text"))}
        message = choice.get("delta" if streaming else "message") or {}
        channels = {"content": (message.get("content") or "", _setter(message, "content"))}
        for key in REASONING:
            if message.get(key):
                channels[key] = (message[key], _setter(message, key))
        for position, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            index = call.get("index", position)
            for part in ("name", "arguments"):
                if function.get(part):
                    channels[f"tool {index} {part}"] = (function[part], _setter(function, part))
        return channels

    def _hold_logprobs(self, choice: dict[str, Any]) -> None:
        """Keep back the choice's log-probability entries until their text is out."""
        logprobs = choice.get("logprobs")
        if not logprobs:
            return
        entries = _rows(logprobs) if self.completions else list(logprobs.get("content") or [])
        needed = dict(self.received)
        self.pending.extend((needed, entry) for entry in entries)
        out = 0
        while out < len(self.pending) and self._released(self.pending[out][0]):
            out += 1
        ready, self.pending = [e for _, e in self.pending[:out]], self.pending[out:]
        if self.ctx.matches:
            ready = [_only_chosen(e, self.completions) for e in ready]
        if self.completions:
            choice["logprobs"] = _columns(ready)
        else:
            choice["logprobs"] = {**logprobs, "content": ready}

    def _released(self, needed: dict[str, int]) -> bool:
        return all(self.watchers[c].released >= n for c, n in needed.items())


def _setter(holder: dict[str, Any], key: str) -> Any:
    def put(text: str) -> None:
        holder[key] = text

    return put


_COLUMNS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


def _rows(logprobs: dict[str, Any]) -> list[dict[str, Any]]:
    """The completions API's columns (``tokens``, ``token_logprobs``, ...) as one row per token."""
    columns = {k: logprobs.get(k) or [] for k in _COLUMNS}
    return [{k: columns[k][i] if i < len(columns[k]) else None for k in _COLUMNS}
            for i in range(len(columns["tokens"]))]  # fmt: skip


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: [row[k] for row in rows] for k in _COLUMNS}


def _only_chosen(entry: dict[str, Any], completions: bool) -> dict[str, Any]:
    """The entry with its alternatives cut to its own token."""
    if completions:
        top, token = entry.get("top_logprobs"), entry["tokens"]
        kept = {token: top.get(token, entry["token_logprobs"])} if isinstance(top, dict) else top
        return {**entry, "top_logprobs": kept}
    top = [t for t in entry.get("top_logprobs") or [] if t.get("token") == entry.get("token")]
    return {**entry, "top_logprobs": top}
