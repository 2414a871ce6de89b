"""GCG (Zou et al. 2023): an adversarial suffix of tokens, optimised white-box with the gradient
through a one-hot encoding of the suffix, that makes a chat model begin its answer with a target.

    result = gcg(model, tokenizer, "Where was Ann Lee born?", "Ann Lee was born in Oslo")
    prompt = suffixed("Where was Ann Lee born?", result.suffix)  # the user message to send

Each step: the gradient of the target's loss with respect to the one-hot suffix gives, per
position, the ``topk`` most promising replacement tokens; ``candidates`` suffixes with one random
position replaced by one of them are scored in one forward batch; the best one is kept.
Written here rather than taken from nanoGCG, which pins transformers 4.47 (we serve 5.x).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

PLACEHOLDER = "{suffix}"


@dataclass
class GCGConfig:
    steps: int = 50
    """Iterations (the seed survey's experiment: 50)."""
    suffix_tokens: int = 20
    topk: int = 64
    """Replacement tokens considered per position: the most negative gradient entries."""
    candidates: int = 32
    """Suffixes scored per step, in one forward batch (512 in the paper; fewer on a CPU)."""
    target_tokens: int = 16
    """The target is cut to its first tokens: an answer's opening is what elicits the rest."""
    seed: int = 0


@dataclass
class GCGResult:
    suffix: str
    loss: float
    """Mean cross-entropy of the target after the best suffix."""
    losses: list[float] = field(default_factory=list)
    """The loss of the suffix each step started from (the first: the initial suffix's)."""


def suffixed(question: str, suffix: str) -> str:
    """The user message an attacker sends (the suffix starts with its own space)."""
    return f"{question}{suffix}"


def gcg(
    model: Any, tokenizer: Any, question: str, target: str, config: GCGConfig | None = None
) -> GCGResult:
    config = config or GCGConfig()
    generator = torch.Generator().manual_seed(config.seed)
    model.requires_grad_(False)
    template = tokenizer.apply_chat_template(
        [{"role": "user", "content": suffixed(question, PLACEHOLDER)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    before, after = template.split(PLACEHOLDER)

    def ids(text: str) -> torch.Tensor:
        return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])

    before_ids, after_ids = ids(before), ids(after)
    target_ids = ids(target)[: config.target_tokens]
    suffix = ids(" x" * config.suffix_tokens)[: config.suffix_tokens]
    embed = model.get_input_embeddings()
    allowed = _allowed(tokenizer, embed.num_embeddings)

    def loss_of(logits: torch.Tensor) -> torch.Tensor:
        """Per row: cross-entropy of the target tokens, which end every sequence."""
        predicted = logits[:, -len(target_ids) - 1 : -1].float()
        expected = target_ids.expand(len(logits), -1)
        return F.cross_entropy(predicted.transpose(1, 2), expected, reduction="none").mean(1)

    def gradient(suffix: torch.Tensor) -> tuple[float, torch.Tensor]:
        one_hot = F.one_hot(suffix, embed.num_embeddings).to(embed.weight.dtype)
        one_hot.requires_grad_(True)
        parts = [embed(before_ids), one_hot @ embed.weight, embed(after_ids), embed(target_ids)]
        loss = loss_of(model(inputs_embeds=torch.cat(parts)[None]).logits).sum()
        grad = torch.autograd.grad(loss, one_hot)[0]
        return float(loss.detach()), grad

    best = GCGResult(tokenizer.decode(suffix), float("inf"))
    for _ in range(config.steps):
        loss, grad = gradient(suffix)
        if loss < best.loss:  # the suffix the step starts from competes too
            best = GCGResult(tokenizer.decode(suffix), loss, best.losses)
        best.losses.append(loss)
        grad[:, ~allowed] = float("inf")
        top = (-grad).topk(config.topk, dim=1).indices
        rows = torch.arange(config.candidates)
        positions = torch.randint(len(suffix), (config.candidates,), generator=generator)
        picks = torch.randint(config.topk, (config.candidates,), generator=generator)
        candidates = suffix.repeat(config.candidates, 1)
        candidates[rows, positions] = top[positions, picks]
        candidates = _round_trips(tokenizer, candidates)
        if not len(candidates):
            continue
        batch = torch.cat(
            [
                before_ids.expand(len(candidates), -1),
                candidates,
                after_ids.expand(len(candidates), -1),
                target_ids.expand(len(candidates), -1),
            ],
            dim=1,
        )
        with torch.no_grad():
            losses = loss_of(model(input_ids=batch).logits)
        winner = int(losses.argmin())
        suffix = candidates[winner]
        if float(losses[winner]) < best.loss:
            best = GCGResult(tokenizer.decode(suffix), float(losses[winner]), best.losses)
    return best


@functools.cache
def _allowed(tokenizer: Any, vocabulary: int) -> torch.Tensor:
    """Printable ASCII tokens that are not special (as in the paper's default); decoded once
    per tokenizer, not per attacked question."""
    special = set(tokenizer.all_special_ids)
    allowed = torch.zeros(vocabulary, dtype=torch.bool)
    for token in range(min(vocabulary, len(tokenizer))):
        text = tokenizer.decode([token])
        allowed[token] = token not in special and text.isascii() and text.isprintable()
    return allowed


def _round_trips(tokenizer: Any, candidates: torch.Tensor) -> torch.Tensor:
    """The candidates that tokenize back to themselves once sent as text."""
    kept = [
        row
        for row in candidates
        if tokenizer(tokenizer.decode(row), add_special_tokens=False)["input_ids"] == row.tolist()
    ]
    return torch.stack(kept) if kept else candidates[:0]
