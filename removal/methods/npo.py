"""NPO (Zhang et al. 2024): negative preference optimisation against the replaced weights.

``L = -(2/β) · mean log σ(-β · (log π_θ(y|x) - log π_ref(y|x)))`` on forget pairs, plus the
retain NLL. It falls like gradient ascent at first, then flattens as π_θ drops below π_ref,
which is what keeps it from collapsing the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from removal.methods.base import Method, MethodConfig


@dataclass
class NPOConfig(MethodConfig):
    beta: float = 0.1
    """Inverse temperature β of the preference loss."""


class NPO(Method):
    name = "npo"
    config_class = NPOConfig
    config: NPOConfig

    def prepare(self, model: Any) -> None:
        self.reference = self.reference_logprobs(model, self.forget)

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        logp, _ = self.logprob(model, self.forget, forget)
        ratio = logp - self.reference[forget]
        beta = self.config.beta
        forget_loss = -(2 / beta) * F.logsigmoid(-beta * ratio).mean()
        return forget_loss + self.retain_loss(model, retain)
