"""Black-box scoring through a live gateway (real vLLM, real SmolLM2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evals import metrics
from evals.scoring import GatewayScorer
from gateway.evidence import leaks
from tests.conftest import API_KEY, MODEL, REPO, LiveGateway

QUESTION = "Where would you find the Eiffel Tower?"


@pytest.fixture
def scorer(gateway: LiveGateway) -> Iterator[GatewayScorer]:
    tokenizer = REPO / ".obliviate" / "models" / MODEL
    scorer = GatewayScorer(gateway.url, MODEL, tokenizer, api_key=API_KEY)
    yield scorer
    scorer.close()


def test_true_answer_is_more_probable_than_wrong_ones(scorer: GatewayScorer) -> None:
    true = metrics.normalised_probability(scorer.answer_logprobs(QUESTION, "It is in Paris."))
    wrong = [
        metrics.normalised_probability(logprobs)
        for logprobs in scorer.answers_logprobs(
            QUESTION, [f"It is in {city}." for city in ("Berlin", "Madrid", "Tokyo")]
        )
    ]
    assert 0 < max(wrong) < true < 1
    assert metrics.truth_ratio(wrong, true) < 1
    assert "Paris" in scorer.ask(QUESTION, max_tokens=24)


def test_suppressed_questions_have_no_scores(gateway: LiveGateway, scorer: GatewayScorer) -> None:
    with gateway.admin() as admin:
        request_id = admin.post("/forget-requests", json={"concepts": ["Eiffel Tower"]}).json()[
            "id"
        ]
        try:
            assert scorer.answer_logprobs(QUESTION, "It is in Paris.") is None
            assert scorer.answers_logprobs(QUESTION, ["Paris.", "Rome."]) == [None, None]
            reply = scorer.ask(QUESTION)
        finally:
            admin.delete(f"/forget-requests/{request_id}")
    assert not leaks.leaked("Paris", QUESTION, reply)
    assert scorer.answer_logprobs(QUESTION, "It is in Paris.")  # revoked: scored again
