"""Question/answer pairs: read from JSONL, and as token tensors for the offline work that trains
on them (removal methods, the in-model layers' artifacts, the evaluation's models).

    >>> pairs = read_pairs(RETAIN_DEFAULT)                              # doctest: +SKIP
    >>> tokens = encode(tokenizer, "Where was Ann born?", "In Oslo.")   # doctest: +SKIP
    >>> ids, mask, labels = collate([tokens], tokenizer.pad_token_id)   # doctest: +SKIP

Labels cover the answer tokens only (the question is context, as in TOFU fine-tuning); a pair
with an empty question is plain text (a document) and every token is a label. Both the suppressors
and removal read these, so they sit at the bottom of the dependencies, here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the code that trains, not by every reader of pairs
    import torch

RETAIN_DEFAULT = Path(__file__).parent / "data" / "retain_world_facts.jsonl"
"""Retain data when the settings name none: world facts (TOFU's), one {question, answer} a line."""

Pair = tuple[str, str]
"""(question, answer); an empty question makes the answer a plain text (a document)."""
Encoded = tuple[list[int], int]
"""Token ids of prompt + answer + EOS, and where the answer starts."""


def read_pairs(path: Path) -> list[Pair]:
    """The (question, answer) pairs of a JSONL file; ValueError saying what is wrong with it."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(row["question"], row["answer"]) for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not JSONL of {{question, answer}} rows ({exc!r})") from exc


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
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (tokens, answer_start) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        labels[row, answer_start : len(tokens)] = torch.tensor(tokens[answer_start:])
    return ids, mask, labels
