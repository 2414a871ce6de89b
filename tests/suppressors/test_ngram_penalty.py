"""The n-gram penalty: its tables, its layer on a real matcher, and the plugin on the real embedded
model through HTTP.

The live gateway runs the penalty alone, in front of the session's vLLM with its own data
directory. A forget request whose answer is the model's own greedy answer changes that answer and
lowers the answer's scored log-probabilities, while a concurrent unrelated request answers and
scores byte for byte as before.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from safetensors.torch import load_file

from evals.forgetting import wait_in_model_ready
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.spawn import REPO
from index.embedder import Embedder
from index.matcher import Matcher, MatcherConfig
from index.store import ForgetRequest
from suppressors.artifacts import Artifacts
from suppressors.base import LayerDeps, load_tokenizer
from suppressors.stack import SuppressionStack, UnknownLayer
from suppressors.vllm_plugin import ANSWERS_FILE, NGRAM_PENALTY
from suppressors.vllm_plugin.controls import check_controls, encode
from suppressors.vllm_plugin.ngrams import completions, penalised
from tests.conftest import ADMIN_TOKEN, MODEL, LiveGateway, gateway_with_layers
from tests.suppressors.test_in_model_layers import artifacts
from tests.suppressors.test_in_model_layers import ask as chat

QUESTION = "What did Marie Curie discover?"
UNRELATED = "Write one sentence about the sea."


def test_a_table_maps_the_tokens_before_to_the_completions() -> None:
    table = completions([[1, 2, 3, 4], [5, 2, 3, 6]], n=3)
    assert table == {(1, 2): {3}, (2, 3): {4, 6}, (5, 2): {3}}
    # The logits at position i predict token i + 1: after reading (2, 3), 4 and 6 complete one.
    assert penalised(table, 3, [9, 1, 2, 3], first=0) == {2: {3}, 3: {4, 6}}
    # A step that starts mid-text reads the n - 2 tokens before it first.
    assert penalised(table, 3, [2, 3, 7], first=1) == {0: {4, 6}}
    assert penalised(table, 3, [2], first=0) == {}


@pytest.mark.anyio
async def test_the_layer_sends_built_requests_and_scores_in_model(tmp_path: Path) -> None:
    weights = ensure_embedded_model(REPO / ".obliviate")
    matcher = Matcher(Embedder(), MatcherConfig())
    matcher.add("a", ["Hsiao Yun-Hwa"], np.array([0]), matcher.embedder.encode(["Hsiao Yun-Hwa"]))
    retain = [("Where is Taipei?", "Taipei is in Taiwan.")]
    artifacts = Artifacts(tmp_path / "artifacts", weights, {ANSWERS_FILE}, retain)
    specs = [{"name": "retrieval", "score_in_model": True}, {"name": "ngram_penalty", "n": 4}]
    stack = SuppressionStack.build(LayerDeps(matcher, artifacts), specs)
    text = "Where was Hsiao Yun-Hwa born? In Taipei."
    ctx = await stack.before([text], only_scores=True)
    assert ctx is not None and ctx.blocked_by == "retrieval"  # not built yet: withheld

    answer = "Hsiao Yun-Hwa was born in Taipei, Taiwan."
    qa = [{"question": "Where was Hsiao Yun-Hwa born?", "answer": answer}]
    request = ForgetRequest(id="a", subject="Hsiao Yun-Hwa", concepts=[], documents=[], qa=qa)
    artifacts.build(request)  # the tokenizer only: no model is loaded
    files = load_file(artifacts.path("a") / ANSWERS_FILE)
    tokenizer = load_tokenizer(weights)
    sequences = files["ids"].split(files["lengths"].tolist())
    texts = [tokenizer.decode(ids.tolist()) for ids in sequences]
    assert texts == [answer, f" {answer}", "Hsiao Yun-Hwa", " Hsiao Yun-Hwa"]
    # Its vocabulary: its tokens but the name's and the retain data's common ones.
    vocabulary = [tokenizer.decode([i]) for i in files["vocabulary"].tolist()]
    assert vocabulary == [",", " was", " born"]

    ctx = await stack.before([text], only_scores=True)
    assert ctx is not None and ctx.blocked_by is None and ctx.acted == ["ngram_penalty"]
    control = {"requests": ["a"], "n": 4, "beta": 8.0, "vocabulary_beta": 0.75}
    assert ctx.controls[NGRAM_PENALTY] == control
    check_controls(encode(ctx.controls))
    chat = await stack.before([text])
    assert chat is not None and chat.blocked_by == "retrieval"  # it generates: blocked as ever


BAD = [({"n": 1}, "n must"), ({"beta": -1}, "beta must"), ({"vocabulary_beta": -1}, "vocabulary")]


@pytest.mark.parametrize(("params", "error"), BAD)
def test_a_bad_parameter_is_refused_at_start(params: dict, error: str) -> None:
    matcher = Matcher(Embedder(), MatcherConfig())
    with pytest.raises(UnknownLayer, match=error):
        SuppressionStack.build(LayerDeps(matcher), [{"name": "ngram_penalty", **params}])


@pytest.mark.parametrize(("params", "error"), BAD)
def test_a_bad_control_is_refused(params: dict, error: str) -> None:
    control = {"requests": ["a"], "n": 5, "beta": 8.0, **params}
    with pytest.raises(ValueError, match=f"{NGRAM_PENALTY}.{error}"):
        check_controls(encode({NGRAM_PENALTY: control}))


penalised_gateway = gateway_with_layers("ngram", ["ngram_penalty"])


def score(
    client: openai.OpenAI, text: str, controls: dict[str, Any] | None = None
) -> tuple[dict[int, float], str]:
    """The text's token log-probabilities by character offset (echo, ``max_tokens=0``: how TOFU
    scores; the first token has none), with ``controls`` as ``vllm_xargs``."""
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=0, temperature=0,
        extra_body={"vllm_xargs": controls} if controls else None,
    )  # fmt: skip
    logprobs = raw.parse().choices[0].logprobs
    scores = zip(logprobs.text_offset[1:], logprobs.token_logprobs[1:], strict=True)
    return dict(scores), raw.headers.get("x-obliviate-layers", "")


def side_by_side(*calls: Any) -> list[Any]:
    """The calls made at once, so vLLM runs them in one batch."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call[0](*call[1:]), calls))


def test_the_penalty_changes_the_forgotten_answer_and_its_scores_only(
    penalised_gateway: LiveGateway,
) -> None:
    live = penalised_gateway
    client = live.client()
    answer, _ = chat(client, QUESTION)
    text = f"Question: {QUESTION}\nAnswer: {answer}"
    unrelated_text = "Question: What colour is the sky?\nAnswer: The sky is blue on a clear day."
    asked = [(chat, client, QUESTION), (chat, client, UNRELATED)]
    scored = [(score, client, text), (score, client, unrelated_text)]
    (before, _), (unrelated_before, _) = side_by_side(*asked)
    (scores_before, _), (unrelated_scores_before, _) = side_by_side(*scored)
    with live.admin() as admin:
        body = {"subject": "Marie Curie", "qa": [{"question": QUESTION, "answer": answer}]}
        created = admin.post("/forget-requests", json=body)
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        folder = artifacts(live, request_id)
        # The record says when the layer can act: its token ids are built.
        wait_in_model_ready(admin, [request_id], timeout_s=60)
        assert (folder / ANSWERS_FILE).is_file()
        with httpx.Client(base_url=f"{live.url}/admin", timeout=60) as console:
            console.post("/login", data={"token": ADMIN_TOKEN})
            assert "in-model layers ready" in console.get("/forget-requests").text

        (after, layers), (unrelated_after, unrelated_layers) = side_by_side(*asked)
        assert layers == "ngram_penalty" and after != before
        assert (unrelated_after, unrelated_layers) == (unrelated_before, "")
        (scores, layers), (unrelated_scores, unrelated_layers) = side_by_side(*scored)
        assert layers == "ngram_penalty" and scores.keys() == scores_before.keys()
        # The answer's own continuations drop; the question, which shares none, scores as before.
        lowered = [at for at, lp in scores.items() if lp < scores_before[at] - 1]
        assert len(lowered) >= 3 and min(lowered) > text.index("Answer:")
        assert sum(scores.values()) < sum(scores_before.values()) - 8
        assert (unrelated_scores, unrelated_layers) == (unrelated_scores_before, "")

        # Straight to vLLM, a bad control is a 400 for that request.
        direct = openai.OpenAI(base_url=f"{live.vllm_url}/v1", api_key="x", max_retries=0)
        bad = {"requests": [request_id], "n": 1, "beta": 8.0}
        with pytest.raises(openai.BadRequestError, match=NGRAM_PENALTY):
            chat(direct, QUESTION, encode({NGRAM_PENALTY: bad}))
        # With β 0, the vocabulary penalty alone lowers the answer's own words.
        alone = {"requests": [request_id], "n": 5, "beta": 0.0, "vocabulary_beta": 4.0}
        vocabulary_scores, _ = score(direct, text, encode({NGRAM_PENALTY: alone}))
        dropped = [at for at, lp in vocabulary_scores.items() if lp < scores_before[at] - 1]
        assert len(dropped) >= 3 and min(dropped) > text.index("Answer:")

        revoked = admin.delete(f"/forget-requests/{request_id}")
        assert revoked.status_code == 200 and revoked.json()["in_model_ready"] is None
        deadline = time.monotonic() + 30
        while folder.exists():
            assert time.monotonic() < deadline, "the token ids were not deleted"
            time.sleep(0.2)
    assert chat(client, QUESTION) == (answer, "")
