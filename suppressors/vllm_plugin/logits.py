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

from suppressors.vllm_plugin.controls import banned_token_ids, check_controls
from suppressors.vllm_plugin.logits_v2 import ban_table
from suppressors.vllm_plugin.worker import ASSISTANT_LOGITS

RELATIVE_TOP = 0.1

if TYPE_CHECKING:
    from vllm.config import VllmConfig


def logit_difference(base: torch.Tensor, assistant: torch.Tensor, alpha: float) -> torch.Tensor:
    """ULD: ``base - alpha·assistant``, the assistant counting only on the base's top tokens."""
    probs = torch.softmax(base.float(), -1)
    top = probs >= RELATIVE_TOP * probs.max()
    # Log-probabilities, so an assistant that is uniform shifts every top token alike.
    assistant = torch.log_softmax(assistant.float(), -1)
    return (base.float() - alpha * torch.where(top, assistant, 0.0)).to(base.dtype)


class ObliviateLogitsProcessor(LogitsProcessor):
    """Bans token ids for the requests that ask for it; other rows are untouched.

    It also validates the controls that the worker extension's hooks apply, and subtracts the
    assistant logits that the hooks computed for this step (logit difference)."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.vocab_size = vllm_config.model_config.get_vocab_size()
        self.banned: dict[int, list[int]] = {}  # batch row -> token ids

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        # Raised here, a ValueError becomes an HTTP 400 for that request only.
        check_controls(sampling_params.extra_args or {})

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(
            self.banned,
            batch_update,
            lambda params, _prompt, _output: banned_token_ids(params.extra_args or {}),
        )

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for row, (alpha, assistant) in ASSISTANT_LOGITS.items():
            logits[row] = logit_difference(logits[row], assistant[: logits.shape[-1]], alpha)
        ASSISTANT_LOGITS.clear()
        table = ban_table(self.banned, self.vocab_size, self.device) if self.banned else None
        if table is not None:
            rows, ids = table
            logits[rows[:, None], ids] = float("-inf")
        return logits
