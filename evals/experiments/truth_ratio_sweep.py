"""Benchmark: the forget quality that in-model suppression can reach, offline, on the TOFU target.
(``sweep`` stands for ``python -m evals.experiments.truth_ratio_sweep``.)

    sweep --forget 2
    sweep --forget 2 --retained 1   # quick look: ~30 min of training
    sweep --variants question --sigmas 8,16,32 --alphas 0
    sweep --retained 1 --variants prompt --alphas 0 --reseeded 3
    sweep --retained 1 --variants chat --answer-sigmas 1,2,4 --alphas 0
    sweep --retained 1 --variants ngram --ngram-sizes 3,4 --penalties 8
    sweep --variants ngram --ngram-sizes 5 --vocabulary-betas 0,0.75

Forget quality compares truth ratios (perturbed vs true answers) with the retain model's, so a
suppression layer can only score well where it is asked for log-probabilities and gives retain-like
ones. This computes them with transformers, per forgotten subject (its 20 questions), for the
retain model and for the target under each variant:

- ECO's noise (the plugin's own ``corrupted``) on the subject's name tokens (``names``), on those
  and the question (``question``: ECO's evaluation, which the gateway cannot tell apart in a raw
  text), or on every token but the first (``prompt``: what a scoring request through the gateway
  gets from ``scope="prompt"``), at several σ;
- a pseudonym in place of the name: each name token reads as another token of the same shape
  (capitalised or lower-case, with or without a leading space; seeded by its id), in the
  embeddings (``pseudonym``: what the plugin can do without changing the token ids) or in the text
  (``renamed``: the same pseudonym, retokenised);
- a penalty β on the logit of every token that would complete an n-gram of the subject's answers
  (``ngram``): it lowers the true answers only, where noise and ULD lower every subject's facts
  (the perturbed answers are other subjects' facts, which the retain model knows too); and a
  smaller one on the subject's own vocabulary everywhere (tokens but the common ones of TOFU's
  retain set), which lifts the perturbed answers the target's knowledge holds down;
- with ULD's subtraction ``l - α·log p_assistant`` on every token, the assistant being the served
  head trained on the subject's QA (prompt log-probabilities never meet the relative-top filter);
- the retain model retrained with other seeds (``--reseeded``): exact unlearning, which shows how
  close to 1 forget quality can come on these questions at all.

One line per subject and variant, then one per variant over all forgotten questions (what
``eval run`` reports): forget quality (KS p-value), KS statistic D, and the mean true-answer
probability. Models come from ``obliviate-eval build-models`` (built if missing).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from scipy.stats import ks_2samp
from transformers import AutoTokenizer

from evals import metrics
from evals.build_models import FinetuneConfig, build_model, build_models
from evals.data import QA, TOFU, Subject, add_perturbations, load_subjects, split
from evals.scoring import answer_logprobs, token_ids
from gateway.engine.embedded_model import ensure_embedded_model
from removal.trainer import load_merged
from suppressors.artifacts import common_tokens, neutral_pairs, own_vocabulary
from suppressors.assistant import answer_states, train_head
from suppressors.base import spellings
from suppressors.vllm_plugin.head import head_logits
from suppressors.vllm_plugin.ngrams import completions, penalised
from suppressors.vllm_plugin.worker import corrupted, corrupted_positions

Scores = Callable[[str, str], list[float]]
"""(question, answer) -> the answer tokens' log-probabilities."""
Edit = Callable[[torch.Tensor, list[int], str], None]
"""(input embeddings, prompt + answer ids, question): changes the embeddings in place."""
Penalty = Callable[[torch.Tensor, list[int]], None]
"""(logits, prompt + answer ids): changes the logits in place."""

RETAIN = TOFU / "retain_authors.jsonl"
SHAPES = (r" [A-Z][a-z]+", r"[A-Z][a-z]+", r" [a-z]+", r"[a-z]+")
"""Token shapes a pseudonym keeps; other tokens (hyphens, digits) stay as they are."""


def scorer(
    model: Any, tokenizer: Any, edit: Edit | None = None,
    head: dict[str, torch.Tensor] | None = None, alpha: float = 0.0,
    penalty: Penalty | None = None,
) -> Scores:  # fmt: skip
    """Log-probabilities of answers, with the input embeddings changed by ``edit``,
    ``alpha`` × the head's log-probabilities subtracted and the logits changed by ``penalty``."""
    norm, lm_head = model.model.norm, model.lm_head.weight.detach()

    def score(question: str, answer: str) -> list[float]:
        prompt, ids = token_ids(tokenizer, question, answer)
        with torch.no_grad():
            embeddings = model.model.embed_tokens(torch.tensor(ids))
            if edit:
                edit(embeddings, ids, question)
            out = model(inputs_embeds=embeddings[None], output_hidden_states=True)
            logits = out.logits[0].float()
            if head is not None and alpha:
                state = out.hidden_states[int(head["layer"]) + 1][0]
                assistant = head_logits(state, head, norm, lm_head)
                logits = logits - alpha * torch.log_softmax(assistant, -1)
            if penalty:
                penalty(logits, ids)
        return answer_logprobs(logits, ids, len(prompt))

    return score


def truth_ratios(score: Scores, questions: list[QA]) -> tuple[list[float], list[float]]:
    """Each question's raw truth ratio and true-answer probability."""
    ratios, true = [], []
    for qa in questions:
        p_true, *wrong = (
            metrics.normalised_probability(score(qa.question, a))
            for a in [qa.answer, *qa.perturbed]
        )
        ratios.append(metrics.truth_ratio(wrong, p_true))
        true.append(p_true)
    return ratios, true


def corrupt(embeddings: torch.Tensor, ids: list[int], at: list[int], sigma: float) -> None:
    """ECO's noise at ``sigma`` (the plugin's ``corrupted``) on positions ``at``, in place."""
    if at and sigma:
        embeddings[at] = corrupted(embeddings[at], [ids[i] for i in at], sigma)


def noise(subject: Subject, tokenizer: Any, sigma: float) -> dict[str, Edit]:
    """ECO's noise at ``sigma`` on each scope's positions (the plugin's ``corrupted_positions``)."""
    names = spellings(tokenizer.backend_tokenizer, subject.name)
    scopes: dict[str, Callable[[list[int], str], list[int]]] = {
        "names": lambda ids, _: corrupted_positions(ids, names),
        "question": lambda ids, text: corrupted_positions(
            ids, [*names, tokenizer.encode(text, add_special_tokens=False)]
        ),
        "prompt": lambda ids, _: corrupted_positions(ids, names, range(1, len(ids))),
    }

    def corrupting(positions: Callable[[list[int], str], list[int]]) -> Edit:
        def edit(embeddings: torch.Tensor, ids: list[int], question: str) -> None:
            corrupt(embeddings, ids, positions(ids, question), sigma)

        return edit

    return {scope: corrupting(at) for scope, at in scopes.items()}


def chat_noise(tokenizer: Any, sigma: float, answer_sigma: float) -> Edit:
    """ECO's noise at ``sigma`` on the chat prompt's tokens but the first, at ``answer_sigma`` on
    the answer's."""

    def edit(embeddings: torch.Tensor, ids: list[int], question: str) -> None:
        start = len(token_ids(tokenizer, question, "")[0])
        corrupt(embeddings, ids, list(range(1, start)), sigma)
        corrupt(embeddings, ids, list(range(start, len(ids))), answer_sigma)

    return edit


def ngram_penalty(
    subject: Subject, tokenizer: Any, n: int, beta: float, common: set[int], vocabulary_beta: float
) -> Penalty:
    """``beta`` off the logits of the tokens that would complete an n-gram of the subject's
    answers (tokenised with and without a leading space), given the n - 1 tokens before, and
    ``vocabulary_beta`` off those of its answers' tokens but the name's and the ``common`` ones
    everywhere (the plugin's ``ngram_penalty``)."""
    sequences = [t for qa in subject.qa for t in spellings(tokenizer.backend_tokenizer, qa.answer)]
    table = completions(sequences, n)
    vocabulary = own_vocabulary(tokenizer.backend_tokenizer, sequences, subject.name, common)

    def penalise(logits: torch.Tensor, ids: list[int]) -> None:
        logits[:, vocabulary] -= vocabulary_beta
        for i, after in penalised(table, n, ids[:-1], 0).items():  # logits[i] predicts ids[i + 1]
            logits[i, list(after)] -= beta

    return penalise


def substitutes(tokenizer: Any) -> Callable[[int], int]:
    """Token id -> a token id of the same shape, drawn at random (seeded by the id), or itself."""
    pieces = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    shaped = [[i for i, p in enumerate(pieces) if re.fullmatch(s, p)] for s in SHAPES]

    def substitute(token: int) -> int:
        for shape, candidates in zip(SHAPES, shaped, strict=True):
            if re.fullmatch(shape, pieces[token]):
                return random.Random(token).choice(candidates)
        return token

    return substitute


def pseudonym(
    subject: Subject, tokenizer: Any, model: Any, substitute: Callable[[int], int]
) -> Edit:
    """The name tokens' embeddings replaced by their substitutes' (the token ids unchanged)."""
    names = spellings(tokenizer.backend_tokenizer, subject.name)

    def edit(embeddings: torch.Tensor, ids: list[int], _: str) -> None:
        if at := corrupted_positions(ids, names):
            embeddings[at] = model.model.embed_tokens(
                torch.tensor([substitute(ids[i]) for i in at])
            )

    return edit


def renamed(
    score: Scores, subject: Subject, tokenizer: Any, substitute: Callable[[int], int]
) -> Scores:
    """``score`` of texts whose name is written as its pseudonym."""
    _, spaced = spellings(tokenizer.backend_tokenizer, subject.name)
    alias = tokenizer.decode([substitute(i) for i in spaced]).strip()
    return lambda question, answer: score(
        question.replace(subject.name, alias), answer.replace(subject.name, alias)
    )


def main(
    forget: Annotated[int, typer.Option(help="Forgotten TOFU subjects (as in eval run).")] = 2,
    retained: Annotated[
        int | None, typer.Option(help="Fine-tune on only this many retained subjects (quick look).")
    ] = None,
    variants: Annotated[
        str, typer.Option(help="Noise scopes, pseudonym forms and penalties, comma-separated.")
    ] = "names,question,prompt,chat,pseudonym,renamed,ngram",
    sigmas: Annotated[str, typer.Option(help="Noise scales, comma-separated.")] = "16",
    alphas: Annotated[str, typer.Option(help="ULD weights, comma-separated (0: none).")] = "0,0.5",
    answer_sigmas: Annotated[
        str, typer.Option(help="Noise scales on the answer in ``chat``, comma-separated.")
    ] = "2",
    ngram_sizes: Annotated[str, typer.Option(help="n of ``ngram``, comma-separated.")] = "4",
    penalties: Annotated[str, typer.Option(help="β of ``ngram``, comma-separated.")] = "8",
    vocabulary_betas: Annotated[
        str, typer.Option(help="vocabulary_beta of ``ngram``, comma-separated.")
    ] = "0,0.75",
    seed: Annotated[int, typer.Option(help="Chooses the forgotten subjects (as in eval run).")] = 0,
    reseeded: Annotated[
        int, typer.Option(help="Also retrain the retain model with seeds 1..N and score it.")
    ] = 0,
    data_dir: Annotated[Path, typer.Option(help="Holds the models.")] = Path(".obliviate"),
) -> None:
    torch.set_num_threads(2)
    forgettable = load_subjects([TOFU / "forget_authors.jsonl"])
    add_perturbations(forgettable)
    forgotten, kept = split(forgettable, forget, seed)
    kept = (kept + load_subjects([RETAIN]))[:retained]
    base = ensure_embedded_model(data_dir)
    models = build_models(data_dir, base, forgotten, kept, FinetuneConfig())
    tokenizer = AutoTokenizer.from_pretrained(models["target"])
    retain, target = (load_merged(str(models[n])).eval() for n in ("retain", "target"))
    retrained = {
        f"retain model, seed {k}": load_merged(
            str(build_model(data_dir, base, kept, FinetuneConfig(seed=k)))
        ).eval()
        for k in range(1, reseeded + 1)
    }
    substitute = substitutes(tokenizer)
    # TOFU's retain set, as evals/in_model_layers.sh serves it (OBLIVIATE_RETAIN_DATA)
    retain_set = [(qa.question, qa.answer) for s in load_subjects([RETAIN]) for qa in s.qa]
    common = common_tokens(tokenizer.backend_tokenizer, retain_set)
    pooled: dict[str, tuple[list[float], list[float]]] = {}

    def report(subject: str, variant: str, scores: tuple[list[float], list[float]],
               reference: list[float]) -> None:  # fmt: skip
        test, true = ks_2samp(scores[0], reference), scores[1]
        p_true = sum(true) / len(true)
        print(f"{subject} | {variant} | {test.pvalue:.3g} | {test.statistic:.2f} | {p_true:.3f}")

    weights, chosen = [float(a) for a in alphas.split(",")], variants.split(",")
    scales, answer_scales = ([float(x) for x in v.split(",")] for v in (sigmas, answer_sigmas))
    neutral = answer_states(target, tokenizer, neutral_pairs()) if any(weights) else None
    print("subject | variant | forget quality | D | true-answer probability")
    for subject in forgotten:
        pairs = [(qa.question, qa.answer) for qa in subject.qa] + [("", subject.name)]
        head = None
        if neutral is not None:
            head = train_head(target, answer_states(target, tokenizer, pairs), neutral)
        measured = {"reference": scorer(retain, tokenizer), "none": scorer(target, tokenizer)}
        measured |= {name: scorer(model, tokenizer) for name, model in retrained.items()}
        if "pseudonym" in chosen:
            edit = pseudonym(subject, tokenizer, target, substitute)
            measured["pseudonym"] = scorer(target, tokenizer, edit)
        if "renamed" in chosen:
            measured["renamed"] = renamed(scorer(target, tokenizer), subject, tokenizer, substitute)
        ngram_grid = itertools.product(
            map(int, ngram_sizes.split(",")),
            map(float, penalties.split(",")),
            map(float, vocabulary_betas.split(",")),
        )
        for n, beta, b in ngram_grid if "ngram" in chosen else ():
            penalty = ngram_penalty(subject, tokenizer, n, beta, common, b)
            name = f"ngram n={n}, β={beta:g}, vocabulary β={b:g}"
            measured[name] = scorer(target, tokenizer, penalty=penalty)
        for alpha in weights:
            for sigma in scales:
                edits = [
                    (scope, f"{scope} σ={sigma:g}", edit)
                    for scope, edit in noise(subject, tokenizer, sigma).items()
                ] + [
                    ("chat", f"chat σ={sigma:g}, answer σ={a:g}", chat_noise(tokenizer, sigma, a))
                    for a in answer_scales
                ]
                uld = f" + ULD α={alpha:g}" if alpha else ""
                for scope, name, edit in edits:
                    if scope in chosen:
                        measured[name + uld] = scorer(target, tokenizer, edit, head, alpha)
        reference = truth_ratios(measured["reference"], subject.qa)
        for name, score in measured.items():
            scores = reference if name == "reference" else truth_ratios(score, subject.qa)
            report(subject.name, name, scores, reference[0])
            for into, values in zip(pooled.setdefault(name, ([], [])), scores, strict=True):
                into.extend(values)
    for name, scores in pooled.items():
        report("all", name, scores, pooled["reference"][0])


if __name__ == "__main__":
    typer.run(main)
