"""A request that only scores its prompt, on the real embedded model, through HTTP.

The gateway (in front of the session's vLLM, with its own data directory) runs retrieval with
``score_in_model`` and embedding corruption over the whole prompt:
once a subject is forgotten, a chat about it is blocked, but scoring a text about it (echo with
``max_tokens=0`` and ``logprobs=0`` as TOFU does, or ``max_tokens=1`` and ``logprobs=1`` as
lm-eval does) returns the corrupted forward pass's log-probabilities instead of none, and a
concurrent unrelated text scores exactly as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.conftest import MODEL, LiveGateway, gateway_with_layers

FORGOTTEN = "Question: What did Marie Curie discover?\nAnswer: Marie Curie discovered radium."
UNRELATED = "Question: What colour is the sky?\nAnswer: The sky is blue on a clear day."
LAYERS = [
    {"name": "retrieval", "score_in_model": True},
    {"name": "embedding_corruption", "scope": "prompt"},
]


scoring = gateway_with_layers("only-scores", LAYERS)


def score(client: openai.OpenAI, text: str, logprobs: int = 0) -> tuple[list | None, str]:
    """(the text's token log-probabilities, or None; the layers that acted)."""
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=logprobs, temperature=0
    )
    choice = raw.parse().choices[0]
    values = choice.logprobs.token_logprobs if choice.logprobs else None
    return values, raw.headers.get("x-obliviate-layers", "")


def side_by_side(client: openai.OpenAI, *texts: str) -> list[tuple[list | None, str]]:
    """The texts scored at once, so vLLM runs them in one batch."""
    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(lambda text: score(client, text), texts))


def test_scoring_a_forgotten_text_gets_the_suppressed_models_logprobs(
    scoring: LiveGateway,
) -> None:
    client = scoring.client()
    (before, _), (unrelated_before, _) = side_by_side(client, FORGOTTEN, UNRELATED)
    with scoring.admin() as admin:
        qa = {"question": "What did Marie Curie discover?", "answer": "She discovered radium."}
        body = {"subject": "Marie Curie", "qa": [qa]}
        created = admin.post("/forget-requests", json=body)
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]

        (after, layers), (unrelated_after, unrelated_layers) = side_by_side(
            client, FORGOTTEN, UNRELATED
        )
        assert layers == "embedding_corruption"
        assert after is not None and len(after) == len(before) and after != before
        assert (unrelated_after, unrelated_layers) == (unrelated_before, "")

        # How lm-eval's loglikelihood asks (the top alternative, one generated token beside
        # the echoed prompt): the suppressed forward pass answers it too.
        lm_eval = client.completions.with_raw_response.create(
            model=MODEL, prompt=FORGOTTEN, max_tokens=1, echo=True, logprobs=1, temperature=0
        )
        assert lm_eval.headers["x-obliviate-layers"] == "embedding_corruption"
        scored = lm_eval.parse().choices[0].logprobs
        assert scored.token_logprobs[1 : len(after)] == after[1:]  # the same corrupted pass
        assert len(scored.tokens) == len(after) + 1
        # More alternatives, or more tokens, would make it a generator: blocked. Scoring
        # clients cannot parse an abstention without log-probabilities: an error.
        for more in ({"logprobs": 2, "max_tokens": 0}, {"logprobs": 1, "max_tokens": 2}):
            with pytest.raises(openai.BadRequestError) as refused:
                client.completions.create(model=MODEL, prompt=FORGOTTEN, echo=True, **more)
            assert refused.value.code == "content_suppressed"
        chat = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": FORGOTTEN}], max_tokens=8
        )
        assert chat.headers["x-obliviate-layers"] == "retrieval"

        assert admin.delete(f"/forget-requests/{request_id}").status_code == 200
    assert score(client, FORGOTTEN) == (before, "")
