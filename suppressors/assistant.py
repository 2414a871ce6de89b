"""The logit-difference assistant (ULD, Ji et al. 2024) as a small head on the base's own state.

ULD's assistant is the base's first K layers plus the LM head, trained to *remember* the forget set
and to be uniform on retain data; serving subtracts it: ``l = l_base - α·l_assistant``. Here the
assistant reads the base's residual stream after decoder layer K (which the plugin's hook captures
anyway), so it needs no second KV cache and no second forward pass: one low-rank residual MLP, then
the base's final norm and (frozen) LM head.

    forget = answer_states(model, tokenizer, forget_pairs)               # offline, transformers
    tensors = train_head(model, forget, answer_states(model, tokenizer, neutral_pairs))
    logits = head_logits(state, tensors, final_norm, lm_head)  # vllm_plugin.head, in vLLM

The steering artifact is computed from the same forward passes (``States.mean``, ``States.norms``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from index.pairs import collate, encode
from suppressors.base import decoder_layer
from suppressors.vllm_plugin.head import head_logits

DEPTH = 2 / 3
"""Where the head reads the stream, as a fraction of the model's depth (tuned on SmolLM2: its
layer 20 of 30)."""
RANK = 32
STEPS = 40
LEARNING_RATE = 3e-3
NEUTRAL_TOKENS = 256
"""Neutral answer tokens per step (the LM head is the costly part: 49k outputs per token)."""
STATES_BATCH = 8
MAX_TOKENS = 512
"""Tokens read of each pair (a long document's first ones): bounds a forward pass's memory."""


@dataclass
class States:
    """Residual-stream states of (question, answer) pairs at the positions that predict answer
    tokens (one forward pass gives what both in-model artifacts need)."""

    layer: int
    """The decoder layer the head reads (``head_layer``)."""
    head: torch.Tensor
    """``[n, hidden]``: the stream after decoder layer ``layer`` (the head's input)."""
    targets: torch.Tensor
    """``[n]``: the answer tokens those positions predict."""
    mean: torch.Tensor
    """``[layers, hidden]``: the mean stream after each decoder layer."""
    norms: torch.Tensor
    """``[layers, n]``: the stream's norm after each decoder layer."""


def train_head(
    model: Any,
    forget: States,
    neutral: States,
    seed: int = 0,
    steps: int = STEPS,
) -> dict[str, torch.Tensor]:
    """Fit the head: next-token loss on the forget answers + cross-entropy to uniform on neutral."""
    torch.manual_seed(seed)
    hidden = forget.head.shape[-1]
    up = (torch.randn(hidden, RANK) / hidden**0.5).requires_grad_()
    down = torch.zeros(RANK, hidden, requires_grad=True)  # starts as the plain logit lens
    norm = model.model.norm
    lm_head = model.lm_head.weight.detach()
    optimizer = torch.optim.Adam([up, down], lr=LEARNING_RATE)
    pick = random.Random(seed)
    n_neutral = len(neutral.head)
    for _ in range(steps):
        rows = pick.sample(range(n_neutral), min(NEUTRAL_TOKENS, n_neutral))
        tensors = {"up": up, "down": down}
        args = (tensors, norm, lm_head, getattr(model.config, "final_logit_softcapping", None))
        remember = torch.nn.functional.cross_entropy(
            head_logits(forget.head, *args), forget.targets
        )
        uniform = -torch.log_softmax(head_logits(neutral.head[rows], *args), -1).mean()
        optimizer.zero_grad()
        (remember + uniform).backward()
        optimizer.step()
    return {"up": up.detach(), "down": down.detach(), "layer": torch.tensor(forget.layer)}


def answer_states(model: Any, tokenizer: Any, pairs: list[tuple[str, str]]) -> States:
    """``States`` of ``pairs`` (chat-formatted as in fine-tuning; an empty question is plain text).

    A few pairs per forward pass (bounds memory). The base model alone: its LM head's logits are
    not needed."""
    layer = head_layer(model.config.num_hidden_layers)
    heads, targets, norms, total = [], [], [], 0
    for start in range(0, len(pairs), STATES_BATCH):
        encoded = [encode(tokenizer, q, a) for q, a in pairs[start : start + STATES_BATCH]]
        ids, mask, labels = collate(
            [(tokens[:MAX_TOKENS], begin) for tokens, begin in encoded], tokenizer.pad_token_id
        )
        with torch.no_grad():
            out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        target = labels[:, 1:]
        keep = target != -100
        # Left out: a plain text's first token, the attention sink (its norm is ~100x the others').
        keep[:, 0] = False
        stream = torch.stack(out.hidden_states[1:])[:, :, :-1][:, keep]  # [layers, n, hidden]
        heads.append(stream[layer])
        targets.append(target[keep])
        norms.append(stream.norm(dim=-1))
        total = total + stream.sum(dim=1)
    norm = torch.cat(norms, dim=1)
    return States(layer, torch.cat(heads), torch.cat(targets), total / norm.shape[1], norm)


def head_layer(num_hidden_layers: int) -> int:
    """The decoder layer whose output the head reads, on a model of that depth."""
    return decoder_layer(DEPTH, num_hidden_layers, "the assistant head's layer")
