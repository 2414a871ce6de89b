"""What every removal method shares: its config fields, its data, and the retain loss.

A method is one class in one module (``ga.py``, ``npo.py``, ...) with a config dataclass that
documents its own fields; ``removal.methods.METHODS`` registers it by name. The trainer calls
``prepare`` once with the starting weights (reference values are computed there, so the reference
is always *the weights being replaced*, adapter included) and then ``loss`` once per step with the
indices of the forget and retain pairs in that step's batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from index.pairs import Encoded, Pair, collate, encode
from removal.examples import answer_logprob, token_logprobs

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class MethodConfig:
    """Fields every method has; a method's own config adds its hyper-parameters."""

    steps: int = 30
    """Optimiser steps (30 forgot 4 subjects × ~10 QA here)."""
    learning_rate: float = 5e-4
    """AdamW learning rate of the LoRA weights (higher than a full fine-tune's)."""
    batch_size: int = 4
    """Forget pairs per step (and as many retain pairs)."""
    lora_rank: int = 8
    lora_alpha: int = 16
    retain_weight: float = 1.0
    """Weight of the retain loss (NLL on retain pairs; 0 turns it off)."""
    seed: int = 0

    def __post_init__(self) -> None:
        # Refused before a job is queued (a 400), not after its model has loaded.
        for name in ("steps", "batch_size", "lora_rank", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, not {self.learning_rate}")
        if self.retain_weight < 0:
            raise ValueError(f"retain_weight must be non-negative, not {self.retain_weight}")


class Method:
    """Base class: holds the tokenized data; subclasses define ``loss``."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(
        self, config: MethodConfig, tokenizer: Any, forget: list[Pair], retain: list[Pair]
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.device = torch.device("cpu")
        """Where the model runs (the trainer sets the accelerator's device); batches go there."""
        self.forget = [encode(tokenizer, q, a) for q, a in forget]
        self.retain = [encode(tokenizer, q, a) for q, a in retain]

    def target_modules(self, model: Any) -> list[str] | tuple[str, ...]:
        """Module names that get LoRA weights (all linear layers unless a method says less)."""
        return ALL_LINEAR

    def prepare(self, model: Any) -> None:
        """Compute reference values with the starting weights (no gradients)."""

    def loss(self, model: Any, forget: list[int], retain: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, examples: list[Encoded], indices: list[int]):
        batch = collate([examples[i] for i in indices], self.tokenizer.pad_token_id)
        return tuple(tensor.to(self.device) for tensor in batch)

    def nll(self, model: Any, examples: list[Encoded], indices: list[int]) -> torch.Tensor:
        """Mean next-token loss on the answers."""
        ids, mask, labels = self.batch(examples, indices)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def logprob(
        self, model: Any, examples: list[Encoded], indices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return answer_logprob(model, *self.batch(examples, indices))

    def token_logprobs(
        self, model: Any, examples: list[Encoded], indices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each answer token's log-probability, and the mask of answer tokens."""
        return token_logprobs(model, *self.batch(examples, indices))

    def finish(self, model: Any) -> None:
        """Change the trained adapter before it is saved (task arithmetic negates it)."""

    def chunks(self, examples: list[Encoded]) -> list[list[int]]:
        """Indices of ``examples`` in batches of ``batch_size`` (for no-grad reference passes)."""
        size = self.config.batch_size
        return [list(range(i, min(i + size, len(examples)))) for i in range(0, len(examples), size)]

    def reference_logprobs(self, model: Any, examples: list[Encoded]) -> torch.Tensor:
        """Summed answer log-probability of every example under the starting weights."""
        with torch.no_grad():
            return torch.cat([self.logprob(model, examples, c)[0] for c in self.chunks(examples)])

    def retain_loss(self, model: Any, retain: list[int]) -> torch.Tensor:
        if not self.config.retain_weight or not retain:
            return torch.zeros((), device=self.device)
        return self.config.retain_weight * self.nll(model, self.retain, retain)
