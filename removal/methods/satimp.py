"""SatImp (Yang et al. 2025): ascent weighted by a token's saturation and its importance.

``L = -γ · mean_t sg(p_t^β1 · (1 - p_t)^β2) · (-log p_t)`` plus the retain NLL: the weight peaks at
tokens the model predicts well but not surely, and leaves both the near-certain (saturated) and
the already forgotten ones alone. As open-unlearning's ``compute_satimp_loss`` (commit d3d7cf9),
with its defaults (β1 = 5, β2 = 1, γ = 0.1, retain weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from removal.methods.base import Method, MethodConfig
from removal.methods.wga import weighted_ascent


@dataclass
class SatImpConfig(MethodConfig):
    beta1: float = 5.0
    """Exponent of p_t (saturation)."""
    beta2: float = 1.0
    """Exponent of 1 - p_t (importance)."""
    forget_weight: float = 0.1
    """γ, the forget term's weight."""


class SatImp(Method):
    name = "satimp"
    config_class = SatImpConfig
    config: SatImpConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        logprobs, keep = self.token_logprobs(model, self.forget, forget)
        p = logprobs.exp()
        weight = p**self.config.beta1 * (1 - p) ** self.config.beta2
        forget_loss = weighted_ascent(logprobs, keep, weight)
        return self.config.forget_weight * forget_loss + self.retain_loss(model, retain)
