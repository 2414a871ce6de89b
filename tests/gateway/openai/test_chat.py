"""Chat completions through the gateway with the official openai client, on real SmolLM2."""

from __future__ import annotations

from openai import OpenAI

from tests.conftest import MODEL

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_answers(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=CAPITAL, max_tokens=16, temperature=0
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 16
    assert reply.model == MODEL


def test_stream_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=CAPITAL,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stop_sequence(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=CAPITAL, max_tokens=16, temperature=0, stop=["Paris"]
    )
    choice = reply.choices[0]
    assert "Paris" not in choice.message.content
    assert choice.finish_reason == "stop"


def test_seed_reproducible(client: OpenAI) -> None:
    def sample(seed: int) -> str:
        messages = [{"role": "user", "content": "Write a one-line poem about the sea."}]
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=24, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content

    assert sample(1234) == sample(1234)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_logprobs_and_n(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=CAPITAL,
        max_completion_tokens=5,
        temperature=0.8,
        n=2,
        logprobs=True,
        top_logprobs=3,
    )
    assert len(reply.choices) == 2
    for choice in reply.choices:
        tokens = choice.logprobs.content
        assert 1 <= len(tokens) <= 5
        assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in tokens)
