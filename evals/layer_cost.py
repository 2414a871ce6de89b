"""Benchmark: each in-model layer's cost per generated token, as a ratio to bare vLLM.

    python -m evals.layer_cost                    # streams of 64 tokens, concurrency 1 and 16
    python -m evals.layer_cost --rounds 6 --max-tokens 128

Starts a gateway with every in-model layer beside its embedded vLLM, files one TOFU subject (its
QA) as a forget request and waits for its artifacts. Then, straight to vLLM, the same streams
(a question about that subject) run bare and with one layer's control, built from the layer's
default parameters, on every request: the worst case, the whole batch flagged. Rounds alternate
between the settings, so a noisy machine's drift hits them alike. Per concurrency and setting it
prints output tokens/s and the bare run's tokens/s over it: the cost per token, ×.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from evals.data import TOFU, load_subjects
from evals.forgetting import wait_in_model_ready
from evals.gateway_overhead import Samples, run_round
from evals.live_gateway import start_beside_vllm
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.spawn import REPO, stop
from suppressors.base import load_tokenizer, spellings
from suppressors.embedding_corruption import EmbeddingCorruptionConfig
from suppressors.logit_difference import LogitDifferenceConfig
from suppressors.ngram_penalty import NgramPenaltyConfig
from suppressors.steering import SteeringConfig
from suppressors.vllm_plugin import CORRUPT, LOGIT_DIFF, NGRAM_PENALTY, STEER
from suppressors.vllm_plugin.controls import encode

ADMIN = "layer-cost-admin"
LAYERS = ["steering", "embedding_corruption", "logit_difference", "ngram_penalty"]


def controls(request_id: str, names: list[list[int]]) -> dict[str, dict[str, Any]]:
    """Setting -> ``vllm_xargs``: bare, each layer alone with its defaults, and all four."""
    steer, corrupt = SteeringConfig(), EmbeddingCorruptionConfig()
    penalty, requests = NgramPenaltyConfig(), [request_id]
    layers = {
        "steering": {STEER: {"requests": requests, "layer": steer.layer, "scale": steer.scale,
                             "ablate": steer.ablate}},
        "embedding_corruption": {CORRUPT: {"token_ids": names, "scale": corrupt.scale}},
        "logit_difference": {LOGIT_DIFF: {"requests": requests,
                                          "alpha": LogitDifferenceConfig().alpha}},
        "ngram_penalty": {NGRAM_PENALTY: {"requests": requests, "n": penalty.n,
                                          "beta": penalty.beta}},
    }  # fmt: skip
    every = {key: value for control in layers.values() for key, value in control.items()}
    return {"bare": {}, **{n: encode(c) for n, c in layers.items()}, "all four": encode(every)}


def main(
    rounds: Annotated[int, typer.Option(help="Rounds per setting and concurrency.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per streamed request.")] = 64,
) -> None:
    subject = load_subjects([TOFU / "forget_authors.jsonl"])[0]
    env = {"OBLIVIATE_SUPPRESSION_LAYERS": json.dumps(LAYERS)}
    data_dir = Path(tempfile.mkdtemp()) / "data"
    url, direct_url, process = start_beside_vllm(ADMIN, data_dir, env)
    try:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        qa = [{"question": p.question, "answer": p.answer} for p in subject.qa]
        body = {"subject": subject.name, "qa": qa}
        with httpx.Client(base_url=f"{url}/admin/v1", headers=headers, timeout=60) as admin:
            request_id = admin.post("/forget-requests", json=body).raise_for_status().json()["id"]
            built_s = wait_in_model_ready(admin, [request_id], timeout_s=1800)
        print(f"artifacts of {subject.name} built in {built_s:.0f} s")
        names = spellings(load_tokenizer(ensure_embedded_model(REPO / ".obliviate")), subject.name)
        messages = [{"role": "user", "content": f"Tell me all about {subject.name}'s books."}]
        settings = {
            name: {"messages": messages} | ({"vllm_xargs": xargs} if xargs else {})
            for name, xargs in controls(request_id, names).items()
        }
        asyncio.run(run_round(direct_url, Samples(), 1, 8))  # warm-up
        for concurrency in (1, 16):
            samples = {name: Samples() for name in settings}
            for _ in range(rounds):
                for name, extra in settings.items():
                    run = run_round(direct_url, samples[name], concurrency, max_tokens, extra=extra)
                    asyncio.run(run)
            bare = samples["bare"].tokens / samples["bare"].wall_s
            print(f"concurrency {concurrency}, {max_tokens} tokens per stream, {rounds} rounds")
            for name, s in samples.items():
                rate = s.tokens / s.wall_s
                print(f"  {name:<22} {rate:8.1f} tok/s   cost per token × {bare / rate:.3f}")
    finally:
        stop(process)


if __name__ == "__main__":
    typer.run(main)
