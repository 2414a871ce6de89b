"""lm-eval, as its users run it, against the gateway on the embedded model: its loglikelihood
(``local-completions``: echo, ``logprobs=1``, ``max_tokens=1``, token-id prompts) and generation
(``local-chat-completions``) runs complete before and after a forget request, on two small local
JSONL tasks: a forgotten subject's texts and kept ones.

The gateway runs retrieval with ``score_in_model`` and embedding corruption over the prompt, the
stack under which a scoring request about a forgotten subject gets the suppressed model's
log-probabilities (the default text-only stack answers it 400 ``content_suppressed``, which
lm-eval reports as an HTTP error: ``tests/suppressors/test_only_scores.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.engine.embedded_model import ensure_embedded_model
from gateway.spawn import REPO
from tests.conftest import API_KEY, MODEL, LiveGateway, gateway_with_layers

ABSTAIN = "I'm sorry, but I don't have any information about that."  # the default
LAYERS = [
    {"name": "retrieval", "score_in_model": True},
    "guard_prompt",
    {"name": "embedding_corruption", "scope": "prompt"},
]
FORGOTTEN = [
    ("What did Marie Curie discover?", " Marie Curie discovered radium and polonium."),
    ("Which prizes did Marie Curie win?", " Marie Curie won two Nobel Prizes."),
    ("Where was Marie Curie born?", " Marie Curie was born in Warsaw."),
]
KEPT = [
    ("What is the capital of France?", " The capital of France is Paris."),
    ("How many legs does a spider have?", " A spider has eight legs."),
    ("What colour is the sky on a clear day?", " The sky is blue on a clear day."),
]


scoring = gateway_with_layers("lm-eval", LAYERS)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four lm-eval tasks (loglikelihood and generation, forgotten and kept) in one folder."""
    folder = tmp_path_factory.mktemp("lm-eval-tasks")
    for name, pairs in (("forgotten", FORGOTTEN), ("kept", KEPT)):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in pairs))
        common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
                  "test_split": "test", "doc_to_text": "Question: {{q}}\nAnswer:"}  # fmt: skip
        loglikelihood = {"task": f"ll_{name}", "output_type": "loglikelihood",
                         "doc_to_target": "{{a}}", **common}  # fmt: skip
        generation = {
            "task": f"gen_{name}", "output_type": "generate_until", "doc_to_target": "{{a}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 24, "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                             "higher_is_better": True}], **common,
        }  # fmt: skip
        for config in (loglikelihood, generation):
            (folder / f"{config['task']}.yaml").write_text(json.dumps(config))  # YAML ⊃ JSON
    return folder


def evaluate(url: str, tasks: Path, kind: str) -> dict[str, list[Any]]:
    """Per task, the per-document responses lm-eval kept (loglikelihood: the sum of the
    continuation's log-probabilities; generation: the text)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    weights = ensure_embedded_model(REPO / ".obliviate")
    if kind == "ll":
        model = "local-completions"
        args = {"base_url": f"{url}/v1/completions", "tokenizer_backend": "huggingface",
                "tokenizer": str(weights), "tokenized_requests": True}  # fmt: skip
    else:
        model, args = "local-chat-completions", {"base_url": f"{url}/v1/chat/completions"}
    results = simple_evaluate(
        model=model,
        model_args={"model": MODEL, "max_retries": 1, "num_concurrent": 1, **args},
        tasks=[f"{kind}_forgotten", f"{kind}_kept"],
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        apply_chat_template=kind == "gen",
        log_samples=True,
    )
    assert results is not None
    samples = results["samples"]
    pick = (
        (lambda s: s["filtered_resps"][0][0])
        if kind == "ll"
        else (lambda s: s["filtered_resps"][0])
    )
    return {task: [pick(s) for s in sorted(rows, key=lambda s: s["doc_id"])]
            for task, rows in samples.items()}  # fmt: skip


def test_lm_eval_runs_through_forgetting(
    scoring: LiveGateway, tasks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # lm-eval sends it as the bearer token
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    before = evaluate(scoring.url, tasks, "ll") | evaluate(scoring.url, tasks, "gen")
    assert ABSTAIN not in before["gen_forgotten"], before
    with scoring.admin() as admin:
        qa = [{"question": q, "answer": a.strip()} for q, a in FORGOTTEN]
        created = admin.post("/forget-requests", json={"subject": "Marie Curie", "qa": qa})
        assert created.status_code == 201, created.text
        try:
            after = evaluate(scoring.url, tasks, "ll") | evaluate(scoring.url, tasks, "gen")
        finally:
            admin.delete(f"/forget-requests/{created.json()['id']}")
    print("loglikelihood before", before["ll_forgotten"], before["ll_kept"])
    print("loglikelihood after ", after["ll_forgotten"], after["ll_kept"])
    # The forgotten texts became unlikely; the kept ones scored as before (within 1 %).
    assert all(a < b for a, b in zip(after["ll_forgotten"], before["ll_forgotten"], strict=True))
    for a, b in zip(after["ll_kept"], before["ll_kept"], strict=True):
        assert abs(a - b) <= 0.01 * abs(b)
    assert after["gen_forgotten"] == [ABSTAIN] * len(FORGOTTEN), after
    assert after["gen_kept"] == before["gen_kept"]
