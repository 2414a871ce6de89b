"""WGA (Wang et al. 2025): gradient ascent with each answer token weighted by its own probability.

``L = -γ · mean_t sg(p_t)^β · (-log p_t)`` over forget answer tokens, plus the retain NLL: tokens
the model still predicts well are pushed hardest, tokens it has already let go of barely at all,
so the ascent stops driving forgotten tokens towards zero probability (what makes plain GA
collapse). As open-unlearning's ``compute_wga_loss`` (commit d3d7cf9), with its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from removal.methods.base import Method, MethodConfig


@dataclass
class WGAConfig(MethodConfig):
    beta: float = 1.0
    """Exponent of the token weight p_t^β (0 is gradient ascent)."""
    forget_weight: float = 1.0
    """γ, the forget term's weight."""


def weighted_ascent(
    logprobs: torch.Tensor, keep: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``-mean(weight · NLL)`` over the answer tokens; ``weight`` carries no gradient."""
    return -(weight.detach() * -logprobs)[keep].mean()


class WGA(Method):
    name = "wga"
    config_class = WGAConfig
    config: WGAConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        logprobs, keep = self.token_logprobs(model, self.forget, forget)
        weight = logprobs.exp() ** self.config.beta
        forget_loss = weighted_ascent(logprobs, keep, weight)
        return self.config.forget_weight * forget_loss + self.retain_loss(model, retain)
