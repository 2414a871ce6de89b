"""The per-answer log-likelihoods every method uses (pairs as tensors: ``index.pairs``).

>>> ids, mask, labels = collate([encode(tokenizer, q, a)], pad_id)   # doctest: +SKIP
>>> total, count = answer_logprob(model, ids, mask, labels)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch


def token_logprobs(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and position: the log-probability of the next token, and whether it is an answer
    token (both ``[rows, length - 1]``; other positions hold 0)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    picked = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0).unsqueeze(-1))
    return picked.squeeze(-1) * keep, keep


def answer_logprob(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of the answer tokens, and how many there are."""
    logprobs, keep = token_logprobs(model, ids, mask, labels)
    return logprobs.sum(-1), keep.sum(-1)
