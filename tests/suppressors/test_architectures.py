"""The in-model layers on other architectures and depths, served by vLLM's CPU build.

Each model is a tiny randomly initialised one, built from a transformers config (no hub) with the
embedded model's tokenizer, and served with ``obliviate serve --model DIR`` and every in-model
layer. Per model: the plugin installs and reports the model; each layer's control changes its
request; a concurrent unflagged request answers byte for byte as without it; and a forgotten
question through the gateway is acted on by every layer.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import torch
import transformers

from evals.forgetting import wait_in_model_ready
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.spawn import REPO
from suppressors.vllm_plugin import CORRUPT, LOGIT_DIFF, NGRAM_PENALTY, STEER
from suppressors.vllm_plugin.controls import encode
from tests.conftest import live_gateway

NAME = "tiny"
SUBJECT = "Marie Curie"
FORGOTTEN = "What did Marie Curie discover?"
ANSWER = "Marie Curie discovered polonium and radium."
UNRELATED = "Write one sentence about the sea."
LAYERS = [
    {"name": "steering", "scale": 4.0},
    {"name": "embedding_corruption", "scale": 4.0},
    {"name": "logit_difference", "alpha": 4.0},
    "ngram_penalty",
]
# vLLM's CPU attention takes head sizes of 32 and up (SmolLM2's is 64).
COMMON = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
          "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 2048}  # fmt: skip
ARCHITECTURES = {
    # config class, its own fields (depths differ, so do fractions of depth). Not Llama: the
    # embedded SmolLM2 is one, served with every layer by test_in_model_layers.
    "Qwen3ForCausalLM": ("Qwen3Config", {"num_hidden_layers": 6}),
    # scaled embeddings, (1 + w) norms, tied LM head
    "GemmaForCausalLM": ("GemmaConfig", {"num_hidden_layers": 5}),
    # fused qkv and gate-up projections
    "Phi3ForCausalLM": ("Phi3Config", {"num_hidden_layers": 3, "pad_token_id": 2}),
}


def tiny_model(folder: Path, architecture: str) -> Path:
    """A seeded random model of ``architecture`` with the embedded model's tokenizer."""
    embedded = ensure_embedded_model(REPO / ".obliviate")
    config_class, fields = ARCHITECTURES[architecture]
    config = getattr(transformers, config_class)(
        **COMMON, **fields, vocab_size=49152, bos_token_id=1, eos_token_id=2
    )
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (embedded / name).exists():
            shutil.copy(embedded / name, folder / name)
    template = embedded / "chat_template.jinja"
    if template.exists():
        shutil.copy(template, folder / template.name)
    return folder


def ask(client: openai.OpenAI, question: str) -> tuple[str, str]:
    """A greedy chat answer, and the layers that acted."""
    raw = client.chat.completions.with_raw_response.create(
        model=NAME, messages=[{"role": "user", "content": question}], max_tokens=8, temperature=0
    )
    return raw.parse().choices[0].message.content, raw.headers.get("x-obliviate-layers", "")


def score(client: openai.OpenAI, text: str, xargs: dict | None = None) -> tuple:
    """A greedy continuation of ``text``, and the log-probabilities of both (echo): the n-gram
    penalty shows on the forgotten answer's own tokens, logit difference on what is sampled."""
    choice = client.completions.create(
        model=NAME,
        prompt=text,
        max_tokens=8,
        temperature=0,
        echo=True,
        logprobs=0,
        extra_body={"vllm_xargs": xargs} if xargs else None,
    ).choices[0]
    return choice.text, [round(p, 3) for p in choice.logprobs.token_logprobs[1:]]


def side_by_side(client: openai.OpenAI, *requests: tuple, call=ask) -> list[tuple]:
    """The requests sent at once, so vLLM runs them in one batch."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: call(client, *r), requests))


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_in_model_layer_on_another_architecture(architecture: str, tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "model", architecture)
    depth = ARCHITECTURES[architecture][1]["num_hidden_layers"]
    env = {"OBLIVIATE_SUPPRESSION_LAYERS": json.dumps(LAYERS)}
    args = ("--model", str(folder), "--served-model-name", NAME)
    with live_gateway(tmp_path, env, args=args) as live:
        info = httpx.post(
            f"{live.vllm_url}/collective_rpc", json={"method": "obliviate_model_info"}, timeout=30
        ).json()["results"][0]
        assert (info["architecture"], info["num_hidden_layers"]) == (architecture, depth)

        client = live.client()
        direct = openai.OpenAI(base_url=f"{live.vllm_url}/v1", api_key="x", max_retries=0)
        forgotten = f"{FORGOTTEN} {ANSWER}"
        before, reference = side_by_side(direct, (forgotten,), (UNRELATED,), call=score)
        with live.admin() as admin:
            body = {"subject": SUBJECT, "qa": [{"question": FORGOTTEN, "answer": ANSWER}]}
            created = admin.post("/forget-requests", json=body)
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]
            wait_in_model_ready(admin, [request_id], timeout_s=600)

        tokens = httpx.post(f"{live.vllm_url}/tokenize", timeout=30, json={
            "model": NAME, "prompt": f" {SUBJECT}", "add_special_tokens": False})  # fmt: skip
        controls = {
            STEER: {"requests": [request_id], "layer": depth // 2, "scale": 4.0},
            CORRUPT: {"token_ids": [tokens.json()["tokens"]], "scale": 4.0, "prompt": True},
            LOGIT_DIFF: {"requests": [request_id], "alpha": 4.0},
            NGRAM_PENALTY: {"requests": [request_id], "n": 2, "beta": 8.0, "vocabulary_beta": 8.0},
        }
        for key, control in controls.items():
            flagged, plain = side_by_side(
                direct, (forgotten, encode({key: control})), (UNRELATED,), call=score
            )
            assert flagged != before, key
            assert plain == reference, key

        (_, layers), (_, unrelated_layers) = side_by_side(client, (FORGOTTEN,), (UNRELATED,))
        assert layers == "steering,embedding_corruption,logit_difference,ngram_penalty"
        assert unrelated_layers == ""
