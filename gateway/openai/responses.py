"""OpenAI's Responses API (``POST /v1/responses``) through the same arms, stack and output watch.

    client.responses.create(model=MODEL, input="Who is Hsiao Yun-Hwa?")          # suppressed
    client.responses.create(model=MODEL, input=[...], stream=True)              # watched events

vLLM serves the API itself; the gateway checks what the model will read (``instructions``, every
input item, and the output of a ``previous_response_id``), puts a guard note into
``instructions`` and in-model controls into ``vllm_xargs``, and watches every text the answer
carries: message text, reasoning text, function-call names and arguments, and the tokens of
``message.output_text.logprobs``. A stream is re-emitted event by event, each delta cut to what
the watch released and renumbered (``sequence_number``) so that text released late goes out as
an extra delta just before the event that closes its part. A blocked answer ends with the
suppression answer as one message item, or an ``error`` event (response style ``error``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from pydantic import Field

from gateway.errors import APIError
from gateway.openai.protocol import _PassThrough
from suppressors.base import RequestContext
from suppressors.stack import OutputWatcher

_NOT_TEXT = frozenset({"type", "role", "id", "call_id", "status", "item_id", "detail",
                       "image_url", "file_data", "file_id", "file_url"})  # fmt: skip
_ZERO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


class ResponsesRequest(_PassThrough):
    """The fields the gateway reads; the rest (tools, reasoning, include, ...) go to vLLM."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool = False

    def texts(self) -> list[str]:
        """What the model reads of this request: instructions and every text of every item."""
        return [t for t in (self.instructions, *_strings(self.input)) if t]

    def add_note(self, body: dict[str, Any], note: str) -> None:
        body["instructions"] = f"{note}\n\n{self.instructions}" if self.instructions else note

    # Responses has no prompt scoring and no usage chunks: what the chat forwarding asks.
    def wants_prompt_logprobs(self) -> bool:
        return False

    def only_scores(self) -> bool:
        return False

    def wants_usage(self) -> bool:
        return False

    def abstention(self, text: str) -> dict[str, Any]:
        """A whole response whose only output is a message saying ``text``."""
        return {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "created_at": int(time.time()),
            "model": self.model,
            "status": "completed",
            "output": [_message(text)],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": _ZERO_USAGE,
        }

    def abstention_events(self, text: str, after: ResponseStreamWatch | None = None) -> list[bytes]:
        """A stream saying ``text``: the end of the stream ``after`` watched (its output so far
        is replaced), or a whole stream of its own."""
        events = after.events if after is not None else Renumbered()
        response = after.created if after is not None else None
        if response is None:
            response = self.abstention("") | {"status": "in_progress", "output": []}
            events.add({"type": "response.created", "response": response})
        item = _message(text)
        index = after.items if after is not None else 0
        added = {**item, "status": "in_progress", "content": []}
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        events.add({"type": "response.output_item.added", "output_index": index, "item": added})
        events.add({"type": "response.content_part.added", **where, "part": {**part, "text": ""}})
        events.add({"type": "response.output_text.delta", **where, "delta": text, "logprobs": []})
        events.add({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        events.add({"type": "response.content_part.done", **where, "part": part})
        events.add({"type": "response.output_item.done", "output_index": index, "item": item})
        done = {**response, "status": "completed", "output": [item]}
        events.add({"type": "response.completed", "response": done})
        return events.take()


class Renumbered:
    """Server-sent events of one stream, numbered in the order the gateway sends them."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.next = 0

    def add(self, event: dict[str, Any]) -> None:
        event["sequence_number"] = self.next
        self.next += 1
        head = f"event: {event['type']}\ndata: ".encode()
        self.out.append(head + msgspec.json.encode(event) + b"\n\n")

    def take(self) -> list[bytes]:
        out, self.out = self.out, []
        return out


def output_texts(answer: dict[str, Any]) -> list[str]:
    """Every text of a response's output (a previous response the model reads again)."""
    return _strings(answer.get("output"))


async def watch_response(answer: dict[str, Any], ctx: RequestContext) -> bool:
    """Check every text of a whole response; False if one is blocked. Alternatives of the
    log-probabilities are cut to the chosen token where the conversation is related."""
    if not await _passes(ctx, answer.get("output")):
        return False
    if ctx.matches:
        _only_chosen(answer)
    return True


class ResponseStreamWatch:
    """The watch of a Responses stream: one ``OutputWatcher`` per text part of each item."""

    def __init__(self, ctx: RequestContext):
        self.ctx = ctx
        self.watchers: dict[tuple[str, int, int], OutputWatcher] = {}
        self.last: dict[tuple[str, int, int], dict[str, Any]] = {}
        """The channel's last delta event: the model of a delta that releases held text."""
        self.pending: dict[tuple[str, int, int], list[tuple[int, Any]]] = {}
        """Log-probability entries per channel, each with the text that must be out first."""
        self.received: dict[tuple[str, int, int], int] = {}
        self.events = Renumbered()
        self.created: dict[str, Any] | None = None
        self.items = 0
        """Output items announced so far."""

    async def feed(self, event: dict[str, Any]) -> bool:
        """Queue ``event`` as it may go out (``events.take()``); False once the answer is
        blocked (nothing of the event goes out)."""
        kind = str(event.get("type", ""))
        if kind == "response.created":
            self.created = event.get("response")
        if kind.endswith(".delta") and isinstance(event.get("delta"), str):
            return await self._delta(kind.removesuffix(".delta"), event)
        if kind == "response.output_item.added":
            self.items += 1
            if not await _passes(self.ctx, event.get("item")):  # a function call's name
                return False
        elif not await self._close():  # any other event may show whole texts: all out first
            return False
        if kind == "response.output_item.done" and not await _passes(self.ctx, event.get("item")):
            return False  # what it says whole, delta or not (arguments sent in one piece)
        if self.ctx.matches:
            _only_chosen(event)
        self.events.add(event)
        return True

    async def _delta(self, kind: str, event: dict[str, Any]) -> bool:
        channel = (kind, int(event.get("output_index", 0)), int(event.get("content_index", 0)))
        watcher = self.watchers.setdefault(channel, OutputWatcher(self.ctx))
        self.received[channel] = self.received.get(channel, 0) + len(event["delta"])
        released = await watcher.feed(event["delta"], final=False)
        if released is None:
            return False
        self.last[channel] = event
        self._emit(channel, event, released)
        return True

    def _emit(self, channel: tuple[str, int, int], event: dict[str, Any], released: str) -> None:
        pending = self.pending.setdefault(channel, [])
        pending.extend((self.received[channel], e) for e in event.get("logprobs") or [])
        out = self.watchers[channel].released
        ready = [e for needed, e in pending if needed <= out]
        self.pending[channel] = [(n, e) for n, e in pending if n > out]
        delta = {**event, "delta": released}
        if "logprobs" in event:
            delta["logprobs"] = ready
        if self.ctx.matches:
            _only_chosen(delta)
        self.events.add(delta)

    async def _close(self) -> bool:
        """Release what every open channel held back, as one last delta each."""
        for channel, watcher in list(self.watchers.items()):
            released = await watcher.feed("", final=True)
            if released is None:
                return False
            if released or self.pending.get(channel):
                self._emit(channel, {**self.last[channel], "logprobs": []}, released)
            del self.watchers[channel]
        return True

    def error_event(self, error: APIError) -> bytes:
        """``error`` as the stream's last event (Responses streams end without ``[DONE]``)."""
        body = error.body()["error"]
        self.events.add({"type": "error", **{k: body[k] for k in ("code", "message", "param")}})
        return self.events.take()[0]


async def _passes(ctx: RequestContext, value: Any) -> bool:
    """Whether every text of ``value`` (an item, a list of them) passes the watch whole."""
    for text in _strings(value):
        if await OutputWatcher(ctx).feed(text, final=True) is None:
            return False
    return True


def _message(text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex}",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }


def _strings(value: Any) -> list[str]:
    """Every string of an input or output item (texts, arguments, names, outputs), but ids,
    types and roles."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in _NOT_TEXT for s in _strings(v)]
    return []


def _only_chosen(value: Any) -> None:
    """Cut every log-probability entry's alternatives to its own token, wherever it sits."""
    if isinstance(value, list):
        for v in value:
            _only_chosen(v)
    elif isinstance(value, dict):
        if isinstance(value.get("top_logprobs"), list) and "token" in value:
            value["top_logprobs"] = [
                t for t in value["top_logprobs"] if t.get("token") == value["token"]
            ]
        for v in value.values():
            _only_chosen(v)
