"""The logit-difference assistant head at inference (its training: ``suppressors.assistant``,
which the plugin never imports)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def head_logits(
    state: torch.Tensor,
    tensors: dict[str, torch.Tensor],
    norm: Callable[[torch.Tensor], torch.Tensor],
    lm_head: torch.Tensor,
    soft_cap: float | None = None,
) -> torch.Tensor:
    """Assistant logits for residual-stream states ``[tokens, hidden]`` (float32). ``norm`` is
    the model's own final norm (its architecture's: Gemma's scales by ``1 + w``); ``soft_cap``
    its final-logit soft-capping (Gemma 2's 30), so that the head's logits are on the base's
    scale."""
    x = state.float()
    x = x + torch.nn.functional.gelu(x @ tensors["up"]) @ tensors["down"]
    logits = norm(x).float() @ lm_head.float().T
    return logits if soft_cap is None else torch.tanh(logits / soft_cap) * soft_cap
