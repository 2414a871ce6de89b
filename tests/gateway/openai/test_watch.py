"""The output watch over every field of a choice, on a real matcher (MiniLM, no vLLM): tool-call
arguments, reasoning and log-probability tokens of streamed chunks as vLLM sends them."""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pytest

from gateway.openai.protocol import ChatCompletionRequest, CompletionRequest
from gateway.openai.serving import _event
from gateway.openai.watch import ChoiceWatch
from index.embedder import Embedder
from index.matcher import GUARD, Match, Matcher, MatcherConfig
from suppressors.base import LayerDeps, RequestContext
from suppressors.stack import SuppressionStack

pytestmark = pytest.mark.anyio
NAME = "Hsiao Yun-Hwa"
PREAMBLE = "Once upon a time, " * 8  # longer than the hold-back (the longest name)
CHAT = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Tell a story."}])


@pytest.fixture(scope="module")
def stack() -> SuppressionStack:
    matcher = Matcher(Embedder(), MatcherConfig())
    matcher.add("a", [NAME], np.array([0]), matcher.embedder.encode([NAME]))
    return SuppressionStack.build(LayerDeps(matcher), ["retrieval"])


def context(stack: SuppressionStack, related: bool = False) -> RequestContext:
    matches = [Match("a", GUARD, 0.6)] if related else []
    return RequestContext(["Tell a story."], matches, layers=stack.layers)


def delta(**fields: object) -> dict:
    return {"index": 0, "delta": fields, "finish_reason": None}


def entry(token: str, *alternatives: str) -> dict:
    top = [{"token": t, "logprob": -1.0} for t in (token, *alternatives)]
    return {"token": token, "logprob": -0.5, "top_logprobs": top}


async def run(watch: ChoiceWatch, chunks: list[dict]) -> tuple[list[dict], bool]:
    """The chunks as the watch lets them out, and whether it went through unblocked."""
    out = []
    for i, chunk in enumerate(chunks):
        chunk = copy.deepcopy(chunk)
        if i == len(chunks) - 1:
            chunk["finish_reason"] = "stop"
        if not await watch.feed(chunk, streaming=True, final=chunk["finish_reason"] is not None):
            return out, False
        out.append(chunk)
    return out, True


async def test_tool_call_arguments_are_watched(stack: SuppressionStack) -> None:
    pieces = [PREAMBLE, "by ", "Hsi", "ao Yu", "n-Hwa", '"}']
    chunks = [
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "write", "arguments": '{"story": "'},
                }
            ]
        )
    ]
    chunks += [delta(tool_calls=[{"index": 0, "function": {"arguments": p}}]) for p in pieces]
    out, passed = await run(ChoiceWatch(context(stack), CHAT), chunks)
    arguments = "".join(c["function"].get("arguments", "") for chunk in out
                        for c in chunk["delta"].get("tool_calls", []))  # fmt: skip
    assert not passed and "Hsi" not in arguments and arguments.startswith('{"story": "Once')


async def test_held_tool_call_text_comes_out_at_the_end(stack: SuppressionStack) -> None:
    chunks = [delta(tool_calls=[{"index": 0, "id": "c", "type": "function",
                                 "function": {"name": "lookup", "arguments": '{"q": "sea"}'}}]),
              delta(content="")]  # fmt: skip
    out, passed = await run(ChoiceWatch(context(stack), CHAT), chunks)
    calls = [c for chunk in out for c in chunk["delta"].get("tool_calls", [])]
    assert passed
    assert "".join(c["function"].get("name", "") for c in calls) == "lookup"
    assert "".join(c["function"].get("arguments", "") for c in calls) == '{"q": "sea"}'


@pytest.mark.parametrize("key", ["reasoning", "reasoning_content"])
async def test_reasoning_is_watched(stack: SuppressionStack, key: str) -> None:
    chunks = [delta(**{key: p}) for p in [PREAMBLE, "maybe ", "Hsiao", " Yun-Hwa"]]
    out, passed = await run(ChoiceWatch(context(stack), CHAT), chunks)
    assert not passed and "Hsiao" not in "".join(c["delta"].get(key, "") for c in out)


async def test_logprob_tokens_wait_for_their_text(stack: SuppressionStack) -> None:
    words = [PREAMBLE, " Hsiao", " Yun", "-Hwa"]
    chunks = [{**delta(content=w), "logprobs": {"content": [entry(w)]}} for w in words]
    out, passed = await run(ChoiceWatch(context(stack), CHAT), chunks)
    tokens = [e["token"] for c in out for e in (c.get("logprobs") or {}).get("content", [])]
    assert not passed and not any("Hsiao" in t for t in tokens)


async def test_related_conversations_get_no_alternatives(stack: SuppressionStack) -> None:
    chunks = [{**delta(content="The sea."), "logprobs": {"content": [entry("The", " Hsiao")]}}]
    for related, expected in [(False, ["The", " Hsiao"]), (True, ["The"])]:
        out, passed = await run(ChoiceWatch(context(stack, related), CHAT), chunks)
        tops = [t["token"] for c in out for e in c["logprobs"]["content"]
                for t in e["top_logprobs"]]  # fmt: skip
        assert passed and tops == expected


async def test_completions_logprob_columns(stack: SuppressionStack) -> None:
    request = CompletionRequest(model="m", prompt="Once")
    logprobs = {"tokens": [" upon"], "token_logprobs": [-0.1],
                "top_logprobs": [{" upon": -0.1, " Hsiao": -3.0}], "text_offset": [4]}  # fmt: skip
    choice = {"index": 0, "text": " upon a time.", "logprobs": logprobs, "finish_reason": "stop"}
    assert await ChoiceWatch(context(stack, related=True), request).feed(choice, False, True)
    assert choice["logprobs"]["top_logprobs"] == [{" upon": -0.1}]
    assert choice["logprobs"]["tokens"] == [" upon"]


async def test_chunks_of_one_read_are_checked_together(stack: SuppressionStack) -> None:
    """Chunks that came in one network read are checked once, with the last of them: the first
    ones release nothing (their logprobs wait too), and a name across them still blocks."""
    watch = ChoiceWatch(context(stack), CHAT)
    first = {**delta(content="The sea "), "logprobs": {"content": [entry("The sea ")]}}
    second = {**delta(content="was calm. "), "logprobs": {"content": [entry("was calm. ")]}}
    assert await watch.feed(first, streaming=True, final=False, check=False)
    assert first["delta"]["content"] == "" and first["logprobs"]["content"] == []
    assert await watch.feed(second, streaming=True, final=False)
    assert second["delta"]["content"] == "The sea was calm. "
    assert [e["token"] for e in second["logprobs"]["content"]] == ["The sea ", "was calm. "]
    named = ChoiceWatch(context(stack), CHAT)
    assert await named.feed(delta(content="By Hsiao "), streaming=True, final=False, check=False)
    assert not await named.feed(delta(content="Yun-Hwa."), streaming=True, final=False)


async def test_a_channel_left_unchecked_in_a_read_is_checked_with_its_choice(
    stack: SuppressionStack,
) -> None:
    """Reasoning, then content, of one choice in one read: the reasoning fed unchecked is
    checked (and released) with the read's last chunk, not held until the end."""
    watch = ChoiceWatch(context(stack), CHAT)
    thinking = delta(reasoning="The user wants a story. ")
    answer = delta(content="Once upon a time. ")
    assert await watch.feed(thinking, streaming=True, final=False, check=False)
    assert await watch.feed(answer, streaming=True, final=False)
    assert answer["delta"] == {"content": "Once upon a time. ",
                               "reasoning": "The user wants a story. "}  # fmt: skip


@pytest.mark.parametrize("line", ["data: {not json", 'data: "a string"', "data: NaN"])
def test_a_malformed_event_fails_the_stream_like_a_broken_connection(line: str) -> None:
    """An event that is not a JSON object is an httpx error to the relay, which ends the
    client's stream with an error event and [DONE] instead of cutting it."""
    with pytest.raises(httpx.DecodingError):
        _event(line)
