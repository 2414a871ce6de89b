"""The logit-difference head's logits are on the served model's scale, Gemma 2's final-logit
soft-capping included (the base's logits are capped; an uncapped head would dominate
``l_base - alpha * l_assistant``)."""

from __future__ import annotations

import torch

from suppressors.vllm_plugin.head import head_logits


def test_the_head_caps_its_logits_as_the_model_does() -> None:
    torch.manual_seed(0)
    hidden, vocab = 16, 50
    tensors = {"up": torch.randn(hidden, 4) * 0.1, "down": torch.randn(4, hidden) * 0.1}
    lm_head = torch.randn(vocab, hidden) * 2
    state = torch.randn(3, hidden) * 2
    plain = head_logits(state, tensors, lambda x: x, lm_head)
    capped = head_logits(state, tensors, lambda x: x, lm_head, soft_cap=30.0)
    assert plain.abs().max() > 30  # the uncapped head leaves the base's range
    assert capped.abs().max() < 30
    assert torch.allclose(capped, torch.tanh(plain / 30.0) * 30.0)
    assert torch.equal(plain.argsort(-1), capped.argsort(-1))  # the same ranking
