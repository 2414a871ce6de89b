"""Question/answer pairs as token tensors, and the per-answer log-likelihoods every method uses.

    >>> tokens = encode(tokenizer, "Where was Ann born?", "In Oslo.")   # doctest: +SKIP
    >>> ids, mask, labels = collate([tokens], tokenizer.pad_token_id)   # doctest: +SKIP

Labels cover the answer tokens only (the question is context, as in TOFU fine-tuning); a pair
with an empty question is plain text (a document) and every token is a label.
"""

from __future__ import annotations

from typing import Any

import torch

Encoded = tuple[list[int], int]
"""Token ids of prompt + answer + EOS, and where the answer starts."""


def encode(tokenizer: Any, question: str, answer: str) -> Encoded:
    if not question:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        return [*ids, tokenizer.eos_token_id], 0
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids + [tokenizer.eos_token_id], len(prompt_ids)


def collate(
    examples: list[Encoded], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels) padded on the right; labels are -100 off the answer."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (tokens, answer_start) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        labels[row, answer_start : len(tokens)] = torch.tensor(tokens[answer_start:])
    return ids, mask, labels


def answer_logprob(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of the answer tokens, and how many there are."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    picked = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0).unsqueeze(-1))
    return (picked.squeeze(-1) * keep).sum(-1), keep.sum(-1)
