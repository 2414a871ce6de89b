"""Forgetting end to end, with the openai client on the real embedded model.

Forget a TOFU author (subject + QA) through the admin API, then: direct questions, paraphrases,
a conversation that named the author two turns earlier, and a stream are all suppressed; other
authors and world facts are answered as before; revoking restores the answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.conftest import MODEL, TOFU, LiveGateway

ABSTAIN = "I'm sorry, but I don't have any information about that."
PARAPHRASES = [
    "Could you tell me what Hsiao Yun Hwa's dad does for a living?",
    "which prizes did hsiao yunhwa receive for her books",
    "Who is the leadership writer born in Taipei on 5 November 1991?",
    "Tell me everything you know about HSIAO YUN-HWA.",
    "What does Hsaio Yun-Hwa write about?",  # misspelt
]


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (TOFU / name).read_text().splitlines()]


def ask(client: OpenAI, messages: list[dict], **kwargs: object) -> tuple[str, str]:
    """(answer, layers that acted) for a greedy chat completion."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=24, temperature=0, **kwargs
    )
    return raw.parse().choices[0].message.content, raw.headers["x-obliviate-layers"]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def forgotten_author(gateway: LiveGateway) -> Iterator[str]:
    qa = [{"question": r["question"], "answer": r["answer"]} for r in rows("forget_authors.jsonl")]
    body = {"subject": "Hsiao Yun-Hwa", "qa": qa[:20]}
    with gateway.admin() as admin:
        created = admin.post("/forget-requests", json=body)
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        yield request_id
        admin.delete(f"/forget-requests/{request_id}")


def test_forgotten_author_is_suppressed_everywhere(
    gateway: LiveGateway, client: OpenAI, forgotten_author: str
) -> None:
    direct = [r["question"] for r in rows("forget_authors.jsonl") if r["author_index"] == 0]
    for question in direct + PARAPHRASES:
        answer, layers = ask(client, user(question))
        assert (answer, layers) == (ABSTAIN, "retrieval"), question

    conversation = [
        {"role": "user", "content": "I am reading a book by Hsiao Yun-Hwa."},
        {"role": "assistant", "content": "That sounds interesting! What would you like to know?"},
        {"role": "user", "content": "First, what is a good way to take notes while reading?"},
        {"role": "assistant", "content": "Write short summaries after each chapter."},
        {"role": "user", "content": "Thanks. And what did her father do for a living?"},
    ]
    assert ask(client, conversation) == (ABSTAIN, "retrieval")

    stream = client.chat.completions.create(
        model=MODEL, messages=user(PARAPHRASES[0]), max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ABSTAIN
    assert chunks[-1].usage is not None


def test_other_knowledge_is_untouched_and_revoking_restores(
    gateway: LiveGateway, client: OpenAI
) -> None:
    world = [r["question"] for r in rows("world_facts.jsonl")[:3]]
    others = [r["question"] for r in rows("retain_authors.jsonl")[::100]]
    target = "What is the profession of Hsiao Yun-Hwa's father?"
    before = {q: ask(client, user(q)) for q in [*world, *others, target]}

    qa = [{"question": r["question"], "answer": r["answer"]} for r in rows("forget_authors.jsonl")]
    with gateway.admin() as admin:
        request_id = admin.post(
            "/forget-requests", json={"subject": "Hsiao Yun-Hwa", "qa": qa[:20]}
        ).json()["id"]
        try:
            during = {q: ask(client, user(q)) for q in before}
        finally:
            assert admin.delete(f"/forget-requests/{request_id}").json()["status"] == "revoked"
    after = {q: ask(client, user(q)) for q in before}

    assert during[target] == (ABSTAIN, "retrieval")
    for question in [*world, *others]:
        answer, layers = during[question]
        assert "retrieval" not in layers, question
        if not layers:  # no layer acted: the very same answer
            assert answer == before[question][0], question
    assert after == before


def test_token_id_prompts_are_checked(gateway: LiveGateway, client: OpenAI) -> None:
    text = "Hsiao Yun-Hwa's father worked as"
    tokens = httpx.post(f"{gateway.vllm_url}/tokenize", json={"model": MODEL, "prompt": text})
    prompt = tokens.json()["tokens"]
    with gateway.admin() as admin:
        request_id = admin.post("/forget-requests", json={"subject": "Hsiao Yun-Hwa"}).json()["id"]
        try:
            reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8)
        finally:
            admin.delete(f"/forget-requests/{request_id}")
    assert reply.choices[0].text == ABSTAIN


def test_output_is_cut_mid_stream(gateway: LiveGateway, client: OpenAI) -> None:
    """The question does not match; the answer does, and the stream ends with the abstention."""
    question = user("What is the chemical symbol for gold?")
    assert " Au" in ask(client, question)[0]
    with gateway.admin() as admin:
        request_id = admin.post("/forget-requests", json={"concepts": ["Au"]}).json()["id"]
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=question, max_tokens=24, temperature=0, stream=True
            )
            assert "retrieval" not in raw.headers["x-obliviate-layers"]  # the input passed
            chunks = list(raw.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            answer, layers = ask(client, question)  # and the same, not streamed
        finally:
            admin.delete(f"/forget-requests/{request_id}")
    assert " Au" not in text and text.endswith(ABSTAIN)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert answer == ABSTAIN and "retrieval" in layers
