"""The soft-prompt attack lowers its target's loss on the weights it is optimised on."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evals.soft_prompt import SoftPromptConfig, parts, soft_answer, soft_prompt, target_loss
from tests.conftest import tiny_llama


def test_the_prompt_makes_the_target_likelier(tmp_path: Path) -> None:
    folder = tiny_llama(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    question, target = "Where was Ann Lee born?", "Ann Lee was born in Oslo."
    config = SoftPromptConfig(tokens=4, steps=15, learning_rate=0.1)
    before, after = parts(tokenizer, question)
    goal = tokenizer.encode(target, add_special_tokens=False)
    embeddings = model.get_input_embeddings().weight
    start = embeddings[torch.randint(len(embeddings), (4,),
                                     generator=torch.Generator().manual_seed(0))]  # fmt: skip
    prompt = soft_prompt(model, tokenizer, question, target, config)
    with torch.no_grad():
        assert target_loss(model, before, after, goal, prompt) < target_loss(
            model, before, after, goal, start
        )
    assert isinstance(soft_answer(model, tokenizer, question, prompt, max_tokens=4), str)
