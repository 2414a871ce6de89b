"""Task arithmetic (Ilharco et al. 2023): learn the forget set, then subtract what was learnt.

Training fine-tunes the adapter on the forget answers (plain NLL, descending), so the adapter's
update is the "task vector" of the forget data; ``finish`` then scales it by ``-scale`` before it
is saved. The served version is ``θ - scale · τ``: the direction that made the model better at
the forgotten answers, reversed. LoRA's update is ``B·A``, so scaling B scales the whole update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from removal.methods.base import Method, MethodConfig


@dataclass
class TaskArithmeticConfig(MethodConfig):
    scale: float = 1.0
    """λ: how much of the task vector is subtracted."""
    retain_weight: float = 0.0
    """The task vector is learnt on forget data alone."""


class TaskArithmetic(Method):
    name = "task_arithmetic"
    config_class = TaskArithmeticConfig
    config: TaskArithmeticConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        return self.nll(model, self.forget, forget) + self.retain_loss(model, retain)

    def finish(self, model: Any) -> None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(-self.config.scale)
