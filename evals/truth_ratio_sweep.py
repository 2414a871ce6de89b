"""Benchmark: the forget quality that in-model suppression can reach, offline, on the TOFU target.

    python -m evals.truth_ratio_sweep --forget 2

Forget quality compares truth ratios (perturbed vs true answers) with the retain model's, so a
suppression layer can only score well where it is asked for log-probabilities and gives retain-like
ones. This computes them with transformers, per forgotten subject (its 20 questions), for the
retain model and for the target under each variant:

- ECO's noise (the plugin's own ``corrupted``) on the subject's name tokens (``names``), on those
  and the question (``question``: ECO's evaluation, which the gateway cannot tell apart in a raw
  text), or on every token but the first (``prompt``: what a scoring request through the gateway
  gets from ``scope="prompt"``), at several σ;
- with ULD's subtraction ``l - α·log p_assistant`` on every token, the assistant being the served
  head trained on the subject's QA (prompt log-probabilities never meet the relative-top filter).

One line per subject and variant: forget quality (KS p-value), KS statistic D, and the mean
true-answer probability. Models come from ``obliviate eval build-models`` (built if missing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from scipy.stats import ks_2samp
from transformers import AutoTokenizer

from evals import metrics
from evals.build_models import FinetuneConfig, build_models
from evals.data import QA, TOFU, Subject, add_perturbations, load_subjects, split
from evals.scoring import answer_logprobs, token_ids
from gateway.engine.embedded_model import ensure_embedded_model
from removal.trainer import load_merged
from suppressors.artifacts import neutral_pairs
from suppressors.assistant import LAYER, head_logits, train_head
from suppressors.vllm_plugin.worker import corrupted, corrupted_positions

Scores = Callable[[str, str], list[float]]
"""(question, answer) -> the answer tokens' log-probabilities."""
Noised = Callable[[list[int], str], list[int]]
"""(prompt + answer ids, question) -> the positions to corrupt."""


def scorer(
    model: Any, tokenizer: Any, noised: Noised | None = None,
    sigma: float = 0.0, head: dict[str, torch.Tensor] | None = None, alpha: float = 0.0,
) -> Scores:  # fmt: skip
    """Log-probabilities of answers, with the positions ``noised`` chooses corrupted at
    ``sigma`` and ``alpha`` × the head's log-probabilities subtracted."""
    norm, lm_head = model.model.norm, model.lm_head.weight.detach()

    def score(question: str, answer: str) -> list[float]:
        prompt, ids = token_ids(tokenizer, question, answer)
        tokens = torch.tensor(ids)
        with torch.no_grad():
            embeddings = model.model.embed_tokens(tokens)
            if noised and sigma and (at := noised(ids, question)):
                embeddings[at] = corrupted(embeddings[at], tokens[at], sigma)
            out = model(inputs_embeds=embeddings[None], output_hidden_states=True)
            logits = out.logits[0].float()
            if head is not None and alpha:
                state = out.hidden_states[LAYER + 1][0]
                assistant = head_logits(state, head, norm.weight, norm.variance_epsilon, lm_head)
                logits = logits - alpha * torch.log_softmax(assistant, -1)
        return answer_logprobs(logits, ids, len(prompt))

    return score


def truth_ratios(score: Scores, questions: list[QA]) -> tuple[list[float], float]:
    """Each question's raw truth ratio, and the mean true-answer probability."""
    ratios, true = [], []
    for qa in questions:
        p_true, *wrong = (
            metrics.normalised_probability(score(qa.question, a))
            for a in [qa.answer, *qa.perturbed]
        )
        ratios.append(metrics.truth_ratio(wrong, p_true))
        true.append(p_true)
    return ratios, sum(true) / len(true)


def scopes(subject: Subject, tokenizer: Any) -> dict[str, Noised]:
    """Positions each corruption scope touches (the plugin's own ``corrupted_positions``)."""
    names = [
        tokenizer.encode(t, add_special_tokens=False) for t in (subject.name, f" {subject.name}")
    ]

    def question(ids: list[int], text: str) -> list[int]:
        return corrupted_positions(ids, [*names, tokenizer.encode(text, add_special_tokens=False)])

    return {
        "names": lambda ids, _text: corrupted_positions(ids, names),
        "question": question,
        "prompt": lambda ids, _text: corrupted_positions(ids, names, range(1, len(ids))),
    }


def main(
    forget: Annotated[int, typer.Option(help="Forgotten TOFU subjects (as in eval run).")] = 2,
    sigmas: Annotated[str, typer.Option(help="Noise scales, comma-separated.")] = "16",
    alphas: Annotated[str, typer.Option(help="ULD weights, comma-separated (0: none).")] = "0,0.5",
    data_dir: Annotated[Path, typer.Option(help="Holds the models.")] = Path(".obliviate"),
) -> None:
    torch.set_num_threads(2)
    forgettable = load_subjects([TOFU / "forget_authors.jsonl"])
    add_perturbations(forgettable)
    forgotten, kept = split(forgettable, forget, 0)
    kept += load_subjects([TOFU / "retain_authors.jsonl"])
    base = ensure_embedded_model(data_dir)
    models = build_models(data_dir, base, forgotten, kept, FinetuneConfig())
    tokenizer = AutoTokenizer.from_pretrained(models["target"])
    retain, target = (load_merged(str(models[n])).eval() for n in ("retain", "target"))
    print("subject | variant | forget quality | D | true-answer probability")
    for subject in forgotten:
        reference, _ = truth_ratios(scorer(retain, tokenizer), subject.qa)
        pairs = [(qa.question, qa.answer) for qa in subject.qa] + [("", subject.name)]
        head = train_head(target, tokenizer, pairs, neutral_pairs())
        variants = {"none": scorer(target, tokenizer)}
        for alpha in map(float, alphas.split(",")):
            for scope, noised in scopes(subject, tokenizer).items():
                for sigma in map(float, sigmas.split(",")):
                    name = f"{scope} σ={sigma:g}" + (f" + ULD α={alpha:g}" if alpha else "")
                    variants[name] = scorer(target, tokenizer, noised, sigma, head, alpha)
        for name, score in variants.items():
            ratios, p_true = truth_ratios(score, subject.qa)
            test = ks_2samp(ratios, reference)
            print(
                f"{subject.name} | {name} | {test.pvalue:.3g} | {test.statistic:.2f} | {p_true:.3f}"
            )


if __name__ == "__main__":
    typer.run(main)
