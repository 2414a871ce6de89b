"""A soft prompt (Lester et al. 2021) as an attack on held weights: vectors in the embedding
space, prepended to the user turn and optimised so the model answers a forgotten question.

    prompt = soft_prompt(model, tokenizer, "Where was Ann Lee born?", "Ann Lee was born in Oslo")
    reply = soft_answer(model, tokenizer, "Where was Ann Lee born?", prompt, max_tokens=32)

The strongest prompt-level attacker: not limited to tokens (as GCG is), so what it gets back is
what the weights still hold within reach of the input. Only weights one holds can be attacked
so: a served API takes text, and the suppression arm's weights stay private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from evals.gcg import PLACEHOLDER


@dataclass
class SoftPromptConfig:
    tokens: int = 10
    """Vectors in the prompt."""
    steps: int = 50
    learning_rate: float = 0.01
    target_tokens: int = 16
    """The target is cut to its first tokens (as GCG's)."""
    seed: int = 0


def parts(tokenizer: Any, question: str) -> tuple[list[int], list[int]]:
    """The chat prompt's token ids before and after the soft prompt (placed after the question)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{question}{PLACEHOLDER}"}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    before, after = text.split(PLACEHOLDER)
    encode = tokenizer.encode
    return encode(before, add_special_tokens=False), encode(after, add_special_tokens=False)


def _embedded(model: Any, ids: list[int]) -> torch.Tensor:
    return model.get_input_embeddings()(torch.tensor([ids]))


def soft_prompt(
    model: Any, tokenizer: Any, question: str, target: str, config: SoftPromptConfig | None = None
) -> torch.Tensor:
    """The prompt's vectors (``[tokens, width]``) after ``steps`` of Adam on the target's loss."""
    config = config or SoftPromptConfig()
    model.requires_grad_(False)
    before, after = parts(tokenizer, question)
    goal = tokenizer.encode(target, add_special_tokens=False)[: config.target_tokens]
    embeddings = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(config.seed)
    # Start from real tokens' embeddings, so the prompt begins in the space the model reads.
    start = torch.randint(len(embeddings), (config.tokens,), generator=generator)
    prompt = embeddings[start].detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.Adam([prompt], lr=config.learning_rate)
    for _ in range(config.steps):
        loss = target_loss(model, before, after, goal, prompt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prompt.detach()


def target_loss(
    model: Any, before: list[int], after: list[int], goal: list[int], prompt: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the target's tokens after the chat prompt with ``prompt`` in it."""
    parts = [_embedded(model, before), prompt.unsqueeze(0), _embedded(model, after)]
    inputs = torch.cat([*parts, _embedded(model, goal)], 1)
    logits = model(inputs_embeds=inputs).logits[0, -len(goal) - 1 : -1]
    return F.cross_entropy(logits.float(), torch.tensor(goal))


def soft_answer(
    model: Any, tokenizer: Any, question: str, prompt: torch.Tensor, max_tokens: int
) -> str:
    """The greedy answer with the soft prompt in place."""
    before, after = parts(tokenizer, question)
    inputs = torch.cat([_embedded(model, before), prompt.unsqueeze(0), _embedded(model, after)], 1)
    with torch.no_grad():
        out = model.generate(inputs_embeds=inputs, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return tokenizer.decode(out[0], skip_special_tokens=True)
