"""Nothing forgotten leaves through the tokens of log-probabilities or their alternatives, for
chat and completions, streamed and whole, nor through a forced tool call's arguments (reasoning:
``test_watch``, since the embedded model writes none).

The embedded model answers "What is the chemical symbol for gold?" with " Au"; once the concept
"Au" is forgotten, the question itself passes the input check, so only the output watch stands
between the answer and the client. Each test first shows that the field carries " Au" before the
forget request, so it would fail without the watch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.conftest import MODEL, LiveGateway

QUESTION = [{"role": "user", "content": "What is the chemical symbol for gold?"}]
PROMPT = "Question: What is the chemical symbol for gold?\nAnswer: The chemical symbol for gold is"


@contextlib.contextmanager
def _forgotten(gateway: LiveGateway, concept: str = "Au") -> Iterator[None]:
    """The concept forgotten while the block runs."""
    with gateway.admin() as admin:
        request_id = admin.post("/forget-requests", json={"concepts": [concept]}).json()["id"]
        try:
            yield
        finally:
            admin.delete(f"/forget-requests/{request_id}")


def chat_tokens(client: OpenAI, stream: bool) -> tuple[str, list[str]]:
    """The answer's text and every token its log-probabilities carry, alternatives included."""
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stream=stream,
        logprobs=True, top_logprobs=5,
    )  # fmt: skip
    choices = [c.choices[0] for c in reply if c.choices] if stream else [reply.choices[0]]
    text = "".join((c.delta.content if stream else c.message.content) or "" for c in choices)
    entries = [e for c in choices if c.logprobs for e in c.logprobs.content or []]
    return text, [t for e in entries for t in [e.token, *(a.token for a in e.top_logprobs)]]


def completion_tokens(client: OpenAI, stream: bool) -> tuple[str, list[str]]:
    reply = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stream=stream, logprobs=5
    )
    choices = [c.choices[0] for c in reply if c.choices] if stream else [reply.choices[0]]
    text = "".join(c.text or "" for c in choices)
    logprobs = [c.logprobs for c in choices if c.logprobs]
    tokens = [t for lp in logprobs for t in lp.tokens or []]
    alternatives = [t for lp in logprobs for top in lp.top_logprobs or [] for t in top or {}]
    return text, tokens + alternatives


def has_au(tokens: list[str]) -> bool:
    return any("Au" in token for token in tokens)


@pytest.mark.parametrize("stream", [True, False])
def test_logprob_tokens_do_not_leak(gateway: LiveGateway, stream: bool) -> None:
    client = gateway.client()
    for read in (chat_tokens, completion_tokens):
        text, tokens = read(client, stream)
        assert "Au" in text and has_au(tokens), read.__name__
    with _forgotten(gateway):
        for read in (chat_tokens, completion_tokens):
            text, tokens = read(client, stream)
            assert "Au" not in text and not has_au(tokens), (read.__name__, text, tokens)


RECORD = {"type": "function", "function": {
    "name": "record_fact", "description": "Record the answer to the user's question.",
    "parameters": {"type": "object", "properties": {"answer": {"type": "string"}},
                   "required": ["answer"]}}}  # fmt: skip
# Forced to call the tool, the embedded model records "Aristotle" as Hamlet's author: a name the
# question does not give away.
TOOL_QUESTION = [{"role": "user", "content": "Who wrote Hamlet?"}]


def tool_arguments(client: OpenAI, stream: bool) -> str:
    """The arguments of the forced tool call, as the client reads them."""
    reply = client.chat.completions.create(
        model=MODEL, messages=TOOL_QUESTION, max_tokens=64, temperature=0, stream=stream,
        tools=[RECORD], tool_choice={"type": "function", "function": {"name": "record_fact"}},
    )  # fmt: skip
    if not stream:
        return "".join(c.function.arguments for c in reply.choices[0].message.tool_calls or [])
    deltas = [c.choices[0].delta for c in reply if c.choices]
    return "".join(t.function.arguments or "" for d in deltas for t in d.tool_calls or [])


@pytest.mark.parametrize("stream", [True, False])
def test_tool_call_arguments_do_not_leak(gateway: LiveGateway, stream: bool) -> None:
    """A named tool choice (vLLM refuses one without a tool-call parser: the gateway starts its
    vLLM with one) carries the answer in the call's arguments."""
    client = gateway.client()
    assert "Aristotle" in tool_arguments(client, stream)
    with _forgotten(gateway, "Aristotle"):
        arguments = tool_arguments(client, stream)
        assert "Aristotle" not in arguments, arguments
