"""IdkDPO (TOFU's refusal baseline): DPO preferring an "I don't know" answer to the true one.

``L = -mean log σ(β · [(log π_θ(idk) - log π_ref(idk)) - (log π_θ(y) - log π_ref(y))])`` on forget
questions, plus the retain NLL. Refusals come from ``removal/data/idontknow.txt`` (TOFU's list),
one per question, chosen by seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from index.pairs import Pair, encode
from removal.methods.base import Method, MethodConfig

REFUSALS = Path(__file__).resolve().parents[1] / "data" / "idontknow.txt"


@dataclass
class IdkDPOConfig(MethodConfig):
    beta: float = 0.1
    """Inverse temperature β of DPO."""


class IdkDPO(Method):
    name = "idkdpo"
    config_class = IdkDPOConfig
    config: IdkDPOConfig

    def __init__(
        self, config: IdkDPOConfig, tokenizer: Any, forget: list[Pair], retain: list[Pair]
    ):
        super().__init__(config, tokenizer, forget, retain)
        refusals = [line for line in REFUSALS.read_text().splitlines() if line.strip()]
        choose = random.Random(config.seed)
        self.refusals = [encode(tokenizer, q, choose.choice(refusals)) for q, _ in forget]

    def prepare(self, model: Any) -> None:
        self.reference = (
            self.reference_logprobs(model, self.refusals),
            self.reference_logprobs(model, self.forget),
        )

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        chosen = self.logprob(model, self.refusals, forget)[0] - self.reference[0][forget]
        rejected = self.logprob(model, self.forget, forget)[0] - self.reference[1][forget]
        forget_loss = -F.logsigmoid(self.config.beta * (chosen - rejected)).mean()
        return forget_loss + self.retain_loss(model, retain)
