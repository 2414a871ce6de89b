"""The obliviate plugin in the real vLLM server: a per-request control touches only its request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from suppressors.vllm_plugin import BAN_TOKEN_IDS
from tests.conftest import MODEL, LiveGateway

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def greedy(client: openai.OpenAI, xargs: dict | None = None) -> tuple[str, list[int]]:
    """Greedy answer and its token ids (vLLM's `return_tokens_as_token_ids`)."""
    extra: dict = {"return_tokens_as_token_ids": True}
    if xargs:
        extra["vllm_xargs"] = xargs
    reply = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        logprobs=True,
        extra_body=extra,
    )
    choice = reply.choices[0]
    ids = [int(t.token.removeprefix("token_id:")) for t in choice.logprobs.content]
    return choice.message.content, ids


def test_ban_applies_only_to_its_request(gateway: LiveGateway) -> None:
    client = gateway.client()
    baseline, ids = greedy(client)
    banned = {BAN_TOKEN_IDS: ids[:1]}
    # Several plain requests batched together with the one that carries the control.
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(greedy, client, banned if i == 0 else None) for i in range(4)]
        results = [f.result() for f in futures]
    steered_text, steered_ids = results[0]
    assert ids[0] not in steered_ids
    assert steered_text != baseline
    assert all(text == baseline for text, _ in results[1:])


def test_bad_control_is_400(gateway: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        greedy(gateway.client(), {BAN_TOKEN_IDS: "not a list"})
    assert BAN_TOKEN_IDS in info.value.message


def test_worker_extension_is_loaded(gateway: LiveGateway) -> None:
    response = httpx.post(
        f"{gateway.vllm_url}/collective_rpc", json={"method": "obliviate_model_info"}, timeout=30
    )
    assert response.json()["results"] == [
        {"num_hidden_layers": 30, "hidden_size": 576, "architecture": "LlamaForCausalLM",
         "tensor_parallel_size": 1}
    ]  # fmt: skip
