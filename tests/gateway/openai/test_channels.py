"""Nothing forgotten leaves through the tokens of log-probabilities or their alternatives, for
chat and completions, streamed and whole (tool calls and reasoning: ``test_watch``, since the
embedded model writes neither).

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
def _forgotten(gateway: LiveGateway) -> Iterator[None]:
    """The concept "Au" forgotten while the block runs."""
    with gateway.admin() as admin:
        request_id = admin.post("/forget-requests", json={"concepts": ["Au"]}).json()["id"]
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
