"""``POST /v1/responses`` through the gateway with the official client, on the embedded model:
answered as vLLM answers, suppressed like chat (streamed and whole), and watched in every text an
answer carries (the function-call and reasoning events vLLM streams, on a real matcher, since
the embedded model writes neither).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import openai
import pytest
from openai import OpenAI

from gateway.openai.responses import ResponsesRequest, ResponseStreamWatch
from index.embedder import Embedder
from index.matcher import GUARD, Match, Matcher, MatcherConfig
from suppressors.base import LayerDeps, RequestContext
from suppressors.stack import SuppressionStack
from tests.conftest import MODEL, LiveGateway
from tests.gateway.openai.test_channels import QUESTION, _forgotten, has_au

ABSTAIN = "I'm sorry, but I don't have any information about that."  # the default


def answer(client: OpenAI, stream: bool, **fields: object) -> tuple[str, str, list[str], str]:
    """(the response's output text, all text the client was sent, every log-probability token
    with its alternatives, the response's status)."""
    reply = client.responses.create(
        model=MODEL, max_output_tokens=24, temperature=0, stream=stream,
        include=["message.output_text.logprobs"], top_logprobs=5, **fields,
    )  # fmt: skip
    if not stream:
        entries = [e for item in reply.output if item.type == "message"
                   for part in item.content for e in part.logprobs or []]  # fmt: skip
        tokens = [t for e in entries for t in [e.token, *(a.token for a in e.top_logprobs)]]
        return reply.output_text, reply.output_text, tokens, reply.status
    events = list(reply)
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))  # renumbered where the watch changed the stream
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    sent = "".join(e.delta for e in deltas)
    tokens = [t for e in deltas for lp in e.logprobs or []
              for t in [lp.token, *(a.token for a in lp.top_logprobs or [])]]  # fmt: skip
    (completed,) = [e for e in events if e.type == "response.completed"]
    # A blocked stream ends with the suppression answer after what had been released.
    assert sent.endswith(completed.response.output_text)
    return completed.response.output_text, sent, tokens, completed.response.status


@pytest.mark.parametrize("stream", [False, True])
def test_responses_answer_like_vllm(client: OpenAI, stream: bool) -> None:
    text, sent, tokens, status = answer(client, stream, input="What is the capital of France?")
    assert "Paris" in text and sent == text and tokens and status in ("completed", "incomplete")


@pytest.mark.parametrize("stream", [False, True])
def test_responses_leak_nothing_forgotten(gateway: LiveGateway, stream: bool) -> None:
    """The question passes the input check; only the watch stands between " Au" and the client,
    in the text and in the log-probability tokens."""
    client = gateway.client()
    question = QUESTION[0]["content"]
    text, _, tokens, _ = answer(client, stream, input=question)
    assert "Au" in text and has_au(tokens)
    with _forgotten(gateway):
        _, sent, tokens, _ = answer(client, stream, input=question)
        assert "Au" not in sent and not has_au(tokens), (sent, tokens)


@pytest.mark.parametrize("stream", [False, True])
def test_a_forgotten_subject_is_suppressed_in_every_input(gateway: LiveGateway, stream: bool):
    client = gateway.client()
    with gateway.admin() as admin:
        created = admin.post("/forget-requests", json={"subject": "Marie Curie"}).json()
        try:
            inputs = [
                {"input": "What did Marie Curie discover?"},
                {"input": "Answer briefly.", "instructions": "The topic is Marie Curie."},
                {"input": [{"role": "user", "content": [
                    {"type": "input_text", "text": "Who was Marie Curie's husband?"}]}]},
            ]  # fmt: skip
            for fields in inputs:
                text, sent, tokens, status = answer(client, stream, **fields)
                assert (text, sent, tokens, status) == (ABSTAIN, ABSTAIN, [], "completed"), fields
            raw = client.responses.with_raw_response.create(
                model=MODEL, input="What did Marie Curie discover?", max_output_tokens=8
            )
            assert "retrieval" in raw.headers["x-obliviate-layers"]
        finally:
            admin.delete(f"/forget-requests/{created['id']}")


def test_bad_responses_requests_are_openai_errors(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        client.post("/responses", body={"model": MODEL}, cast_to=object)
    assert missing.value.param == "input"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="Hi", previous_response_id="resp_nothing")


def test_passthrough_routes_answer_with_the_same_auth(gateway: LiveGateway) -> None:
    with gateway.http() as http:
        tokens = http.post("/tokenize", json={"model": MODEL, "prompt": "Hello world"})
        assert tokens.status_code == 200 and tokens.json()["tokens"]
        text = http.post("/detokenize", json={"model": MODEL, "tokens": tokens.json()["tokens"]})
        assert text.json()["prompt"].endswith("Hello world")
        bad = http.post("/tokenize", content=b"{")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    anonymous = OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.post("/../tokenize", body={"model": MODEL, "prompt": "Hi"}, cast_to=object)


# The stream watch on vLLM's event shapes (reasoning, function calls), with a real matcher.

NAME = "Hsiao Yun-Hwa"
PREAMBLE = "Once upon a time, " * 8  # longer than the hold-back (the longest name)


@pytest.fixture(scope="module")
def stack() -> SuppressionStack:
    matcher = Matcher(Embedder(), MatcherConfig())
    matcher.add("a", [NAME], np.array([0]), matcher.embedder.encode([NAME]))
    return SuppressionStack.build(LayerDeps(matcher), ["retrieval"])


def stream_of(kind: str, pieces: list[str], item: dict) -> list[dict]:
    """vLLM's events for one output item whose text arrives as ``pieces``."""
    where = {"item_id": "x_1", "output_index": 0, "content_index": 0}
    events = [{"type": "response.created", "response": {"id": "resp_1", "output": []}},
              {"type": "response.output_item.added", "output_index": 0, "item": item}]  # fmt: skip
    events += [{"type": f"{kind}.delta", **where, "delta": p} for p in pieces]
    whole = {**item, "arguments": "".join(pieces)} if "arguments" in item else item
    events += [
        {"type": f"{kind}.done", **where, "text": "".join(pieces)},
        {"type": "response.output_item.done", "output_index": 0, "item": whole},
        {"type": "response.completed", "response": {"id": "resp_1", "output": [whole]}},
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]  # fmt: skip


async def watched(
    stack: SuppressionStack, events: list[dict], related: bool = False
) -> tuple[list[dict], bool]:
    matches = [Match("a", GUARD, 0.6)] if related else []
    ctx = RequestContext(["Tell a story."], matches, layers=stack.layers)
    watch = ResponseStreamWatch(ctx)
    for event in copy.deepcopy(events):
        if not await watch.feed(event):
            tail = ResponsesRequest(model="m", input="Tell a story.").abstention_events(
                ABSTAIN, watch
            )
            out = [json.loads(e.split(b"data: ", 1)[1]) for e in watch.events.take() + tail]
            return out, False
    return [json.loads(e.split(b"data: ", 1)[1]) for e in watch.events.take()], True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "item"),
    [
        ("response.function_call_arguments",
         {"type": "function_call", "id": "fc_1", "name": "lookup", "arguments": ""}),
        ("response.reasoning_text", {"type": "reasoning", "id": "rs_1", "content": []}),
        ("response.output_text", {"type": "message", "id": "msg_1", "content": []}),
    ],
)  # fmt: skip
async def test_every_streamed_text_is_watched(stack: SuppressionStack, kind: str, item: dict):
    pieces = [PREAMBLE, "by ", "Hsi", "ao Yu", "n-Hwa", '"}']
    out, through = await watched(stack, stream_of(kind, pieces, item))
    assert not through
    sent = "".join(e.get("delta", "") for e in out if e["type"] == f"{kind}.delta")
    assert sent.startswith("Once upon") and "Hsi" not in sent  # no prefix of the name went out
    assert out[-1]["type"] == "response.completed"
    assert out[-1]["response"]["output"][0]["content"][0]["text"] == ABSTAIN
    assert [e["sequence_number"] for e in out] == list(range(len(out)))

    harmless = [PREAMBLE, "by ", "Hsi", "ao ", "Ling"]
    out, through = await watched(stack, stream_of(kind, harmless, item))
    assert through
    sent = "".join(e.get("delta", "") for e in out if e["type"] == f"{kind}.delta")
    assert sent == "".join(harmless)  # what was held back goes out before the part closes
    closing = [i for i, e in enumerate(out) if e["type"] == f"{kind}.done"]
    last_delta = max(i for i, e in enumerate(out) if e["type"] == f"{kind}.delta")
    assert last_delta < closing[0]


@pytest.mark.anyio
async def test_a_function_name_is_watched(stack: SuppressionStack) -> None:
    item = {"type": "function_call", "id": "fc_1", "name": "Hsiao Yun-Hwa", "arguments": ""}
    out, through = await watched(stack, stream_of("response.function_call_arguments", ["{}"], item))
    assert not through and all(e["type"] != "response.output_item.added" or
                               e["item"]["type"] == "message" for e in out)  # fmt: skip


@pytest.mark.anyio
async def test_logprob_tokens_wait_and_lose_their_alternatives(stack: SuppressionStack) -> None:
    item = {"type": "message", "id": "msg_1", "content": []}
    events = stream_of("response.output_text", ["The sea.", " The sky."], item)
    for event in events:
        if event["type"] == "response.output_text.delta":
            top = [{"token": event["delta"], "logprob": -1.0}, {"token": " Hsiao", "logprob": -2}]
            event["logprobs"] = [{"token": event["delta"], "logprob": -1.0, "top_logprobs": top}]
    for related, expected in [(False, {" Hsiao"}), (True, set())]:
        out, through = await watched(stack, events, related)
        tokens = {t["token"] for e in out if e["type"] == "response.output_text.delta"
                  for lp in e["logprobs"] for t in lp["top_logprobs"]}  # fmt: skip
        assert through and tokens - {"The sea.", " The sky."} == expected
