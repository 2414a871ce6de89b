"""In-model layers (steering, embedding corruption, logit difference) on the real embedded model,
through HTTP.

One gateway runs only those layers, so what changes an answer happens inside vLLM. It fronts the
session's vLLM (``--upstream``) beside the session gateway, with its own data directory: the
plugin reads both gateways' artifacts folders. Each test checks that a concurrent unrelated request
in the same batch answers byte for byte as without them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from evals.forgetting import wait_in_model_ready
from suppressors.vllm_plugin import CORRUPT, INSTALL_METHOD, LOGIT_DIFF, STEER
from suppressors.vllm_plugin.controls import encode
from tests.conftest import MODEL, LiveGateway, gateway_with_layers

FORGOTTEN = "What did Marie Curie discover?"
ANSWER = "Marie Curie discovered polonium and radium."
UNRELATED = "Write one sentence about the sea."
LAYERS = [
    {"name": "steering", "layer": 6, "scale": 4.0},
    {"name": "embedding_corruption", "scale": 4.0},
    {"name": "logit_difference", "alpha": 1.0},
]


in_model = gateway_with_layers("in-model", LAYERS)


def ask(client: openai.OpenAI, question: str, xargs: dict | None = None) -> tuple[str, str]:
    """Greedy answer and the layers that acted."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=24,
        temperature=0,
        extra_body={"vllm_xargs": xargs} if xargs else None,
    )
    return raw.parse().choices[0].message.content, raw.headers.get("x-obliviate-layers", "")


def side_by_side(client: openai.OpenAI, *requests: tuple) -> list[tuple[str, str]]:
    """The requests sent at once, so vLLM runs them in one batch."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: ask(client, *r), requests))


def artifacts(live: LiveGateway, request_id: str) -> Path:
    """The request's artifacts folder (its files appear together)."""
    return live.log.parent / "data" / "artifacts" / request_id


def test_layers_change_the_forgotten_answer_only(in_model: LiveGateway) -> None:
    client = in_model.client()
    (before, _), (unrelated_before, _) = side_by_side(client, (FORGOTTEN,), (UNRELATED,))
    with in_model.admin() as admin:
        created = admin.post(
            "/forget-requests",
            json={"subject": "Marie Curie", "qa": [{"question": FORGOTTEN, "answer": ANSWER}]},
        )
        assert created.status_code == 201
        request_id = created.json()["id"]
        # Another gateway hooks the same vLLM with its own artifacts folder before these are
        # read: they still are (before, the last install's folder replaced the others).
        other = {"method": INSTALL_METHOD, "args": [str(in_model.data_dir / "elsewhere")]}
        assert httpx.post(f"{in_model.vllm_url}/collective_rpc", json=other).status_code == 200
        # Corruption acts at once; steering and logit difference once their artifacts are built.
        assert created.json()["in_model_ready"] is False
        wait_in_model_ready(admin, [request_id], timeout_s=900)
        (after, layers), (unrelated_after, unrelated_layers) = side_by_side(
            client, (FORGOTTEN,), (UNRELATED,)
        )
        assert layers == "steering,embedding_corruption,logit_difference"
        assert after != before and "polonium" not in after.lower()
        assert (unrelated_after, unrelated_layers) == (unrelated_before, "")

        # Each control alone, straight to vLLM, changes its own request only.
        direct = openai.OpenAI(base_url=f"{in_model.vllm_url}/v1", api_key="x", max_retries=0)
        steer = encode({STEER: {"requests": [request_id], "layer": 6, "scale": 4.0}})
        names = _token_ids(in_model, " Marie Curie")
        corrupt = encode({CORRUPT: {"token_ids": names, "scale": 4.0}})
        logit_diff = encode({LOGIT_DIFF: {"requests": [request_id], "alpha": 1.0}})
        # The reference batch goes the same way: CPU kernels round differently when the batch
        # forms differently (the gateway resends a request it adds controls to).
        (_, _), (reference, _) = side_by_side(direct, (FORGOTTEN,), (UNRELATED,))
        for xargs in (steer, corrupt, logit_diff):
            (changed, _), (plain, _) = side_by_side(direct, (FORGOTTEN, xargs), (UNRELATED,))
            assert changed != before
            assert plain == reference, list(xargs)

        # Revoked: the vectors go, and the answer comes back.
        assert admin.delete(f"/forget-requests/{request_id}").status_code == 200
        deadline = time.monotonic() + 30
        while artifacts(in_model, request_id).exists():
            assert time.monotonic() < deadline, "steering vectors were not deleted"
            time.sleep(0.5)
        assert ask(client, FORGOTTEN) == (before, "")


def _token_ids(live: LiveGateway, text: str) -> list[list[int]]:
    body = {"model": MODEL, "prompt": text, "add_special_tokens": False}
    return [httpx.post(f"{live.vllm_url}/tokenize", json=body, timeout=30).json()["tokens"]]


def test_bad_in_model_control_is_400(in_model: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(in_model.client(), UNRELATED, encode({STEER: {"requests": ["../etc"], "layer": 6}}))
    assert STEER in info.value.message
