"""SimNPO (Fan et al. 2024): NPO without a reference model, length-normalised.

``L = -(2/β) · mean log σ(-(β/|y|) · log π_θ(y|x) - γ)`` on forget pairs, plus the retain NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from removal.methods.base import Method, MethodConfig


@dataclass
class SimNPOConfig(MethodConfig):
    beta: float = 4.5
    """Inverse temperature β (the paper's TOFU setting)."""
    gamma: float = 0.0
    """Reward margin γ."""


class SimNPO(Method):
    name = "simnpo"
    config_class = SimNPOConfig
    config: SimNPOConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        logp, length = self.logprob(model, self.forget, forget)
        margin = self.config.beta * logp / length.clamp(min=1) + self.config.gamma
        forget_loss = -(2 / self.config.beta) * F.logsigmoid(-margin).mean()
        return forget_loss + self.retain_loss(model, retain)
