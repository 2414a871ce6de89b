"""Benchmark: the in-model layers' parameters on the TOFU target (steering layer and scale, noise
of embedding corruption, alpha of logit difference).

    python -m evals.experiments.in_model_sweep --forget 1 --questions 20

Serves the target model (``obliviate-eval build-models``) with the three in-model layers, files
the forgotten subjects as forget requests and waits for their artifacts. Then, straight to vLLM,
every forget question and as many retain-author questions are answered greedily with one control
applied to all of them: ROUGE-L recall on the forget set says how much the control suppresses,
on the retain set how much it harms an answer when the matcher flags a request it should not
have (in serving, only flagged requests carry a control). One line per setting.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from evals.build_models import FinetuneConfig, build_models
from evals.data import TOFU, load_subjects, split
from evals.forgetting import wait_in_model_ready
from evals.metrics import rouge_l_recall
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.engine.launcher import free_port
from gateway.engine.upstream import LIMITS
from gateway.spawn import start_gateway, stop
from suppressors.vllm_plugin import CORRUPT, LOGIT_DIFF, STEER
from suppressors.vllm_plugin.controls import encode

MODEL = "smollm2-135m-instruct"
LAYERS = ["steering", "embedding_corruption", "logit_difference"]


def settings(request_ids: list[str], names: list[list[int]]) -> dict[str, dict[str, Any]]:
    """Setting name -> vllm_xargs."""
    grid: dict[str, dict[str, Any]] = {"none": {}}
    for layer in (4, 8, 14, 20):
        for scale in (0.0, 0.5, 1.0, 2.0):
            control = {"requests": request_ids, "layer": layer, "scale": scale, "ablate": True}
            grid[f"steer L={layer} c={scale:g}"] = {STEER: control}
    for scale in (1.0, 2.0, 4.0, 8.0):
        grid[f"corrupt σ={scale:g}"] = {CORRUPT: {"token_ids": names, "scale": scale}}
    for alpha in (0.5, 1.0, 2.0, 4.0):
        grid[f"logit-diff α={alpha:g}"] = {LOGIT_DIFF: {"requests": request_ids, "alpha": alpha}}
    return grid


def main(
    forget: Annotated[int, typer.Option(help="Forgotten TOFU subjects (as in eval run).")] = 1,
    questions: Annotated[int, typer.Option(help="Retain-author questions.")] = 20,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 48,
) -> None:
    forgettable = load_subjects([TOFU / "forget_authors.jsonl"])
    forgotten, kept = split(forgettable, forget, 0)
    retained = load_subjects([TOFU / "retain_authors.jsonl"])
    retain_qa = random.Random(0).sample([qa for s in retained for qa in s.qa], questions)
    # The models `obliviate-eval build-models` makes with the repository's data dir (built here
    # otherwise: long).
    data_dir = Path(".obliviate")
    base = ensure_embedded_model(data_dir)
    target = build_models(data_dir, base, forgotten, kept + retained, FinetuneConfig())["target"]
    work = Path(tempfile.mkdtemp())
    vllm_port = free_port()
    env = {"OBLIVIATE_ADMIN_TOKEN": "sweep", "OBLIVIATE_SUPPRESSION_LAYERS": json.dumps(LAYERS)}
    url, process = start_gateway(work / "gateway.log", "--model", str(target),
                                 "--served-model-name", MODEL, "--data-dir", str(work / "data"),
                                 "--vllm-port", str(vllm_port), env=env)  # fmt: skip
    try:
        admin = httpx.Client(base_url=f"{url}/admin/v1", timeout=60,
                             headers={"Authorization": "Bearer sweep"})  # fmt: skip
        ids = []
        for subject in forgotten:
            qa = [{"question": q.question, "answer": q.answer} for q in subject.qa]
            created = admin.post("/forget-requests", json={"subject": subject.name, "qa": qa})
            ids.append(created.raise_for_status().json()["id"])
        built_s = wait_in_model_ready(admin, ids, timeout_s=1800)
        print(f"artifacts of {len(ids)} request(s) built in {built_s:.0f} s")
        vllm = httpx.Client(base_url=f"http://127.0.0.1:{vllm_port}", timeout=600, limits=LIMITS)
        names = []
        for text in [variant for s in forgotten for variant in (s.name, f" {s.name}")]:
            body = {"model": MODEL, "prompt": text, "add_special_tokens": False}
            names.append(vllm.post("/tokenize", json=body).json()["tokens"])
        sets = {"forget": [qa for s in forgotten for qa in s.qa], "retain": retain_qa}

        def answer(question: str, xargs: dict[str, Any]) -> str:
            body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": question}]}  # fmt: skip
            if xargs:
                body["vllm_xargs"] = encode(xargs)
            reply = vllm.post("/v1/chat/completions", json=body).raise_for_status().json()
            return reply["choices"][0]["message"]["content"]

        print(f"{'setting':<22} {'forget ROUGE-L':>15} {'retain ROUGE-L':>15} {'s':>6}")
        with ThreadPoolExecutor(16) as pool:
            for name, xargs in settings(ids, names).items():
                start = time.monotonic()
                scores = {}
                for set_name, qa in sets.items():
                    answers = pool.map(answer, [q.question for q in qa], [xargs] * len(qa))
                    recall = [rouge_l_recall(q.answer, a) for q, a in zip(qa, answers, strict=True)]
                    scores[set_name] = sum(recall) / len(recall)
                took = time.monotonic() - start
                print(f"{name:<22} {scores['forget']:>15.3f} {scores['retain']:>15.3f} "
                      f"{took:>6.0f}", flush=True)  # fmt: skip
    finally:
        stop(process)


if __name__ == "__main__":
    typer.run(main)
