"""Legacy completions (scoring with echo + logprobs) and the model list."""

from __future__ import annotations

import pytest
from openai import OpenAI

from gateway.openai.protocol import CompletionRequest
from tests.conftest import MODEL


@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_logprobs_scores_text(client: OpenAI, max_tokens: int) -> None:
    text = "The capital of France is Paris."
    reply = client.completions.create(
        model=MODEL, prompt=text, max_tokens=max_tokens, echo=True, logprobs=1, temperature=0
    )
    choice = reply.choices[0]
    assert choice.text.startswith(text)
    logprobs = choice.logprobs.token_logprobs
    assert logprobs[0] is None  # the first token has no context
    assert all(lp <= 0 for lp in logprobs[1:])
    assert "".join(choice.logprobs.tokens).startswith(text)


def test_completion_generates(client: OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=4, temperature=0
    )
    assert "5" in reply.choices[0].text


def test_models_list(client: OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


@pytest.mark.parametrize(
    ("fields", "only_scores"),
    [
        ({"max_tokens": 0, "echo": True, "logprobs": 0}, True),
        ({"max_tokens": 0, "prompt_logprobs": 0}, True),
        ({"max_tokens": 1, "echo": True, "logprobs": 1}, True),  # lm-eval's loglikelihood
        ({"max_tokens": 0, "echo": True, "logprobs": 2}, False),  # alternatives: an oracle
        ({"max_tokens": 2, "echo": True, "logprobs": 0}, False),  # generates
        ({"echo": True, "logprobs": 0}, False),  # generates up to the context's end
        ({"max_tokens": 0, "echo": True}, False),  # asks for no log-probabilities
    ],
)
def test_a_request_that_only_scores_its_prompt(fields: dict, only_scores: bool) -> None:
    request = CompletionRequest(model=MODEL, prompt="The sky is blue.", **fields)
    assert request.only_scores() is only_scores
