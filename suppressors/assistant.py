"""The logit-difference assistant (ULD, Ji et al. 2024) as a small head on the base's own state.

ULD's assistant is the base's first K layers plus the LM head, trained to *remember* the forget set
and to be uniform on retain data; serving subtracts it: ``l = l_base - α·l_assistant``. Here the
assistant reads the base's residual stream after decoder layer K (which the plugin's hook captures
anyway), so it needs no second KV cache and no second forward pass: one low-rank residual MLP, then
the base's final norm and (frozen) LM head.

    tensors = train_head(model, tokenizer, forget_pairs, neutral_pairs)   # offline, transformers
    logits = head_logits(state, tensors, norm_weight, eps, lm_head)       # in vLLM's worker
"""

from __future__ import annotations

import random
import threading
from typing import Any

import torch

from removal.examples import collate, encode

LAYER = 20
"""Decoder layer whose output the head reads (SmolLM2 has 30)."""
RANK = 32
STEPS = 40
LEARNING_RATE = 3e-3
NEUTRAL_TOKENS = 256
"""Neutral answer tokens per step (the LM head is the costly part: 49k outputs per token)."""
STATES_BATCH = 8


class Stopped(Exception):
    """Training was stopped from outside (the gateway is shutting down)."""


def head_logits(
    state: torch.Tensor,
    tensors: dict[str, torch.Tensor],
    norm_weight: torch.Tensor,
    eps: float,
    lm_head: torch.Tensor,
) -> torch.Tensor:
    """Assistant logits for residual-stream states ``[tokens, hidden]`` (float32)."""
    x = state.float()
    x = x + torch.nn.functional.gelu(x @ tensors["up"]) @ tensors["down"]
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm_weight.float()
    return x @ lm_head.float().T


def train_head(
    model: Any,
    tokenizer: Any,
    forget: list[tuple[str, str]],
    neutral: list[tuple[str, str]],
    seed: int = 0,
    steps: int = STEPS,
    stop: threading.Event | None = None,
) -> dict[str, torch.Tensor]:
    """Fit the head: next-token loss on the forget answers + cross-entropy to uniform on neutral.
    Raises ``Stopped`` at its next forward pass or step once ``stop`` is set."""
    torch.manual_seed(seed)
    x_forget, y_forget = _answer_states(model, tokenizer, forget, stop)
    x_neutral, _ = _answer_states(model, tokenizer, neutral, stop)
    hidden = x_forget.shape[-1]
    up = (torch.randn(hidden, RANK) / hidden**0.5).requires_grad_()
    down = torch.zeros(RANK, hidden, requires_grad=True)  # starts as the plain logit lens
    norm = model.model.norm
    lm_head = model.lm_head.weight.detach()
    optimizer = torch.optim.Adam([up, down], lr=LEARNING_RATE)
    pick = random.Random(seed)
    for _ in range(steps):
        _check(stop)
        rows = pick.sample(range(len(x_neutral)), min(NEUTRAL_TOKENS, len(x_neutral)))
        tensors = {"up": up, "down": down}
        args = (tensors, norm.weight.detach(), norm.variance_epsilon, lm_head)
        remember = torch.nn.functional.cross_entropy(head_logits(x_forget, *args), y_forget)
        uniform = -torch.log_softmax(head_logits(x_neutral[rows], *args), -1).mean()
        optimizer.zero_grad()
        (remember + uniform).backward()
        optimizer.step()
    return {"up": up.detach(), "down": down.detach(), "layer": torch.tensor(LAYER)}


def _answer_states(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], stop: threading.Event | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """States after layer LAYER at the positions that predict answer tokens, and those tokens.

    A few pairs per forward pass, checking ``stop`` between them: the 64 neutral pairs take
    minutes on a slow 2-core box. The base model alone: its LM head's logits are not needed."""
    states, targets = [], []
    for start in range(0, len(pairs), STATES_BATCH):
        _check(stop)
        examples = [encode(tokenizer, q, a) for q, a in pairs[start : start + STATES_BATCH]]
        ids, mask, labels = collate(examples, tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        target = labels[:, 1:]
        keep = target != -100
        states.append(out.hidden_states[LAYER + 1][:, :-1][keep])
        targets.append(target[keep])
    return torch.cat(states), torch.cat(targets)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped
