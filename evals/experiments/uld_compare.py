"""Benchmark: the logit-difference assistant as a head on the base's own state vs a separate small
assistant model (ULD's recipe), trained on the same data; offline, with transformers.

    python -m evals.experiments.uld_compare --forget 1 --questions 20

Both learn the TOFU target's forgotten subject (its QA, as a forget request gives them) and to be
uniform on the neutral texts the artifacts use:
- **head** (``suppressors.assistant``, what the plugin serves): a rank-32 residual MLP on the
  state after layer 20, then the base's norm and LM head. No second forward pass, no second KV
  cache. Trained for its served 40 steps, and for ``--long-steps`` to tell budget from design.
- **separate** (ULD, Ji et al. 2024): the base's first ``--layers`` decoder layers with its norm and
  LM head, plus a LoRA (peft) on those layers, run as its own model with its own KV cache.
Then every forget question and ``--questions`` retain-author questions are answered greedily with
``l_base - α·log p_assistant`` on the base's relative-top-0.1 tokens (the plugin's own function),
applied to all of them as in ``evals.experiments.in_model_sweep``: forget ROUGE-L recall says how
much it suppresses, retain ROUGE-L how much it harms a request the matcher wrongly flags. Each
assistant's cost per generated token is printed as a ratio to the base's own decoding step.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from evals.build_models import FinetuneConfig, build_models
from evals.data import TOFU, load_subjects, split
from evals.metrics import rouge_l_recall
from gateway.engine.embedded_model import ensure_embedded_model
from index.pairs import collate, encode
from suppressors.artifacts import neutral_pairs
from suppressors.assistant import answer_states, train_head
from suppressors.vllm_plugin.head import head_logits
from suppressors.vllm_plugin.logits import logit_difference

ALPHAS = (1.0, 2.0, 4.0)
# An assistant sees the prompt, then one token per step; it returns its logits for the last one.
Assistant = Callable[[Any, torch.Tensor], torch.Tensor]


def separate_assistant(
    model: Any,
    tokenizer: Any,
    forget: list[tuple[str, str]],
    neutral: list[tuple[str, str]],
    layers: int,
    steps: int,
) -> Any:
    """ULD's assistant: the first ``layers`` decoder layers of ``model`` with a LoRA, trained to
    predict the forget answers and to be uniform on the neutral answers."""
    from peft import LoraConfig, get_peft_model

    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:layers]
    small.config.num_hidden_layers = layers
    small = get_peft_model(small, LoraConfig(r=32, lora_alpha=32, target_modules="all-linear"))
    forget_batch = collate([encode(tokenizer, q, a) for q, a in forget], tokenizer.pad_token_id)
    neutral_batch = collate([encode(tokenizer, q, a) for q, a in neutral], tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in small.parameters() if p.requires_grad], lr=1e-3)
    pick = random.Random(0)
    small.train()
    for _ in range(steps):
        ids, mask, labels = forget_batch
        remember = small(input_ids=ids, attention_mask=mask, labels=labels).loss
        rows = pick.sample(range(len(neutral_batch[0])), min(8, len(neutral_batch[0])))
        ids, mask, labels = (t[rows] for t in neutral_batch)
        logits = small(input_ids=ids, attention_mask=mask).logits[:, :-1]
        answer = labels[:, 1:] != -100
        uniform = -torch.log_softmax(logits[answer].float(), -1).mean()
        optimizer.zero_grad()
        (remember + uniform).backward()
        optimizer.step()
    small.eval()
    return small


def with_head(tensors: dict[str, torch.Tensor], model: Any) -> Assistant:
    args = (tensors, model.model.norm, model.lm_head.weight)
    layer = int(tensors["layer"]) + 1  # hidden_states[0] is the embedding
    return lambda out, _tokens: head_logits(out.hidden_states[layer][0, -1:], *args)[0]


def with_model(small: Any) -> Assistant:
    state: dict[str, Any] = {}

    def step(_out: Any, tokens: torch.Tensor) -> torch.Tensor:
        reply = small(input_ids=tokens, past_key_values=state.get("past"), use_cache=True)
        state["past"] = reply.past_key_values
        return reply.logits[0, -1]

    step.reset = state.clear  # type: ignore[attr-defined]
    return step


def answer(
    model: Any,
    tokenizer: Any,
    question: str,
    max_tokens: int,
    assistant: Assistant | None,
    alpha: float,
    timing: dict[str, float],
) -> str:
    """Greedy answer with the logit difference applied at every step."""
    messages = [{"role": "user", "content": question}]
    tokens = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    past, out_ids = None, []
    if hasattr(assistant, "reset"):
        assistant.reset()  # type: ignore[union-attr]
    for _ in range(max_tokens):
        start = time.perf_counter()
        out = model(input_ids=tokens, past_key_values=past, use_cache=True,
                    output_hidden_states=assistant is not None)  # fmt: skip
        timing["base"] += time.perf_counter() - start
        past, logits = out.past_key_values, out.logits[0, -1]
        if assistant is not None:
            start = time.perf_counter()
            logits = logit_difference(logits, assistant(out, tokens), alpha)
            timing["assistant"] += time.perf_counter() - start
        token = int(logits.argmax())
        if token == tokenizer.eos_token_id:
            break
        out_ids.append(token)
        tokens = torch.tensor([[token]])
    return tokenizer.decode(out_ids, skip_special_tokens=True)


def main(
    forget: Annotated[int, typer.Option(help="Forgotten TOFU subjects (as in eval run).")] = 1,
    questions: Annotated[int, typer.Option(help="Retain-author questions.")] = 20,
    max_tokens: Annotated[int, typer.Option(help="Tokens per greedy answer.")] = 48,
    layers: Annotated[int, typer.Option(help="Decoder layers of the separate assistant.")] = 8,
    separate_steps: Annotated[int, typer.Option(help="Training steps, separate.")] = 60,
    long_steps: Annotated[int, typer.Option(help="Training steps of the longer head.")] = 400,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    forgettable = load_subjects([TOFU / "forget_authors.jsonl"])
    forgotten, kept = split(forgettable, forget, 0)
    retained = load_subjects([TOFU / "retain_authors.jsonl"])
    retain_qa = random.Random(0).sample([qa for s in retained for qa in s.qa], questions)
    data_dir = Path(".obliviate")  # spelled as `obliviate-eval build-models` does: its cache key
    base = ensure_embedded_model(data_dir)
    target = build_models(data_dir, base, forgotten, kept + retained, FinetuneConfig())["target"]
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    forget_pairs = [(qa.question, qa.answer) for s in forgotten for qa in s.qa]
    neutral = neutral_pairs()
    # Both heads train on one forward pass's states: its time counts toward either head's cost.
    start = time.monotonic()
    states = answer_states(model, tokenizer, forget_pairs), answer_states(model, tokenizer, neutral)
    print(f"the heads' training states in {time.monotonic() - start:.0f} s", flush=True)

    assistants: dict[str, Assistant | None] = {"none": None}
    for name, build in {
        "head, 40 steps": lambda: with_head(train_head(model, *states), model),
        f"head, {long_steps} steps": lambda: with_head(
            train_head(model, *states, steps=long_steps), model
        ),
        f"separate, {layers} layers + LoRA, {separate_steps} steps": lambda: with_model(
            separate_assistant(model, tokenizer, forget_pairs, neutral, layers, separate_steps)
        ),
    }.items():
        start = time.monotonic()
        assistants[name] = build()
        print(f"trained {name} in {time.monotonic() - start:.0f} s", flush=True)

    sets = {"forget": [qa for s in forgotten for qa in s.qa], "retain": retain_qa}
    print(f"{'assistant':<40} {'α':>4} {'forget ROUGE-L':>15} {'retain ROUGE-L':>15} "
          f"{'cost/token':>11}")  # fmt: skip
    with torch.no_grad():
        for name, assistant in assistants.items():
            for alpha in ALPHAS if assistant is not None else (0.0,):
                timing = {"base": 0.0, "assistant": 0.0}
                scores = {}
                for set_name, qa in sets.items():
                    recall = [
                        rouge_l_recall(q.answer, answer(model, tokenizer, q.question, max_tokens,
                                                        assistant, alpha, timing))
                        for q in qa
                    ]  # fmt: skip
                    scores[set_name] = sum(recall) / len(recall)
                cost = 1 + timing["assistant"] / timing["base"]
                print(f"{name:<40} {alpha:>4g} {scores['forget']:>15.3f} "
                      f"{scores['retain']:>15.3f} {cost:>10.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
