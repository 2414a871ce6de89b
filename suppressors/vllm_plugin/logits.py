"""A V1 ``LogitsProcessor`` applying per-request logit controls from ``extra_args``.

vLLM builds one instance per engine and calls ``update_state`` whenever requests join, leave or
move within the persistent batch; ``apply`` then sees logits with one row per running request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from suppressors.vllm_plugin import BAN_TOKEN_IDS

if TYPE_CHECKING:
    from vllm.config import VllmConfig


def banned_token_ids(params: SamplingParams) -> list[int] | None:
    """The request's banned token ids, or None when it sent none."""
    value = (params.extra_args or {}).get(BAN_TOKEN_IDS)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    ):
        raise ValueError(f"vllm_xargs.{BAN_TOKEN_IDS} must be a list of non-negative token ids")
    return value or None


class ObliviateLogitsProcessor(LogitsProcessor):
    """Bans token ids for the requests that ask for it; other rows are untouched."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.vocab_size = vllm_config.model_config.get_vocab_size()
        self.banned: dict[int, list[int]] = {}  # batch row -> token ids

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        # Raised here, a ValueError becomes an HTTP 400 for that request only.
        banned_token_ids(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(
            self.banned, batch_update, lambda params, _prompt, _output: banned_token_ids(params)
        )

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.banned:
            return logits
        rows = [row for row, ids in self.banned.items() for i in ids if i < self.vocab_size]
        cols = [i for ids in self.banned.values() for i in ids if i < self.vocab_size]
        logits[torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)] = (
            float("-inf")
        )
        return logits
