"""UNDIAL (Dong et al. 2024): self-distillation towards the replaced weights' own predictions,
with the answer's token pushed down.

At each forget answer token the teacher is the starting weights' distribution with the true
token's logit lowered by β; the student is trained with cross-entropy to it. Unlike ascent, the
target is a fixed distribution, so the loss is bounded and training cannot run away. As
open-unlearning's ``compute_undial_loss`` (commit d3d7cf9), with its defaults (β = 10, no retain
term), except that the loss is averaged over answer tokens only (open-unlearning averages over
every position, the prompt's and the padding's included).
The teacher is the model with its new adapter switched off: the parent version is merged into
the base before training, so that is exactly the weights being replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from removal.methods.base import Method, MethodConfig


@dataclass
class UNDIALConfig(MethodConfig):
    beta: float = 10.0
    """How far the true token's logit is lowered in the teacher."""
    retain_weight: float = 0.0
    """UNDIAL distils on forget data alone."""


class UNDIAL(Method):
    name = "undial"
    config_class = UNDIALConfig
    config: UNDIALConfig

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        ids, mask, labels = self.batch(self.forget, forget)
        targets = labels[:, 1:]
        keep = targets != -100
        with torch.no_grad(), getattr(model, "module", model).disable_adapter():
            teacher = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        lowered = teacher.scatter_add(
            -1,
            targets.clamp(min=0).unsqueeze(-1),
            torch.full_like(teacher[..., :1], -self.config.beta),
        )
        student = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        forget_loss = F.cross_entropy(student[keep], lowered[keep].softmax(-1))
        return forget_loss + self.retain_loss(model, retain)
