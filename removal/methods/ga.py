"""Gradient ascent: maximise the loss on the forget answers (no retain term)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from removal.methods.base import Method, MethodConfig


@dataclass
class GradAscentConfig(MethodConfig):
    retain_weight: float = 0.0
    """Plain gradient ascent ignores retain data."""


class GradAscent(Method):
    name = "ga"
    config_class = GradAscentConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        return -self.nll(model, self.forget, forget) + self.retain_loss(model, retain)
