"""Memorised-token selection: unlikelihood on the tokens of a forgotten answer that the replaced
weights predicted most surely, and on no others.

An answer's function words and the words its question gives away are predicted from context by
any model; the tokens that carry the memorised fact (a name, a date, a trade) are the ones the
model predicts far better than chance. Each forget answer's top ``fraction`` of tokens by the
starting weights' probability (at least one) are selected once, before training; the loss is
their mean unlikelihood ``-log(1 - p_t)`` (Welleck et al. 2020) plus the retain NLL. Not ascent
(``log p_t``): its gradient on a token's logit is ``1 - p_t``, which vanishes on exactly the
tokens selected, and on the TOFU target (p_t near 1) the forget term did nothing. Unlikelihood's
is ``p_t``. A selection by memorisation score in the spirit of the survey's token-level methods
(e.g. "Not All Tokens Are Meant to Be Forgotten", 2025), kept to the one score this model gives
without an auxiliary model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from removal.methods.base import Method, MethodConfig


@dataclass
class MemSelConfig(MethodConfig):
    fraction: float = 0.3
    """Share of each answer's tokens that are selected (the most surely predicted)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], not {self.fraction}")


class MemSel(Method):
    name = "memsel"
    config_class = MemSelConfig
    config: MemSelConfig

    def prepare(self, model: Any) -> None:
        self.selected: list[torch.Tensor] = []
        with torch.no_grad():
            for chunk in self.chunks(self.forget):
                logprobs, keep = self.token_logprobs(model, self.forget, chunk)
                # The end of text is the surest token of all, and carries no fact.
                keep = keep & (
                    self.batch(self.forget, chunk)[2][:, 1:] != self.tokenizer.eos_token_id
                )
                for row_logprobs, row_keep in zip(logprobs, keep, strict=True):
                    count = max(1, round(self.config.fraction * int(row_keep.sum())))
                    ranked = row_logprobs.masked_fill(~row_keep, float("-inf"))
                    chosen = torch.zeros_like(row_keep)
                    chosen[ranked.topk(count).indices] = True
                    self.selected.append(chosen)

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        ids, mask, labels = self.batch(self.forget, forget)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        width = targets.shape[1]
        chosen = torch.stack([_fit(self.selected[i], width) for i in forget]) & (targets != -100)
        forget_loss = unlikelihood(logits[chosen], targets[chosen]).mean()
        return forget_loss + self.retain_loss(model, retain)


def unlikelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-log(1 - p)`` of each target token from its row of logits: the log-sum-exp of all
    logits less that of the others. Exact, gradient ``p`` on the target's logit included, even
    where p rounds to 1 and its log-probability (and any loss made of it) is flat."""
    others = logits.scatter(-1, targets.unsqueeze(-1), float("-inf"))
    return torch.logsumexp(logits, -1) - torch.logsumexp(others, -1)


def _fit(mask: torch.Tensor, width: int) -> torch.Tensor:
    """A row's selection padded or cut to this batch's width (batches pad to their longest)."""
    if len(mask) >= width:
        return mask[:width]
    return torch.cat([mask, torch.zeros(width - len(mask), dtype=mask.dtype, device=mask.device)])
